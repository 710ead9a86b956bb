"""Encoder–decoder on rnnkit layers (Sutskever et al. 2014; Bahdanau et al. 2015), greedy and beam search.

The encoder reads the padded source with ``lengths=`` (no sorting), so its final state is the state at
each sentence's last real token. The decoder starts from that state and, at step t, reads the previous
target token's embedding concatenated with a context vector:

* without attention, the context is the encoder's top-layer final hidden state, the same at every step;
* with Bahdanau (additive) attention it is a weighted average of the encoder outputs, the weights

      e_{t,s} = v^T tanh(W_q q_t + W_k k_s),   a_{t,s} = softmax_s(e_{t,s})  (padding masked out),

  where the query ``q_t`` is the decoder's top-layer hidden state before step t.

Training uses teacher forcing (the decoder reads the true previous token). Decoding either picks the
most likely token at each step (greedy) or keeps the ``beam_size`` best partial translations, ranked at
the end by log-probability divided by ``length ** length_penalty`` (0: raw log-probability, which
favours short outputs; 1: per-token average).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.dropout import Dropout
from rnnkit.engines.fused.stepper import kept_stepper
from rnnkit.rnn import GRU, LSTM

State = Any  # a Tensor (GRU) or a tuple (h, c) (LSTM), each (num_layers, B, H)


class AdditiveAttention(nn.Module):
    """Bahdanau's attention: ``score(q, k) = v^T tanh(W_q q + W_k k)``, softmax over unmasked keys."""

    def __init__(self, query_size: int, key_size: int, hidden_size: int) -> None:
        super().__init__()
        self.W_q = nn.Linear(query_size, hidden_size, bias=False)
        self.W_k = nn.Linear(key_size, hidden_size, bias=False)
        self.v = nn.Linear(hidden_size, 1, bias=False)

    def project_keys(self, keys: Tensor) -> Tensor:
        """``W_k k`` for every key, computed once per source sentence: (B, S, K) -> (B, S, A)."""
        return self.W_k(keys)

    def forward(self, query: Tensor, keys_proj: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``query`` (B, Q), ``keys_proj`` (B, S, A), ``values`` (B, S, V), ``mask`` (B, S) True where real.

        Returns the context (B, V) and the attention weights (B, S), which sum to 1 over real positions.
        """
        scores = self.v(torch.tanh(self.W_q(query).unsqueeze(1) + keys_proj)).squeeze(-1)  # (B, S)
        scores = scores.masked_fill(~mask, float("-inf"))  # padding gets exactly zero weight
        weights = torch.softmax(scores, dim=-1)  # (B, S)
        context = torch.bmm(weights.unsqueeze(1), values).squeeze(1)  # (B, V)
        return context, weights


@dataclass
class Memory:
    """What the decoder reads from the encoder at every step (batch along dim 0)."""

    outputs: Tensor  # (B, S, H) encoder outputs (values of the attention)
    keys_proj: Tensor | None  # (B, S, A) W_k applied to the outputs, or None without attention
    mask: Tensor  # (B, S) True at real source tokens
    context: Tensor  # (B, H) fixed context (top-layer final encoder state), used without attention

    def select(self, index: Tensor) -> Memory:
        pick = lambda t: None if t is None else t.index_select(0, index)  # noqa: E731
        return Memory(pick(self.outputs), pick(self.keys_proj), pick(self.mask), pick(self.context))


def select_state(state: State, index: Tensor) -> State:
    """Reorder/repeat the batch (dim 1) of a GRU or LSTM state."""
    if isinstance(state, Tensor):
        return state.index_select(1, index)
    return tuple(s.index_select(1, index) for s in state)


def top_hidden(state: State) -> Tensor:
    """The top layer's hidden state (B, H) of a GRU or LSTM state."""
    return (state if isinstance(state, Tensor) else state[0])[-1]


@dataclass
class Seq2SeqConfig:
    """Encoder–decoder sizes (both sides use the same cell, depth and width)."""

    cell: Literal["gru", "lstm"] = "gru"
    "recurrent cell of encoder and decoder"
    embed_size: int = 128
    "word embedding size (each language has its own table)"
    hidden_size: int = 128
    "state size of encoder and decoder"
    num_layers: int = 2
    "stacked layers in the encoder and in the decoder"
    attention: bool = True
    "Bahdanau (additive) attention over the encoder outputs; false = d2l's plain encoder–decoder"
    dropout: float = 0.2
    "dropout on embeddings, between stacked layers and before the output layer"

    def __post_init__(self) -> None:
        if self.cell not in ("gru", "lstm"):
            raise ValueError(f"model.cell must be gru or lstm, got {self.cell!r}")
        for name in ("embed_size", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")

    def build(self, src_vocab_size: int, tgt_vocab_size: int, **kwargs: Any) -> Seq2Seq:
        return Seq2Seq(src_vocab_size, tgt_vocab_size, **asdict(self), **kwargs)


class Seq2Seq(nn.Module):
    """GRU/LSTM encoder–decoder for token sequences, with optional Bahdanau attention.

    ``forward(src, src_len, tgt_in)`` returns logits (B, T, V_tgt) under teacher forcing; all token
    tensors are batch-first and padded with ``pad``.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        *,
        embed_size: int = 256,
        hidden_size: int = 256,
        num_layers: int = 2,
        cell: Literal["gru", "lstm"] = "gru",
        attention: bool = True,
        dropout: float = 0.2,
        pad: int = 0,
        bos: int = 1,
        eos: int = 2,
        unk: int | None = 3,
    ) -> None:
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}")
        for name, v in (("src_vocab_size", src_vocab_size), ("tgt_vocab_size", tgt_vocab_size)):
            if v < 4:
                raise ValueError(f"{name} must hold at least <pad> <bos> <eos> <unk>, got {v}")
        layer = GRU if cell == "gru" else LSTM
        # dropout between stacked layers only makes sense with more than one
        between = dropout if num_layers > 1 else 0.0
        self.config = Seq2SeqConfig(cell, embed_size, hidden_size, num_layers, attention, dropout)
        self.pad, self.bos, self.eos = pad, bos, eos
        # tokens decoding never outputs: padding, <bos>, and <unk> (a translation with <unk> in it is of no use
        # to a reader; the best real word is shown instead; docs/results.md measures the effect on BLEU)
        self.banned = [t for t in (pad, bos, unk) if t is not None]
        self.cell, self.use_attention = cell, attention
        self.src_embed = nn.Embedding(src_vocab_size, embed_size, padding_idx=pad)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, embed_size, padding_idx=pad)
        self.encoder = layer(embed_size, hidden_size, num_layers, batch_first=True, dropout=between)
        self.decoder = layer(embed_size + hidden_size, hidden_size, num_layers, batch_first=True, dropout=between)
        self.attention = AdditiveAttention(hidden_size, hidden_size, hidden_size) if attention else None
        self.drop = Dropout(dropout)
        self.out = nn.Linear(hidden_size, tgt_vocab_size)

    # ----------------------------------------------------------------------------------------------
    def encode(self, src: Tensor, src_len: Tensor) -> tuple[Memory, State]:
        """Run the encoder over ``src`` (B, S) with true lengths ``src_len`` (B,); any order."""
        emb = self.drop(self.src_embed(src))  # (B, S, E)
        outputs, state = self.encoder(emb, lengths=src_len)  # (B, S, H), final state at each true end
        mask = torch.arange(src.shape[1], device=src.device)[None, :] < src_len.to(src.device)[:, None]  # (B, S)
        keys = self.attention.project_keys(outputs) if self.attention is not None else None
        return Memory(outputs, keys, mask, top_hidden(state)), state

    def decode_step(self, y_prev: Tensor, state: State, memory: Memory) -> tuple[Tensor, State, Tensor | None]:
        """One decoder step from previous tokens ``y_prev`` (B,): logits (B, V), new state, attention (B, S)."""
        out, state, weights = self._step(y_prev, state, memory)
        return self.out(self.drop(out)), state, weights

    def _step(self, y_prev: Tensor, state: State, memory: Memory) -> tuple[Tensor, State, Tensor | None]:
        weights = None
        if self.attention is not None:
            context, weights = self.attention(top_hidden(state), memory.keys_proj, memory.outputs, memory.mask)
        else:
            context = memory.context
        x = torch.cat([self.drop(self.tgt_embed(y_prev)), context], dim=-1)  # (B, E+H)
        stepper = None if self.training or torch.is_grad_enabled() else kept_stepper(self, self.decoder)
        if stepper is not None:  # decoding: the layer's one-token stepper, no per-call layer overhead
            out, state = stepper(x, state)  # (B, H)
            return out, state, weights
        out, state = self.decoder(x.unsqueeze(1), state)  # (B, 1, H)
        return out.squeeze(1), state, weights

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor, return_attention: bool = False) -> Any:
        """Teacher-forced logits (B, T, V) for decoder inputs ``tgt_in`` (B, T) = ``<bos>`` + target."""
        memory, state = self.encode(src, src_len)
        if self.attention is None:
            # The context is fixed, so the whole target runs through the decoder in one call.
            T = tgt_in.shape[1]
            x = torch.cat([self.drop(self.tgt_embed(tgt_in)), memory.context.unsqueeze(1).expand(-1, T, -1)], -1)
            out, _ = self.decoder(x, state)  # (B, T, H)
            logits = self.out(self.drop(out))
            return (logits, None) if return_attention else logits
        steps, attn = [], []
        for t in range(tgt_in.shape[1]):  # the query depends on the previous step, so step by step
            out_t, state, weights = self._step(tgt_in[:, t], state, memory)
            steps.append(out_t)
            attn.append(weights)
        logits = self.out(self.drop(torch.stack(steps, dim=1)))  # one output projection for all steps
        return (logits, torch.stack(attn, dim=1)) if return_attention else logits

    # ----------------------------------------------------------------------------------------------
    def _allowed(self, logits: Tensor) -> Tensor:
        """``logits`` with the banned tokens (``<pad> <bos> <unk>``) at -inf, so decoding never picks them."""
        logits = logits.clone()
        logits[..., self.banned] = float("-inf")
        return logits

    @torch.no_grad()
    def greedy(self, src: Tensor, src_len: Tensor, max_len: int = 20) -> list[list[int]]:
        """Most likely token at each step, for a whole batch; each output stops before its ``<eos>``."""
        memory, state = self.encode(src, src_len)
        B = src.shape[0]
        y = torch.full((B,), self.bos, dtype=torch.long, device=src.device)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        tokens = []
        for _ in range(max_len):
            logits, state, _ = self.decode_step(y, state, memory)
            y = self._allowed(logits).argmax(-1)
            tokens.append(y)
            done = done | (y == self.eos)
            if bool(done.all()):
                break
        out = torch.stack(tokens, 1).tolist() if tokens else [[] for _ in range(B)]
        return [seq[: seq.index(self.eos)] if self.eos in seq else seq for seq in out]

    @torch.no_grad()
    def beam_search(
        self, src: Tensor, src_len: Tensor, beam_size: int = 4, max_len: int = 20, length_penalty: float = 0.75
    ) -> list[list[int]]:
        """Beam search, one sentence at a time; at ``beam_size=1`` it returns exactly :meth:`greedy`'s output.

        A hypothesis that emits ``<eos>`` leaves the beam as finished (the beam shrinks, as in d2l); the
        finished and any still-open hypotheses at ``max_len`` are ranked by ``logp / len ** length_penalty``
        (``len`` counts the ``<eos>``).
        """
        if not isinstance(beam_size, int) or beam_size < 1:
            raise ValueError(f"beam_size must be a positive integer, got {beam_size!r}")
        if length_penalty < 0:
            raise ValueError(f"length_penalty must be >= 0, got {length_penalty!r}")
        return [
            self._beam_one(src[i : i + 1, : int(src_len[i])], src_len[i : i + 1], beam_size, max_len, length_penalty)
            for i in range(src.shape[0])
        ]

    def _beam_one(self, src: Tensor, src_len: Tensor, k: int, max_len: int, alpha: float) -> list[int]:
        memory, state = self.encode(src, src_len)
        device = src.device
        seqs: list[list[int]] = [[]]  # open hypotheses
        scores = torch.zeros(1, device=device)  # their log-probabilities
        y = torch.full((1,), self.bos, dtype=torch.long, device=device)
        finished: list[tuple[float, list[int]]] = []
        for _ in range(max_len):
            logits, state, _ = self.decode_step(y, state, memory)
            logp = scores[:, None] + F.log_softmax(self._allowed(logits.float()), dim=-1)  # (beam, V)
            V = logp.shape[1]
            # The best (k - finished) continuations among all (beam × V): each finished hypothesis narrows the beam.
            top, flat = logp.flatten().topk(min(k - len(finished), logp.numel()))
            keep_rows, keep_seqs, keep_scores, keep_tokens = [], [], [], []
            for s, f in zip(top.tolist(), flat.tolist()):
                row, tok = divmod(f, V)
                if s == float("-inf"):  # a banned token: only reached when the beam is wider than the vocabulary
                    continue
                if tok == self.eos:
                    finished.append((s / (len(seqs[row]) + 1) ** alpha, seqs[row]))
                else:
                    keep_rows.append(row)
                    keep_seqs.append(seqs[row] + [tok])
                    keep_scores.append(s)
                    keep_tokens.append(tok)
            if not keep_seqs:
                break
            index = torch.tensor(keep_rows, device=device)
            state, memory = select_state(state, index), memory.select(index)
            seqs, scores = keep_seqs, torch.tensor(keep_scores, device=device)
            y = torch.tensor(keep_tokens, device=device)
        else:
            finished.extend((s / len(q) ** alpha, q) for s, q in zip(scores.tolist(), seqs))
        return max(finished, key=lambda f: f[0])[1]


def masked_cross_entropy(logits: Tensor, target: Tensor, pad: int) -> tuple[Tensor, int]:
    """Mean cross-entropy over the non-pad positions of ``target`` (B, T), and how many there are.

    ``logits`` (B, T, V). Padding contributes neither to the sum nor to the count, so a batch's loss
    does not depend on how much padding it carries.
    """
    mask = target != pad  # (B, T)
    n = int(mask.sum())
    if n == 0:
        raise ValueError("every target position is padding: nothing to score")
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none")
    return (nll * mask.reshape(-1)).sum() / n, n
