r"""The recurrent regularisers of :class:`rnnkit.layer.Recurrent`, and the seeded masks every engine shares.

Each is a layer option, off by default; at evaluation (``layer.eval()``) a layer is deterministic.

* ``input_dropout`` p — variational dropout on each layer's input (Gal & Ghahramani 2016, "A Theoretically
  Grounded Application of Dropout in Recurrent Neural Networks"): one mask per sequence, the same at every
  step, ``x̃_t = m ⊙ x_t / (1 - p)`` with ``m ~ Bernoulli(1 - p)`` of shape (B, F).
* ``recurrent_dropout`` p — the same on ``h_{t-1}`` where it enters the recurrent matrix product
  (``W_hh (m ⊙ h_{t-1}) / (1 - p)``), never on the carried state itself (GRU's ``z ⊙ h_{t-1}``, LSTM's ``c``),
  as Gal & Ghahramani and Keras' ``recurrent_dropout``. A cell applies it through
  :meth:`~rnnkit.cells.base.RecurrentCell.recurrent_input`.
* ``zoneout`` p on ``h``, ``zoneout_cell`` p on ``c`` (Krueger et al. 2017, "Zoneout: Regularizing RNNs by
  Randomly Preserving Hidden Activations"): per step and unit the previous value is kept with probability p,
  ``s_t = d_t ⊙ s_{t-1} + (1 - d_t) ⊙ s̃_t``; at evaluation ``d_t`` is its expectation p.
* ``weight_dropout`` p — DropConnect on the recurrent matrix (Merity et al. 2018, "Regularizing and Optimizing
  LSTM Language Models", AWD-LSTM's WeightDrop): ``W̃_hh = M ⊙ W_hh / (1 - p)``, one mask per forward call;
  gradients reach the un-dropped weight through the mask.

The masks are not drawn from torch's generator element by element: every forward call draws one 62-bit
seed (so ``torch.manual_seed`` makes a run repeat), and each mask element is a hash of (seed, cell, stream,
index) — the lowbias32 hash of :mod:`rnnkit.dropout` (``csrc/dropout.h``). The reference loop computes the
hash here in int64 tensor arithmetic; the C kernels compute the same integer function, so the fused and the
reference engine draw bit-identical zoneout masks from one seed, and the backward recomputes a step's mask
instead of storing it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from rnnkit.engines.fused import build

_M32 = 0xFFFFFFFF
#: streams: one key per (cell, what the mask is for)
INPUT, RECURRENT, ZONEOUT_H, ZONEOUT_C, WEIGHT = range(5)
MERGE_MODES = ("concat", "sum", "mul", "ave", None)


@dataclass(frozen=True)
class Regularisers:
    """The probabilities of a layer's regularisers (all 0: off)."""

    input_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    zoneout: float = 0.0
    zoneout_cell: float = 0.0
    weight_dropout: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            p = getattr(self, f.name)
            if not isinstance(p, (int, float)) or isinstance(p, bool):
                raise TypeError(f"{f.name} must be a float in [0, 1), got {type(p).__name__} ({p!r})")
            if not 0 <= p < 1:
                raise ValueError(f"{f.name} must be in [0, 1), got {p!r}")

    def any(self) -> bool:
        # spelled out: asked on every call of a layer, and dataclasses.fields() costs microseconds
        return bool(self.input_dropout or self.recurrent_dropout or self.zoneout or self.zoneout_cell
                    or self.weight_dropout)  # fmt: skip

    def active(self) -> dict[str, float]:
        """name -> p of the regularisers that are on."""
        return {f.name: float(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name)}


def _mul32(x: Tensor, c: int) -> Tensor:
    """``(x * c) mod 2^32`` for x < 2^32 in int64 without overflow (split c into 16-bit halves)."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def hash32(x: Tensor) -> Tensor:
    """lowbias32 (Wellons' integer hash) of int64 tensors holding 32-bit values: ``rk_hash32`` of kernels.c."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def draw_seed(device: Any = None) -> Tensor:
    """One seed for a forward call, from torch's CPU generator: (1,) int64."""
    return torch.randint(0, 2**62, (1,)).to(device) if device is not None else torch.randint(0, 2**62, (1,))


def stream_key(seed: Tensor, k: int | Tensor, stream: int | Tensor) -> Tensor:
    """The 32-bit key (a (1,) int64 tensor) of mask ``stream`` of cell ``k`` (layer · directions + direction);
    ``k`` and ``stream`` may be int64 tensors, for many keys at once."""
    lo, hi = seed & _M32, (seed >> 32) & _M32
    base = hash32(lo ^ hash32((hi + 0x9E3779B9) & _M32))
    return hash32((base + _mul32(8 * k + stream + 1, 0x85EBCA6B)) & _M32)


def threshold(p: float) -> int:
    """The 32-bit threshold of probability p: a hash below it happens with probability p (as dropout.h)."""
    return int(p * 4294967296.0)


def bits(key: Tensor, shape: tuple[int, ...], offset: int = 0, device: Any = None) -> Tensor:
    """The hashes of indices ``offset … offset + numel - 1`` (row-major over ``shape``) under ``key``."""
    n = 1
    for s in shape:
        n *= s
    idx = (torch.arange(n, device=device, dtype=torch.int64) + offset) & _M32
    return hash32(idx ^ key.to(device)).view(shape)


def dropout_mask(key: Tensor, shape: tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """Inverted-dropout multipliers: 0 with probability p, else ``1 / (1 - p)``; ``like``'s dtype and device."""
    keep = bits(key, shape, device=like.device) >= threshold(p)
    return keep.to(like.dtype) / (1 - p)


def zoneout_mask(key: Tensor, t: int, shape: tuple[int, int], p: float, device: Any = None) -> Tensor:
    """Step ``t``'s zoneout mask (B, N), True where the previous value is kept (probability p). The index of
    (t, b, n) is ``(t · B + b) · N + n``, the C kernels' too."""
    B, N = shape
    return bits(key, shape, offset=t * B * N, device=device) < threshold(p)


def zoneout(prev: Tensor, new: Tensor, keep: Tensor | float) -> Tensor:
    """``d ⊙ prev + (1 - d) ⊙ new``: ``keep`` is the step's boolean mask, or p at evaluation (the expectation)."""
    if isinstance(keep, Tensor):
        return torch.where(keep, prev, new)
    return keep * prev + (1 - keep) * new


class CallMasks:
    """What one forward call of a layer needs to regularise: the seed and the layer's options. Engines ask it
    for each cell ``k``'s masks; in evaluation mode (or with the option off) the answer is None / the
    expectation, so evaluation is deterministic."""

    def __init__(self, regs: Regularisers, training: bool, seed: Tensor | None) -> None:
        self.regs, self.training, self.seed = regs, training, seed
        self._keys: Tensor | None = None

    def key(self, k: int, stream: int) -> Tensor:
        """``stream_key(seed, k, stream)`` as a (1,) tensor; the call's keys are hashed at once, on first use
        (a few dozen tiny tensor operations per key otherwise, a measurable part of a small layer's step)."""
        if self._keys is None or self._keys.shape[0] <= 8 * k + stream:
            n = 8 * (k + 8)  # this cell and the next ones (layers × directions rarely exceed 8)
            self._keys = stream_key(self.seed, torch.arange(n) // 8, torch.arange(n) % 8)
        i = 8 * k + stream
        return self._keys[i : i + 1]

    def input_mask(self, k: int, x: Tensor) -> Tensor | None:
        """(B, F) multipliers for cell k's input x (T, B, F), or None."""
        p = self.regs.input_dropout
        if not (p and self.training):
            return None
        return dropout_mask(self.key(k, INPUT), (x.shape[1], x.shape[2]), p, x)

    def recurrent_mask(self, k: int, h: Tensor) -> Tensor | None:
        """(B, S) multipliers for the h (B, S) that feeds cell k's recurrent product, or None."""
        p = self.regs.recurrent_dropout
        if not (p and self.training):
            return None
        return dropout_mask(self.key(k, RECURRENT), tuple(h.shape), p, h)

    def weight(self, k: int, name: str, w: Tensor) -> Tensor:
        """Cell k's recurrent matrix ``w`` with DropConnect (training), else ``w`` itself. Every engine takes it from
        here, so one function draws it: ``rnnkit::dropout``'s vectorised hash where the C kernels run (the tensor
        hash below costs ~4 ms for a 1024 × 256 matrix, a third of a d2l LSTM step), else the tensor hash."""
        p = self.regs.weight_dropout
        if not (p and self.training):
            return w
        key = self.key(k, WEIGHT)
        if w.device.type == "cpu" and w.dtype in (torch.float32, torch.float64) and build.available():
            from rnnkit.engines.fused.ops import call_dropout

            return call_dropout(w, float(p), key)
        return w * dropout_mask(key, tuple(w.shape), p, w)

    def zoneout_probs(self) -> tuple[float, float]:
        return float(self.regs.zoneout), float(self.regs.zoneout_cell)

    def zoneout_keys(self, k: int) -> tuple[Tensor | None, Tensor | None]:
        """Cell k's zoneout keys for h and c (None in evaluation or where off)."""
        ph, pc = self.zoneout_probs()
        if not self.training:
            return None, None
        kh = self.key(k, ZONEOUT_H) if ph else None
        kc = self.key(k, ZONEOUT_C) if pc else None
        return kh, kc

    def zoneout_step(self, k: int, t: int, old: tuple[Tensor, ...], new: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Step t's new state after zoneout (state[0] with ``zoneout``, state[1] with ``zoneout_cell``)."""
        probs = self.zoneout_probs()
        keys = self.zoneout_keys(k)
        out = list(new)
        for i, (p, key) in enumerate(zip(probs, keys)):
            if not p or i >= len(new):
                continue
            keep: Tensor | float = p if key is None else zoneout_mask(key, t, tuple(new[i].shape), p, new[i].device)
            out[i] = zoneout(old[i], new[i], keep)
        return tuple(out)

    def has_zoneout(self) -> bool:
        return bool(self.regs.zoneout or self.regs.zoneout_cell)


def merge(outputs: list[Tensor], mode: str | None) -> Tensor:
    """Keras' bidirectional ``merge_mode`` over the two directions' outputs (T, B, S) each: ``concat`` (T, B, 2S),
    ``sum``, ``mul``, ``ave`` (T, B, S), ``None`` both stacked (T, B, 2, S)."""
    if len(outputs) == 1:
        return outputs[0]
    fwd, bwd = outputs
    if mode == "concat":
        return torch.cat(outputs, dim=-1)
    if mode == "sum":
        return fwd + bwd
    if mode == "mul":
        return fwd * bwd
    if mode == "ave":
        return (fwd + bwd) / 2
    return torch.stack(outputs, dim=-2)


def check_merge_mode(mode: Any, bidirectional: bool) -> None:
    if mode not in MERGE_MODES:
        raise ValueError(f"merge_mode must be one of 'concat', 'sum', 'mul', 'ave' or None, got {mode!r}")
    if mode != "concat" and not bidirectional:
        raise ValueError(f"merge_mode={mode!r} needs bidirectional=True: a one-direction layer has nothing to merge")


def in_loop_unsupported(layer: Any) -> str | None:
    """Why an engine that cannot reach into the time loop (torch's kernels) cannot run ``layer``'s options:
    recurrent dropout (in training) and zoneout act inside every step. None if it can."""
    regs: Regularisers | None = getattr(layer, "regularisers", None)
    if regs is None:
        return None
    if regs.recurrent_dropout and layer.training:
        return f"recurrent_dropout={regs.recurrent_dropout} acts inside every step"
    if regs.zoneout or regs.zoneout_cell:
        return "zoneout acts inside every step (in evaluation too: the expectation)"
    return None


def kernel_args(masks: CallMasks | None, k: int, h: Tensor) -> list[Tensor]:
    """Cell k's in-loop regularisers as the fused kernels take them (``reg`` of ``rnnkit::sequence``): ``[]`` when
    none acts, else ``[zone, rmask]`` — zone float64 (p_h, p_c, train, key_h, key_c), rmask (B, S) recurrent-dropout
    multipliers or an empty tensor. The same seed gives the reference loop's masks."""
    if masks is None:
        return []
    rmask = masks.recurrent_mask(k, h)
    if rmask is None and not masks.has_zoneout():
        return []
    p_h, p_c = masks.zoneout_probs()
    kh, kc = masks.zoneout_keys(k)
    none = torch.zeros(1, dtype=torch.int64)
    keys = torch.cat([none if kh is None else kh.cpu(), none if kc is None else kc.cpu()]).double()
    zone = torch.cat([torch.tensor([p_h, p_c, float(masks.training)], dtype=torch.float64), keys])
    return [zone, h.new_empty(0) if rmask is None else rmask]
