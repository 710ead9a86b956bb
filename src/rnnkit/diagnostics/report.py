"""An interactive look inside a recurrent network: one self-contained HTML file (``rnnkit inspect``).

    from rnnkit.diagnostics.report import inspect_model
    report = inspect_model(model, vocab, text)   # a LanguageModel and its Vocab
    report                                       # in Jupyter: the report, inline
    report.save("report.html")                   # one file, opens without a network

What it shows, after Karpathy, Johnson & Fei-Fei ("Visualizing and Understanding Recurrent Networks",
2015) and Strobelt et al.'s LSTMVis: per (layer, direction) and gate the saturation scatter (for each unit,
the fraction of steps its gate spends below 10 % of its range against the fraction above 90 %) and the
histogram of the gate's values; the text coloured by one unit's state (picked from a list, a ranking or a
dot); each unit's strongest contexts; the units that best follow simple features of the text
(:mod:`~rnnkit.diagnostics.textfeatures`); for a language model the per-token loss and the gradient flow
‖∂L_T/∂s_t‖ (:func:`~rnnkit.diagnostics.gradflow.lm_gradient_norms`). :func:`inspect_layer` does the same
for any rnnkit layer and input, bidirectional included (without loss and gradient flow).

Size: the text colouring needs every unit's state at every token; it is stored at 4 bits per value (16
colour levels, scaled per unit by its largest magnitude), the most telling state of each (layer, direction)
first (LSTM ``c``, Jordan ``y``, else ``h``), further states only if they fit :data:`STATE_BYTES`; past it
the colouring covers the first tokens only (the report says so). Everything else uses full precision.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnkit import __version__
from rnnkit.diagnostics.record import CHUNK, Block, record
from rnnkit.diagnostics.textfeatures import FEATURES, correlations, text_features, top_contexts

#: bytes of 4-bit state levels a report may hold (base64 makes them 4/3 larger): keeps a 2 × 256-unit model
#: over 10,000 tokens fully coloured and the whole file under 5 MB
STATE_BYTES = 2_700_000
LEVELS = 16
HIST_BINS = 40
RANKED = 10  # units listed per feature


@dataclass
class Report:
    """A built report: ``data`` (JSON-ready) and the page around it; ``save`` writes it, Jupyter shows it."""

    data: dict[str, Any]

    def html(self) -> str:
        """The whole page: CSS, data and script inline, nothing fetched."""
        page = resources.files("rnnkit.diagnostics")
        css = page.joinpath("report.css").read_text(encoding="utf-8") + _level_css()
        js = page.joinpath("report.js").read_text(encoding="utf-8")
        data = json.dumps(self.data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
        title = html.escape(self.data["title"])
        return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{title}</title>\n'
                f"<style>\n{css}</style></head>\n<body>\n<div id=\"app\"><noscript>This report needs JavaScript."
                f'</noscript></div>\n<script type="application/json" id="rnnkit-data">{data}</script>\n'
                f"<script>\n{js}</script>\n</body></html>\n")  # fmt: skip

    def _repr_html_(self) -> str:
        """Jupyter: the page in a sandboxed frame, so that its styles and ids stay out of the notebook's."""
        return (f'<iframe srcdoc="{html.escape(self.html(), quote=True)}" sandbox="allow-scripts" '
                'style="width:100%;height:860px;border:1px solid #ccc"></iframe>')  # fmt: skip

    def save(self, path: str | Path) -> Path:
        """Write the page to ``path`` atomically (a temporary file renamed into place): never half a file."""
        path = Path(path)
        check_output_folder(path.parent)
        if path.is_dir():
            raise ValueError(f"{str(path)!r} is a folder: give a file name for the report, e.g. {path / 'report.html'}")
        text = self.html()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def check_output_folder(folder: Path) -> None:
    """One clear ValueError unless files can be created in ``folder`` (probed: permission bits do not stop root)."""
    folder = Path(folder) if str(folder) else Path(".")
    if not folder.exists():
        raise ValueError(f"output folder {str(folder)!r} does not exist: create it first (mkdir -p {folder})")
    if not folder.is_dir():
        raise ValueError(f"{str(folder)!r} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".rnnkit-probe-", dir=folder)
    except OSError as e:
        raise ValueError(f"cannot write in output folder {str(folder)!r}: {e.strerror}; pick another --out") from None
    os.close(fd)
    os.unlink(probe)


# --------------------------------------------------------------------------------------------------
@dataclass
class Reading:
    """A language model's pass over a text: what the report and the LSTMVis export are made from."""

    tokens: list[str]
    #: what goes before each token when the text is shown (word level: spaces; character level: nothing)
    seps: list[str]
    ids: Tensor
    blocks: list[Block]
    #: -log p(token t + 1 | tokens ..t), (T - 1,) nats
    loss: np.ndarray
    #: positions of tokens outside the vocabulary (read as ``<unk>``)
    oov: list[int]
    #: tokens in the whole text, before ``max_tokens`` cut it
    total: int
    #: how long the reading took (a report built from it counts it in its build time)
    seconds: float = 0.0


def read_text(model: Any, vocab: Any, text: str, *, max_tokens: int = 0, chunk: int = CHUNK) -> Reading:
    """Run a :class:`~rnnkit.models.LanguageModel` over ``text`` (its first ``max_tokens`` tokens when > 0),
    tokenised as ``vocab`` was built, from a zero state; tokens outside the vocabulary are read as ``<unk>``."""
    start = time.perf_counter()
    every = vocab.tokenize(text)
    tokens = every[:max_tokens] if max_tokens > 0 else every
    if len(tokens) < 2:
        raise ValueError(f"the text has {len(tokens)} token(s) after tokenisation; a report needs at least 2 "
                         "(the loss of predicting the second from the first)")  # fmt: skip
    ids = torch.tensor(vocab.encode(tokens), dtype=torch.long, device=model.head.weight.device)
    model.eval()
    with torch.no_grad():
        blocks, out = record(model.rnn, model._inputs(ids), chunk)
        logp = torch.log_softmax(model.head(out[:-1]).double(), dim=-1)  # token t predicts token t + 1
        loss = -logp.gather(1, ids[1:, None])[:, 0].cpu().numpy()
    oov = [i for i, t in enumerate(tokens) if t not in vocab]
    seps = [vocab.separator(tokens[i - 1] if i else None, t) for i, t in enumerate(tokens)]
    return Reading(tokens, seps, ids, blocks, loss, oov, len(every), time.perf_counter() - start)


def inspect_model(model: Any, vocab: Any, text: str | Reading, *, max_tokens: int = 0, top_k: int = 5,
                  gradflow_steps: int = 100, chunk: int = CHUNK, title: str = "",
                  meta: dict[str, Any] | None = None) -> Report:  # fmt: skip
    """The report for a :class:`~rnnkit.models.LanguageModel` reading ``text`` (or an earlier
    :func:`read_text` of it): everything :func:`inspect_layer` shows plus the per-token loss and the
    gradient flow over windows of ``gradflow_steps`` tokens (0 skips it)."""
    from rnnkit.diagnostics.gradflow import lm_gradient_norms

    start = time.perf_counter()
    r = text if isinstance(text, Reading) else read_text(model, vocab, text, max_tokens=max_tokens, chunk=chunk)
    if r is text:
        start -= r.seconds

    def carried(p: int) -> tuple[Tensor, ...]:  # the stack's state after p tokens, from what was recorded
        at = [[torch.from_numpy(b.states[n][p - 1]) for b in r.blocks] for n in r.blocks[0].carried]
        return tuple(torch.stack(layers)[:, None].to(model.head.weight) for layers in at)  # (L, 1, size) each

    flow = lm_gradient_norms(model, r.ids, steps=gradflow_steps, carried=carried) if gradflow_steps else None
    meta = dict(meta or {})
    if r.total > len(r.tokens):
        meta["text"] = f"{meta['text']}; " if "text" in meta else ""
        meta["text"] += f"the first {len(r.tokens):,} of its {r.total:,} tokens"
    return _build(r.blocks, r.tokens, r.seps, r.oov, r.loss, flow, top_k, title or "language model", meta, start)


def inspect_layer(layer: Any, x: Tensor, tokens: list[str] | None = None, *, top_k: int = 5, chunk: int = CHUNK,
                  title: str = "", meta: dict[str, Any] | None = None) -> Report:  # fmt: skip
    """The report for any rnnkit layer (any cell, stacked, bidirectional) reading one sequence ``x`` (T, F);
    ``tokens`` labels the steps (default: their indices)."""
    start = time.perf_counter()
    blocks, _ = record(layer, x, chunk)
    T = blocks[0].states[next(iter(blocks[0].states))].shape[0]
    tokens = [str(t) for t in range(T)] if tokens is None else list(tokens)
    if len(tokens) != T:
        raise ValueError(f"got {len(tokens)} tokens for a sequence of {T} steps: give one label per step")
    spaced = any(len(t) != 1 for t in tokens)  # labels longer than a character are shown apart
    seps = ["" if i == 0 or not spaced else " " for i in range(T)]
    return _build(blocks, tokens, seps, [], None, None, top_k, title or layer.describe_cell(), meta or {}, start)


# --------------------------------------------------------------------------------------------------
def _build(blocks: list[Block], tokens: list[str], seps: list[str], oov: list[int], loss: np.ndarray | None,
           flow: np.ndarray | None, top_k: int, title: str, meta: dict[str, Any], start: float) -> Report:  # fmt: skip
    T = len(tokens)
    feats = text_features(tokens, seps)
    kinds = _fitting_kinds(blocks, T)
    coloured = _coloured_tokens(blocks, kinds, T)
    gap = max(3, min(20, T // (4 * max(1, top_k))))  # contexts of one unit at least this many tokens apart
    out_blocks, ranking = [], {f: [] for f in FEATURES}
    for b, block in enumerate(blocks):
        states = []
        for kind, values in block.states.items():
            entry: dict[str, Any] = {"kind": kind, "units": int(values.shape[1])}
            r = {f: correlations(values, feats[f]) for f in FEATURES}
            entry["feature_r"] = {f: None if v is None else _round(v, 3) for f, v in r.items()}
            for f, v in r.items():
                if v is not None:
                    ranking[f] += [(abs(float(v[u])), float(v[u]), b, kind, u) for u in range(len(v))]
            entry["top"] = top_contexts(values, top_k, gap).tolist()
            entry["bottom"] = top_contexts(-values, top_k, gap).tolist()
            if kind in kinds[b]:
                entry["scale"], entry["levels"] = _quantise(values[:coloured])
            states.append(entry)
        gates = [_gate(name, g, block.ranges.get(name)) for name, g in block.gates.items()]
        out_blocks.append({"name": block.name, "states": states, "gates": gates})
    ranked = {f: [[b, k, u, round(rv, 3)] for _, rv, b, k, u in sorted(v, key=lambda e: -e[0])[:RANKED]]
              for f, v in ranking.items()}  # fmt: skip
    # the report opens on the unit that tracks a feature of the text best (drift over the whole text does not
    # count), or else on the busiest unit of the first block
    tracked = (r[0] for f, r in ranked.items() if r and f != "position in text")
    first = max(tracked, key=lambda e: abs(e[3]), default=None)
    if first is None:
        kind, values = next(iter(blocks[0].states.items()))
        first = [0, kind, int(values.std(axis=0).argmax())]
    data: dict[str, Any] = {
        "title": f"rnnkit inspect: {title}",
        "meta": {**meta, "tokens": f"{T:,}"},
        "tokens": tokens,
        "seps": seps if any(seps) else None,
        "oov": oov,
        "coloured": coloured,
        "levels": LEVELS,
        "blocks": out_blocks,
        "features": FEATURES,
        "present": {f: bool(np.ptp(v) > 0) for f, v in feats.items()},
        "ranking": ranked,
        "initial": {"block": first[0], "kind": first[1], "unit": first[2]},
        "loss": None if loss is None else [None, *_round(loss, 3)],
        "loss_mean": None if loss is None else float(loss.mean()),
        "loss_high": None if loss is None else float(np.quantile(loss, 0.99)),
        "gradflow": None if flow is None else [_round(np.maximum(row, 1e-30), 6, sig=True) for row in flow],
    }
    data["build_seconds"] = round(time.perf_counter() - start, 2)
    data["meta"]["built in"] = f"{data['build_seconds']:.1f} s by rnnkit {__version__}"
    return Report(data)


def _fitting_kinds(blocks: list[Block], T: int) -> list[list[str]]:
    """Which states of each block get colour levels: all if they fit :data:`STATE_BYTES`, else the first."""
    every = sum(v.shape[1] for b in blocks for v in b.states.values())
    if every * math.ceil(T / 2) <= STATE_BYTES:
        return [list(b.states) for b in blocks]
    return [[next(iter(b.states))] for b in blocks]


def _coloured_tokens(blocks: list[Block], kinds: list[list[str]], T: int) -> int:
    units = sum(b.states[k].shape[1] for b, ks in zip(blocks, kinds) for k in ks)
    return min(T, 2 * (STATE_BYTES // max(1, units)))


def _quantise(values: np.ndarray) -> tuple[list[float | None], str]:
    """(T, U) values -> per-unit scales and the 4-bit levels, unit-major, two tokens a byte, base64."""
    scale = np.abs(values).max(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    q = np.clip(np.floor((values / scale + 1) * (LEVELS / 2)), 0, LEVELS - 1).astype(np.uint8).T  # (U, T)
    if q.shape[1] % 2:
        q = np.concatenate([q, np.zeros((q.shape[0], 1), np.uint8)], axis=1)
    packed = (q[:, 0::2] << 4) | q[:, 1::2]
    return _round(scale, 4, sig=True), base64.b64encode(packed.tobytes()).decode("ascii")


def _gate(name: str, values: np.ndarray, rng: tuple[float, float] | None) -> dict[str, Any]:
    """Saturation fractions per unit (bounded gates) and a histogram of every value of the gate."""
    entry: dict[str, Any] = {"name": name, "range": list(rng) if rng else None, "left": None, "right": None}
    if rng is not None:
        lo, hi = rng
        low, high = lo + 0.1 * (hi - lo), lo + 0.9 * (hi - lo)
        entry.update(low=low, high=high, left=_round((values < low).mean(axis=0), 4),
                     right=_round((values > high).mean(axis=0), 4))  # fmt: skip
    # an unbounded value (LSTM c) spans its central 99 %, the rest counted in the end bins, so that a few
    # extreme units do not squeeze every other value into one bar
    lo, hi = rng if rng else (float(np.quantile(values, 0.005)), float(np.quantile(values, 0.995)))
    if hi <= lo:
        hi = lo + 1.0
    counts, _ = np.histogram(np.clip(values, lo, hi), bins=HIST_BINS, range=(lo, hi))
    entry["hist"] = {"lo": lo, "hi": hi, "clipped": rng is None,
                     "fraction": _round(counts / max(1, values.size), 5)}  # fmt: skip
    return entry


def _round(a: np.ndarray, digits: int, sig: bool = False) -> list[float | None]:
    """A JSON-ready list with ``digits`` decimals (``sig``: significant digits), which keeps the file small."""
    a = np.asarray(a, dtype=np.float64)
    values = [float(f"{v:.{digits}g}") for v in a.tolist()] if sig else np.round(a, digits).tolist()
    return [v if math.isfinite(v) else None for v in values]  # JSON has no NaN: a diverged value is null


def _level_css() -> str:
    """One class per colour level: ``.q0``–``.q15`` blue (negative) to red (positive), ``.l0``–``.l15`` loss."""
    rules = []
    for q in range(LEVELS):
        v = (q + 0.5) / LEVELS * 2 - 1  # the level's centre in [-1, 1]
        a = min(1.0, abs(v) * 1.15)
        rgb = (round(255 - a * 40), round(255 - a * 165), round(255 - a * 170)) if v > 0 else \
              (round(255 - a * 185), round(255 - a * 120), round(255 - a * 15))  # fmt: skip
        rules.append(f".q{q}{{background:rgb{rgb}}}")
        s = q / (LEVELS - 1)
        rules.append(f".l{q}{{background:rgb({255},{round(255 - s * 150)},{round(255 - s * 215)})}}")
    return "\n".join(rules) + "\n"
