"""One token at a time, without the layer's per-call overhead: the generation loop's inner step.

``layer(x_t[None], state)`` per token pays for input checks, engine selection and packing the weights
into the kernels' panels — most of its cost at batch 1 (docs/engines.md). A :class:`Stepper` checks the
layout once and packs the weights once; then each call is one native call (``rnnkit_c::step``) that runs
every layer's forward kernel for a single step (both products and the pointwise update), feeding each
layer the new output of the one below — no Python per layer, which at batch 1 cost more than the kernels
(cells outside :data:`ONE_CALL` step layer by layer). Where the native kernels cannot be built it steps the
cells' readable equations instead (and says so once); so it does for the cells that have no sequence
kernels (minGRU, minLSTM: :data:`STEPPED`).

It reads the layer's parameters when created and notices when they change (their version counters and
addresses), so it stays correct if the model keeps training or is converted (an in-place change through
``.data`` bypasses the counters: make a new stepper after one). Inference only: its outputs carry no
gradient.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from rnnkit.cells import MinGRUCell, MinLSTMCell
from rnnkit.engines.fused import build
from rnnkit.engines.fused.specs import SPECS
from rnnkit.engines.registry import ENGINES
from rnnkit.regularisers import CallMasks, kernel_args

if TYPE_CHECKING:
    from rnnkit.layer import Recurrent

#: built-in cells without sequence kernels, stepped through their readable equations (a few small ops a step)
STEPPED: tuple[type, ...] = (MinGRUCell, MinLSTMCell)
#: the specs whose one-step kernels ``rnnkit_c::step`` (csrc/ops.cpp) runs for every layer in one native call
ONE_CALL = ("lstm", "gru", "elman", "jordan")


def _step(cell: str, x: Tensor, state: tuple[Tensor, ...], packed: list[Tensor | None], config: list[int],
          zone: Tensor | None = None) -> Any:  # fmt: skip
    return torch.ops.rnnkit_c.step(cell, x, state, packed, config, zone)


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
        if type(layer.cells[0]) not in STEPPED:
            with torch.no_grad():  # what the kernels can run without a gradient: the stepper gives none
                reason = ENGINES["fused"].unsupported(layer, layer.weight_ih_l0, False)
            if reason is not None:
                raise ValueError(f"Stepper needs the fused engine's kernels: {reason}")
        self.layer = layer
        # the layer's regularisers as in evaluation: zoneout is its expectation p·old + (1 - p)·new, the dropouts
        # are off. ``reg``: what the kernels take for it ([] without zoneout, else [zone, no recurrent mask]).
        self.masks = CallMasks(layer.regularisers, training=False, seed=None)
        self.reg = kernel_args(self.masks, 0, layer.weight_ih_l0)
        self.zone = self.reg[0] if self.reg else None
        self._params = list(layer.parameters())
        self._versions: tuple[Any, ...] | None = None
        self.native = build.available()
        self._returned: Any = None  # the state the last call returned (a loop that hands it back skips its checks)
        if not self.native and type(layer.cells[0]) not in STEPPED:
            build.announce_fallback("layer.stepper()")
        self._prepare()

    def _prepare(self) -> None:
        """Pack the weights once; again only if a parameter changed."""
        self.dtype = self.layer.weight_ih_l0.dtype
        self.specs, self.configs, self.packed, self.weights = [], [], [], []
        self.flat_packed: list[Tensor | None] = []  # every layer's packed weights in turn, for rnnkit_c::step
        with torch.no_grad():
            for k, cell in enumerate(self.layer.cells):
                spec = SPECS.get(type(cell))
                if spec is None:  # STEPPED: the cell's own step
                    w = self.layer.weights(k)
                    self.specs.append(None)
                    self.configs.append(None)
                    self.packed.append(None)
                    self.weights.append(type(w)({n: None if t is None else t.detach() for n, t in vars(w).items()}))
                    continue
                config, params = spec.config_and_params(cell, self.layer.weights(k))
                params = [p.detach() for p in params]
                self.specs.append(spec)
                self.configs.append(config)
                self.packed.append(spec.pack(config, params) if self.native else None)
                self.flat_packed += self.packed[-1] or []
                self.weights.append(spec.weights(config, params))
        self._versions = self._current_versions()

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its layer: unpickling makes the stepper again (the packed weights are derived data)."""
        return Stepper, (self.layer,)

    def _current_versions(self) -> tuple[Any, ...]:
        """Changes when a parameter does: in place (its version counter) or replaced (``layer.double()``,
        ``layer.to(...)`` and ``.data = …`` give it new storage, so a new address)."""
        return tuple((p._version, p.data_ptr()) for p in self._params)

    def __call__(self, x: Tensor, state: Tensor | tuple[Tensor, ...] | None = None):
        if self._current_versions() != self._versions:  # first: a converted layer changes the dtype checked below
            self._prepare()
        unbatched = x.dim() == 1
        if unbatched:
            x = x.unsqueeze(0)
        if x.dim() != 2 or x.shape[-1] != self.layer.input_size:
            raise ValueError(f"Stepper: expected x of shape (B, {self.layer.input_size}), got {tuple(x.shape)}")
        if x.dtype != self.dtype or x.device.type != "cpu":
            raise ValueError(f"Stepper: expected a {self.dtype} input on the CPU, got {x.dtype} on {x.device}; "
                             "convert it with x.to(...)")  # fmt: skip
        if state is None or state is not self._returned:
            state = self._checked_state(state, x.shape[0], unbatched)
        else:  # what the last call returned (a generation loop hands it back): checked then
            state = (state,) if isinstance(state, Tensor) else state
            if unbatched:
                state = tuple(s.unsqueeze(1) for s in state)
        new_state = self._run(x, state)
        y = new_state[0][-1]  # the top layer's output
        if unbatched:
            y, new_state = y.squeeze(0), tuple(s.squeeze(1) for s in new_state)
        out = new_state[0] if len(new_state) == 1 else new_state
        self._returned = out
        return y, out

    def step_checked(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """One step of checked ``x`` (B, F) and ``state`` ((L, B, S) each): what ``__call__`` runs after its checks,
        and what a layer called one step at a time runs (it has checked both); no gradient. The new state."""
        if self._current_versions() != self._versions:
            self._prepare()
        return self._run(x, state)

    def _run(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        spec0 = self.specs[0]
        if self.native and spec0 is not None and spec0.name in ONE_CALL:  # every layer's kernel, in one call
            # a raw kernel: no autograd records it, so no no_grad() (a microsecond a token) is needed
            x = x.detach() if x.requires_grad else x
            state = tuple(s.detach() for s in state) if any(s.requires_grad for s in state) else state
            return tuple(_step(spec0.name, x, state, self.flat_packed, self.configs[0], self.zone))
        with torch.no_grad():
            return self._layer_by_layer(x, state)

    def _checked_state(self, state: Tensor | tuple[Tensor, ...] | None, B: int, unbatched: bool) -> tuple[Tensor, ...]:
        sizes = self.layer.cells[0].state_sizes
        L = self.layer.num_layers
        if state is None:
            return tuple(torch.zeros(L, B, s, dtype=self.dtype) for s in sizes)
        state = (state,) if isinstance(state, Tensor) else tuple(state)
        if unbatched:
            state = tuple(s.unsqueeze(1) for s in state)
        want = [(L, B, s) for s in sizes]
        if [tuple(s.shape) for s in state] != want or any(s.dtype != self.dtype for s in state):
            raise ValueError(f"Stepper: expected a state of shapes {want} ({self.dtype}), got "
                             f"{[(tuple(s.shape), s.dtype) for s in state]}")  # fmt: skip
        return state

    def _layer_by_layer(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """One call per layer: the sequence kernel for one step, or the cell's readable step."""
        finals = []
        for k, (spec, config) in enumerate(zip(self.specs, self.configs, strict=True)):
            layer_state = [s[k] for s in state]
            if self.native and spec is not None:  # the sequence kernel for one step
                reg = {"reg": self.reg} if self.reg else {}
                buffers = spec.run(config, self.packed[k], x.unsqueeze(0), layer_state, None, False, **reg)
                new = spec.outputs(config, buffers)[1]
            else:
                new = self.layer.cells[k].step(x, tuple(layer_state), self.weights[k])[0]
                new = self.masks.zoneout_step(k, 0, tuple(layer_state), new)
            finals.append(new)
            x = new[0]  # the next layer reads this one's output
        return tuple(torch.stack(s) for s in zip(*finals))


def kept_stepper(owner: Any, layer: Recurrent) -> Stepper | None:
    """``layer``'s stepper, made on ``owner``'s first call and kept on it (as ``_stepper_cache``); ``None``
    where the layer cannot be stepped (the caller then runs the layer itself). For models that decode one
    token at a time: :class:`~rnnkit.models.LanguageModel`, the translation decoder, and a layer called one step
    at a time without a gradient (the fused engine; then ``owner`` is the layer)."""
    kept = owner.__dict__
    if "_stepper_cache" not in kept:
        try:
            kept["_stepper_cache"] = layer.stepper()  # the C stepper, or on a GPU the Triton one
        except ValueError:  # e.g. a cell the fused kernels do not cover
            kept["_stepper_cache"] = None
    return kept["_stepper_cache"]
