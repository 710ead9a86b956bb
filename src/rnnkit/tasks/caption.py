"""One→many generation, captioning style: an 8×8 digit image -> its English name, one character at a time.

The image (scikit-learn's ``load_digits``, shipped offline, 1,797 images of 10 classes) goes through
an MLP encoder whose output becomes the *initial state* of an rnnkit GRU/LSTM decoder, as in
"Show and Tell" (Vinyals et al. 2015) with a CNN swapped for an MLP. The decoder then spells the
name ("seven") character by character, reading its previous character, until it emits ``<eos>``.
Training uses teacher forcing and masked cross-entropy; evaluation decodes greedily and counts a
caption right only if the whole word is exactly right (exact match).

The named baselines, reported beside it: chance (1/10, or the majority class's share of the test
set) and a plain classifier — multinomial logistic regression on the same pixels — whose accuracy
is what exact-match accuracy is compared with (the captioner must also spell the word).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rnnkit.rnn import GRU, LSTM
from rnnkit.tasks.seq2seq import masked_cross_entropy

log = logging.getLogger(__name__)

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PAD, BOS, EOS = 0, 1, 2
#: <pad> <bos> <eos>, then every letter that occurs in a digit's name
ALPHABET = ("<pad>", "<bos>", "<eos>", *sorted(set("".join(NAMES))))
CHAR_ID = {c: i for i, c in enumerate(ALPHABET)}


def encode_name(name: str) -> list[int]:
    unknown = sorted(set(name) - set(ALPHABET[3:]))
    if unknown:
        raise ValueError(f"cannot spell {name!r}: characters {unknown} are not in the alphabet {''.join(ALPHABET[3:])}")
    return [CHAR_ID[c] for c in name]


def decode_name(ids: list[int]) -> str:
    return "".join(ALPHABET[i] for i in ids if i > EOS)


@dataclass
class CaptionData:
    """Digit images and their split."""

    val_fraction: float = 0.15
    "fraction of images held out for validation (stratified by digit)"
    test_fraction: float = 0.25
    "fraction of images held out for the test score (stratified by digit)"
    split_seed: int = 0
    "seed of the stratified split"
    batch_size: int = 64
    "images per training batch"

    def __post_init__(self) -> None:
        fractions = (self.val_fraction, self.test_fraction)
        if not (all(0 < f < 1 for f in fractions) and sum(fractions) < 1):
            raise ValueError("data.val_fraction and data.test_fraction must be in (0, 1) and sum to less than 1")
        if self.batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {self.batch_size}")


@dataclass
class CaptionModel:
    """Image encoder and character decoder sizes."""

    cell: Literal["gru", "lstm"] = "gru"
    "decoder cell"
    hidden_size: int = 64
    "decoder state size (also the encoder MLP's output)"
    embed_size: int = 16
    "character embedding size"
    num_layers: int = 1
    "stacked decoder layers (each gets its own initial state from the image)"

    def __post_init__(self) -> None:
        for name in ("hidden_size", "embed_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")


def load_split(cfg: CaptionData) -> dict[str, tuple[Tensor, Tensor]]:
    """``{"train"|"val"|"test": (images (N, 64) in [0, 1], digit labels (N,))}``, stratified by digit."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0  # pixel intensities 0..16 -> [0, 1]
    y = torch.tensor(digits.target, dtype=torch.long)
    g = torch.Generator().manual_seed(cfg.split_seed)
    parts: dict[str, list[Tensor]] = {"train": [], "val": [], "test": []}
    for digit in range(10):  # stratify: the same share of every digit in every split
        idx = (y == digit).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val, n_test = round(cfg.val_fraction * len(idx)), round(cfg.test_fraction * len(idx))
        parts["val"].append(idx[:n_val])
        parts["test"].append(idx[n_val : n_val + n_test])
        parts["train"].append(idx[n_val + n_test :])
    return {k: (x[torch.cat(v)], y[torch.cat(v)]) for k, v in parts.items()}


def caption_targets(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Decoder inputs ``<bos> c_1 … c_n`` and targets ``c_1 … c_n <eos>``, padded: both (B, 6)."""
    words = [encode_name(NAMES[int(d)]) for d in labels]
    T = max(len(w) for w in words) + 1
    tgt_in = torch.full((len(words), T), PAD, dtype=torch.long)
    tgt_out = torch.full((len(words), T), PAD, dtype=torch.long)
    for i, w in enumerate(words):
        tgt_in[i, : len(w) + 1] = torch.tensor([BOS, *w])
        tgt_out[i, : len(w) + 1] = torch.tensor([*w, EOS])
    return tgt_in, tgt_out


class Captioner(nn.Module):
    """Image (B, 64) -> MLP -> initial decoder state -> characters. ``forward`` is teacher-forced."""

    def __init__(self, image_size: int = 64, cfg: CaptionModel | None = None) -> None:
        super().__init__()
        cfg = cfg or CaptionModel()
        self.cfg = cfg
        n_states = cfg.num_layers * (2 if cfg.cell == "lstm" else 1)  # an LSTM starts from (h_0, c_0)
        H = cfg.hidden_size
        self.encoder = nn.Sequential(nn.Linear(image_size, 2 * H), nn.Tanh(), nn.Linear(2 * H, n_states * H))
        self.embed = nn.Embedding(len(ALPHABET), cfg.embed_size, padding_idx=PAD)
        layer = GRU if cfg.cell == "gru" else LSTM
        self.decoder = layer(cfg.embed_size, cfg.hidden_size, cfg.num_layers, batch_first=True)
        self.out = nn.Linear(cfg.hidden_size, len(ALPHABET))

    def initial_state(self, images: Tensor) -> Any:
        """The image's encoding, tanh-squashed like a hidden state: (num_layers, B, H) or (h_0, c_0)."""
        B, L, H = images.shape[0], self.cfg.num_layers, self.cfg.hidden_size
        z = torch.tanh(self.encoder(images)).view(B, -1, L, H).permute(1, 2, 0, 3)  # (n, L, B, H)
        return z[0].contiguous() if self.cfg.cell == "gru" else (z[0].contiguous(), z[1].contiguous())

    def forward(self, images: Tensor, tgt_in: Tensor) -> Tensor:
        """Logits (B, T, |alphabet|) for decoder inputs ``tgt_in`` (B, T)."""
        out, _ = self.decoder(self.embed(tgt_in), self.initial_state(images))  # (B, T, H)
        return self.out(out)

    @torch.no_grad()
    def greedy(self, images: Tensor, max_len: int = 8) -> list[str]:
        """The most likely character at each step, until ``<eos>`` (or ``max_len`` characters)."""
        state = self.initial_state(images)
        y = torch.full((images.shape[0], 1), BOS, dtype=torch.long, device=images.device)
        steps = []
        for _ in range(max_len):
            out, state = self.decoder(self.embed(y), state)
            y = self.out(out).argmax(-1)  # (B, 1)
            steps.append(y)
            if bool((torch.cat(steps, 1) == EOS).any(1).all()):
                break
        ids = torch.cat(steps, 1).tolist()
        return [decode_name(seq[: seq.index(EOS)] if EOS in seq else seq) for seq in ids]


class CaptionTask:
    """Digit captioning for :func:`rnnkit.train.train`; ``evaluate`` reports loss and exact-match accuracy."""

    name = "caption"
    unit = "caption tokens"  # what loss() counts, for throughput

    def __init__(self, cfg: CaptionData) -> None:
        self.cfg = cfg
        self.splits = load_split(cfg)
        log.info("caption: %d/%d/%d train/val/test digit images", *(len(self.splits[k][1]) for k in self.splits))

    def train_batches(self, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        x, y = self.splits["train"]
        B = min(self.cfg.batch_size, len(y))
        while True:
            order = torch.randperm(len(y), generator=generator)
            for i in range(0, len(y) - B + 1, B):
                idx = order[i : i + B]
                yield (x[idx], *caption_targets(y[idx]))

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor, Tensor], state: Any) -> tuple[Tensor, None, int]:
        p = next(model.parameters())
        images, tgt_in, tgt_out = batch
        images, tgt_in, tgt_out = images.to(p.device, p.dtype), tgt_in.to(p.device), tgt_out.to(p.device)
        loss, n = masked_cross_entropy(model(images, tgt_in), tgt_out, PAD)
        return loss, None, n

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str = "val") -> dict[str, float]:
        x, y = self.splits[split]
        was_training = model.training
        model.eval()
        try:
            p = next(model.parameters())
            x = x.to(p.device, p.dtype)  # the images are float32; the model may be float64
            tgt_in, tgt_out = caption_targets(y)
            loss, _ = masked_cross_entropy(model(x, tgt_in.to(p.device)), tgt_out.to(p.device), PAD)
            captions = model.greedy(x)
            exact = sum(c == NAMES[int(d)] for c, d in zip(captions, y)) / len(y)
            return {"loss": float(loss), "exact_match": exact}
        finally:
            model.train(was_training)

    def baselines(self) -> dict[str, float]:
        """Test accuracy of chance, of the training set's majority digit and of logistic regression on the pixels."""
        from sklearn.linear_model import LogisticRegression

        (x_tr, y_tr), (x_te, y_te) = self.splits["train"], self.splits["test"]
        majority = int(torch.bincount(y_tr).argmax())
        clf = LogisticRegression(max_iter=2000).fit(x_tr.numpy(), y_tr.numpy())
        return {
            "chance": 0.1,
            "majority": float((y_te == majority).float().mean()),
            "logistic_regression": float(clf.score(x_te.numpy(), y_te.numpy())),
        }

    def metadata(self) -> dict[str, Any]:
        return {"task": self.name, "data": asdict(self.cfg), "alphabet": list(ALPHABET), "names": list(NAMES)}
