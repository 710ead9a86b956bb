"""One token at a time, without the layer's per-call overhead: the generation loop's inner step.

``layer(x_t[None], state)`` per token pays for input checks, engine selection, a sequence-sized
buffer and (through torch.nn) a packed-weights dispatch — most of the 118–161 µs torch.nn.LSTM takes
per token here (docs/engines.md). A :class:`Stepper` checks the layout once and lays the weights out once;
then each call is, per layer, one C call: the fused engine's sequence kernel run for a single step on
all threads (both products and the pointwise update, :mod:`rnnkit.engines._fused_seq_cells`). Cells that
kernel does not cover (an LSTM with a projection, GRU with ``reset_after=False``) take one input GEMM, one
recurrent GEMM and the fused engine's in-place pointwise step per layer instead.

It reads the layer's parameters when created and notices when they change (their version counters),
so it stays correct if the model keeps training or is converted (an in-place change through ``.data``
bypasses the counters: make a new stepper after one). Inference only: its outputs carry no gradient.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from rnnkit.engines import _fused_seq
from rnnkit.engines._fused_kernels import Kernel
from rnnkit.engines._fused_seq_cells import spec_for
from rnnkit.engines.fused import FusedEngine, make_kernel

if TYPE_CHECKING:
    from rnnkit.layer import Recurrent


class Stepper:
    """Step ``layer`` one token at a time: ``y, state = stepper(x_t, state)``.

    ``x_t`` is (B, F) (or (F,) unbatched); ``state`` is what the layer takes and returns (``h`` or ``(h, c)``,
    each (num_layers, B, S)), ``None`` for zeros. Returns the top layer's output (B, S) and the new state,
    equal to ``layer(x_t.unsqueeze(0), state)`` (tests). Unidirectional layers only.
    """

    def __init__(self, layer: Recurrent) -> None:
        if layer.bidirectional:
            raise ValueError("a bidirectional layer cannot be stepped one token at a time: its reverse half needs "
                             "the whole sequence; run the layer on the sequence instead")  # fmt: skip
        reason = FusedEngine().unsupported(layer, layer.weight_ih_l0, False)
        if reason is not None:
            raise ValueError(f"Stepper needs the fused engine's kernels: {reason}")
        self.layer = layer
        self._params = list(layer.parameters())
        self.kernels: list[Kernel] = [make_kernel(cell, None, False) for cell in layer.cells]
        self._versions: tuple[Any, ...] | None = None
        self._prepare()

    def _prepare(self) -> None:
        """Pack the weights (or detach them and fold the biases) once; again only if a parameter changed."""
        like = self.layer.weight_ih_l0
        self.dtype = like.dtype
        # one C call per layer where the sequence kernels cover the cell (CPU); else the per-step kernels
        self.seq = all(_fused_seq.supports(cell, like, False) for cell in self.layer.cells)
        with torch.no_grad():
            self.W_ih_t, self.b_in, self.weights, self.specs, self.packed = [], [], [], [], []
            for k, (cell, kernel) in enumerate(zip(self.layer.cells, self.kernels, strict=True)):
                w = self.layer.weights(k)
                if self.seq:
                    spec, params = spec_for(cell, w)
                    self.specs.append(spec)
                    self.packed.append(spec.pack([None if p is None else p.detach() for p in params]))
                else:
                    self.W_ih_t.append(w.weight_ih.detach().t())
                    b = kernel.input_bias(w)
                    self.b_in.append(None if b is None else b.detach())
                    self.weights.append([None if t is None else t.detach() for t in kernel.weights(w)])
        self._versions = self._current_versions()

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its layer: unpickling makes the stepper again (the packed weights are derived data)."""
        return Stepper, (self.layer,)

    def _current_versions(self) -> tuple[Any, ...]:
        """Changes when a parameter does: in place (its version counter) or replaced (``layer.double()``,
        ``layer.to(...)`` and ``.data = …`` give it new storage, so a new address)."""
        return tuple((p._version, p.data_ptr()) for p in self._params)

    def __call__(self, x: Tensor, state: Tensor | tuple[Tensor, ...] | None = None):
        if self._current_versions() != self._versions:
            self._prepare()
        unbatched = x.dim() == 1
        if unbatched:
            x = x.unsqueeze(0)
        if x.dim() != 2 or x.shape[-1] != self.layer.input_size:
            raise ValueError(f"Stepper: expected x of shape (B, {self.layer.input_size}), got {tuple(x.shape)}")
        if x.dtype != self.dtype or (self.seq and x.device.type != "cpu"):
            raise ValueError(f"Stepper: expected a {self.dtype} input on the layer's device, got {x.dtype} on "
                             f"{x.device}; convert it with x.to(...)")  # fmt: skip
        sizes = self.layer.cells[0].state_sizes
        L, B = self.layer.num_layers, x.shape[0]
        if state is None:
            state = tuple(x.new_zeros(L, B, s) for s in sizes)
        else:
            state = (state,) if isinstance(state, Tensor) else tuple(state)
            if unbatched:
                state = tuple(s.unsqueeze(1) for s in state)
            want = [(L, B, s) for s in sizes]
            if [tuple(s.shape) for s in state] != want or any(s.dtype != self.dtype for s in state):
                raise ValueError(f"Stepper: expected a state of shapes {want} ({self.dtype}), got "
                                 f"{[(tuple(s.shape), s.dtype) for s in state]}")  # fmt: skip
        if self.seq:
            new_state = self._step_c(x.contiguous(), tuple(s.contiguous() for s in state))
            y = new_state[0][L - 1]
        else:
            y, new_state = self._step_kernels(x, state)
        if unbatched:
            y, new_state = y.squeeze(0), tuple(s.squeeze(1) for s in new_state)
        return y, (new_state[0] if len(new_state) == 1 else new_state)

    def _step_c(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Each layer's sequence kernel for one step, reading state[·][k] and writing new[·][k] in place."""
        new = tuple(torch.empty_like(s) for s in state)  # (L, B, S) each
        B, size = x.shape[0], state[0].element_size()
        x_addr, F = x.data_ptr(), x.shape[1]
        for k, spec in enumerate(self.specs):
            at, out = ([t.data_ptr() + k * t.stride(0) * size for t in ts] for ts in (state, new))  # layer k's rows
            spec.step(B, x_addr, F, at, out, self.packed[k])
            x_addr, F = out[0], new[0].shape[2]  # the next layer reads this one's output
        return new

    @torch.no_grad()
    def _step_kernels(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Per layer: the input and recurrent GEMMs through torch, then the fused pointwise step."""
        finals = []
        for k, kernel in enumerate(self.kernels):
            b = self.b_in[k]
            xw = torch.mm(x, self.W_ih_t[k]) if b is None else torch.addmm(b, x, self.W_ih_t[k])  # (B, G)
            new = kernel.step(xw, tuple(s[k] for s in state), self.weights[k])
            x = new[0]
            finals.append(new)
        if len(finals) == 1:
            return x, tuple(s.unsqueeze(0) for s in finals[0])
        return x, tuple(torch.stack(s) for s in zip(*finals))


def kept_stepper(owner: Any, layer: Recurrent) -> Stepper | None:
    """``layer``'s stepper, made on ``owner``'s first call and kept on it (as ``_stepper_cache``); ``None``
    where the layer cannot be stepped (the caller then runs the layer itself). For models that decode one
    token at a time: :class:`~rnnkit.models.LanguageModel`, the translation decoder."""
    kept = owner.__dict__
    if "_stepper_cache" not in kept:
        try:
            kept["_stepper_cache"] = Stepper(layer)
        except ValueError:  # e.g. a cell the fused kernels do not cover
            kept["_stepper_cache"] = None
    return kept["_stepper_cache"]
