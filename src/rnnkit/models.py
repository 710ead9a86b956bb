"""A token-level language model on rnnkit's layers: tokens -> (one-hot | embedding) -> recurrent stack -> logits.

    x_t = onehot(w_t)  or  E[w_t]                   # (B, T, V) or (B, T, E)
    h_t = RNN(x_t, h_{t-1})                         # any cell, num_layers deep, dropout between layers
    logits_t = W_hq · dropout(h_t) + b_q            # (B, T, V); W_hq = E when the weights are tied

This is d2l's ``RNNModel`` (one-hot input, one layer) and Zaremba et al.'s regularised LSTM
(embedding, dropout on the non-recurrent connections, optionally Press & Wolf's tied weights) in one class;
the recurrent layers also take rnnkit's regularisers (:mod:`rnnkit.regularisers`: variational input and
recurrent dropout, zoneout, DropConnect on W_hh as in AWD-LSTM).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.dropout import Dropout
from rnnkit.engines.fused.stepper import kept_stepper
from rnnkit.rnn import CellName, check_cell, make_layer

#: carried recurrent state: one tensor (RNN, GRU, Jordan) or a tuple (LSTM: h, c), or None for zeros
State = Tensor | tuple[Tensor, ...] | None
#: the recurrent layers' regularisers (rnnkit.layer.Recurrent options) that the model config carries
REGULARISERS = ("input_dropout", "recurrent_dropout", "zoneout", "zoneout_cell", "weight_dropout")


@dataclass
class ModelConfig:
    """How to build a :class:`LanguageModel` (the vocabulary size comes from the data)."""

    cell: CellName = "lstm"
    """recurrent cell: lstm, gru, rnn (Elman, tanh), peephole (LSTM with peepholes), jordan, mgu, indrnn, mingru,
    minlstm, lnlstm or lngru (layer-normalised LSTM, GRU)"""
    hidden_size: int = 256
    """hidden units per layer"""
    num_layers: int = 1
    """stacked recurrent layers"""
    dropout: float = 0.0
    """dropout on the input, between layers and before the output layer (0 = none, as d2l)"""
    input: Literal["onehot", "embedding"] = "onehot"
    """token input: onehot (d2l) or a learned embedding"""
    embed_size: int = 0
    """embedding size when input=embedding (0 = hidden_size)"""
    tie_weights: bool = False
    """share the embedding with the output layer (needs input=embedding and embed_size == hidden_size)"""
    engine: str = "auto"
    """engine that runs the recurrent layers: auto, torch, reference or any registered engine"""
    input_dropout: float = 0.0
    """variational dropout on each recurrent layer's input: one mask per sequence (Gal & Ghahramani 2016)"""
    recurrent_dropout: float = 0.0
    """variational dropout on h where it enters W_hh, the same mask every step (Gal & Ghahramani 2016)"""
    zoneout: float = 0.0
    """zoneout on h: each unit keeps its previous value with this probability (Krueger et al. 2017)"""
    zoneout_cell: float = 0.0
    """zoneout on the LSTM's memory cell c (cell lstm or peephole)"""
    weight_dropout: float = 0.0
    """DropConnect on the recurrent matrix W_hh, one mask per forward call (AWD-LSTM, Merity et al. 2018)"""
    recurrent_max: float = 0.0
    """indrnn: clip |u| to this after every optimiser step, as Li et al. 2018 (2^(1/T) for T steps); 0 = no clip"""

    def __post_init__(self) -> None:
        check_cell(self.cell, "model.cell")
        for name in ("hidden_size", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"model.{name} must be a positive integer, got {value!r}")
        for name in ("dropout", *REGULARISERS):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"model.{name} must be in [0, 1), got {value!r}")
        if self.zoneout_cell and self.cell not in ("lstm", "peephole"):
            raise ValueError(f"model.zoneout_cell needs a memory cell (model.cell lstm or peephole), got model.cell "
                             f"{self.cell!r}: use model.zoneout")  # fmt: skip
        if (
            isinstance(self.recurrent_max, bool)
            or not isinstance(self.recurrent_max, (int, float))
            or not (0 <= self.recurrent_max < float("inf"))
        ):
            raise ValueError(f"model.recurrent_max must be a bound >= 0 (0 = none), got {self.recurrent_max!r}")
        if self.recurrent_max and self.cell != "indrnn":
            raise ValueError(f"model.recurrent_max bounds IndRNN's recurrent weights (model.cell indrnn), got "
                             f"model.cell {self.cell!r}: leave it at 0")  # fmt: skip
        if self.input not in ("onehot", "embedding"):
            raise ValueError(f"model.input must be onehot or embedding, got {self.input!r}")
        if self.embed_size < 0:
            raise ValueError(f"model.embed_size must be >= 0 (0 = hidden_size), got {self.embed_size}")
        if self.tie_weights and self.input != "embedding":
            raise ValueError("model.tie_weights needs model.input=embedding (a one-hot input has no weights to tie)")
        if self.tie_weights and self.embed_size not in (0, self.hidden_size):
            raise ValueError(
                f"model.tie_weights needs model.embed_size == model.hidden_size ({self.hidden_size}), "
                f"got {self.embed_size}: set --model.embed_size 0"
            )
        from rnnkit.engines import check_engine_name

        check_engine_name(self.engine)

    def build(self, vocab_size: int, **kwargs: Any) -> LanguageModel:
        """The model for a ``vocab_size``-token vocabulary (``kwargs``: ``device``, ``dtype``)."""
        return LanguageModel(vocab_size, **dataclasses.asdict(self), **kwargs)


class LanguageModel(nn.Module):
    """Next-token model: ``forward(tokens (B, T) long, state=None) -> (logits (B, T, V), state)``; batch first."""

    def __init__(
        self,
        vocab_size: int,
        cell: CellName = "lstm",
        hidden_size: int = 256,
        num_layers: int = 1,
        dropout: float = 0.0,
        input: Literal["onehot", "embedding"] = "onehot",
        embed_size: int = 0,
        tie_weights: bool = False,
        engine: str = "auto",
        device: Any = None,
        dtype: torch.dtype | None = None,
        recurrent_max: float = 0.0,
        **regularisers: float,
    ) -> None:
        super().__init__()
        if not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
        unknown = sorted(set(regularisers) - set(REGULARISERS))
        if unknown:
            raise TypeError(f"LanguageModel got unexpected keyword argument(s) {', '.join(unknown)}")
        self.config = ModelConfig(cell, hidden_size, num_layers, dropout, input, embed_size, tie_weights, engine,
                                  recurrent_max=recurrent_max, **regularisers)  # fmt: skip
        regularisers = {k: v for k, v in regularisers.items() if v}  # only the ones that are on reach the layer
        if recurrent_max:
            regularisers["recurrent_max"] = recurrent_max  # IndRNN's bound on |u| (the layer's constrain_())
        self.vocab_size = vocab_size
        factory = {"device": device, "dtype": dtype}
        embed_size = embed_size or hidden_size
        self.embedding = nn.Embedding(vocab_size, embed_size, **factory) if input == "embedding" else None
        in_size = embed_size if self.embedding is not None else vocab_size
        self.rnn = make_layer(cell, in_size, hidden_size, num_layers=num_layers, batch_first=True,
                              dropout=dropout if num_layers > 1 else 0.0, engine=engine, **regularisers,
                              **factory)  # fmt: skip
        self.drop = Dropout(dropout)  # rnnkit's: the same inverted dropout, far cheaper on the CPU
        self.head = nn.Linear(self.rnn.output_size, vocab_size, **factory)
        if tie_weights:
            self.head.weight = self.embedding.weight  # type: ignore[union-attr]

    @property
    def engine(self) -> str:
        return self.rnn.engine

    @engine.setter
    def engine(self, name: str) -> None:
        self.rnn.engine = name

    def forward(self, tokens: Tensor, state: State = None) -> tuple[Tensor, State]:
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(f"LanguageModel expects tokens as a (batch, time) long tensor, got {tuple(tokens.shape)} "
                             f"{tokens.dtype}")  # fmt: skip
        output, state = self.rnn(self.drop(self._inputs(tokens)), state)  # (B, T, H)
        logits = self.head(self.drop(output))  # (B, T, V)
        return logits, state

    def step(self, tokens: Tensor, state: State = None) -> tuple[Tensor, State]:
        """One token per sequence, for generation: ``tokens`` (B,) long -> (logits (B, V), state), equal to
        ``forward(tokens[:, None], state)`` with the time axis dropped. In eval mode it runs the layer's
        one-token stepper (:mod:`rnnkit.engines.fused.stepper`: no per-call layer overhead), where the layer has one."""
        stepper = kept_stepper(self, self.rnn) if not self.training else None
        if stepper is None:
            logits, state = self(tokens[:, None], state)
            return logits[:, 0], state
        with torch.no_grad():
            output, state = stepper(self._inputs(tokens), state)  # (B, H)
            return self.head(output), state

    def _inputs(self, tokens: Tensor) -> Tensor:
        """The layer's input for token ids of any shape (…): embeddings (…, E) or one-hot vectors (…, V)."""
        if self.embedding is not None:
            return self.embedding(tokens)
        return F.one_hot(tokens, self.vocab_size).to(self.head.weight.dtype)

    def init_state(self, batch_size: int) -> State:
        """Zero state for ``batch_size`` sequences, in the layer's layout ((L, B, H) or a tuple of them)."""
        w = self.head.weight
        L = self.rnn.num_layers * self.rnn.num_directions
        zeros = tuple(w.new_zeros(L, batch_size, s) for s in self.rnn.cells[0].state_sizes)
        return zeros[0] if len(zeros) == 1 else zeros

    @staticmethod
    def detach_state(state: State) -> State:
        """Cut the graph behind ``state`` (truncated BPTT) while keeping its values."""
        return detach_state(state)


def detach_state(state: Any) -> Any:
    """``state`` with every tensor detached (tensors, tuples/lists of them, or None)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    return type(state)(detach_state(s) for s in state)
