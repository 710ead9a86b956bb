"""What every cell shares: parameters with torch's names, init, input checks and the one-step API.

A cell is one time step. It splits that step into two halves so that engines can run them
differently without the cell knowing:

* :meth:`RecurrentCell.input_projection` — the part that depends only on the input, ``W_ih x + b_ih``.
  It has no recurrence, so an engine may compute it for all time steps at once.
* :meth:`RecurrentCell.recurrence` — everything else: the recurrent matrix product and the pointwise
  gate equations. It returns the new state and a dict of the step's gate activations.

Both take the parameters as an explicit argument ``w`` (anything with attributes ``weight_ih``, …).
A standalone cell passes itself; a layer passes a view of its own ``weight_ih_l0``-style parameters.
That is how one set of equations serves both :class:`torch.nn.LSTMCell`-style cells and
:class:`torch.nn.LSTM`-style layers whose ``state_dict`` matches torch's.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.activations import Activation, activation_name, get_activation
from rnnkit.errors import DeviceError, DtypeError, ShapeError, torchscript_unsupported

State = tuple[Tensor, ...]
Gates = dict[str, Tensor]

RECURRENT_INITS = ("uniform", "orthogonal")


class RecurrentCell(nn.Module):
    """Base class of all cells. Subclasses define the parameters and the two halves of a step."""

    #: names of the per-step tensors that :meth:`recurrence` reports (``return_gates``)
    gate_names: tuple[str, ...] = ()
    #: names of the weight matrices whose rows are stacked gate blocks that orthogonal init treats one by one
    recurrent_weights: tuple[str, ...] = ("weight_hh",)
    #: whether :meth:`recurrence` feeds its recurrent matrix product through :meth:`recurrent_input` (a layer
    #: refuses ``recurrent_dropout`` on a cell that does not, rather than silently not applying it)
    supports_recurrent_dropout: bool = False

    def constraints(self) -> dict[str, float]:
        """Bounds on parameters, ``{name: m}``: keep ``|param| ≤ m`` after every optimiser step (enforced by
        :meth:`rnnkit.layer.Recurrent.constrain_`). None by default."""
        return {}

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        recurrent_init: str = "uniform",
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        # Zero is a valid size for a cell, as in torch.nn's cells (an empty state); layers ask for at least 1.
        check_size("input_size", input_size, minimum=0)
        check_size("hidden_size", hidden_size, minimum=0)
        if recurrent_init not in RECURRENT_INITS:
            raise ValueError(f"unknown recurrent_init {recurrent_init!r}: use one of {', '.join(RECURRENT_INITS)}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.recurrent_init = recurrent_init
        factory = {"device": device, "dtype": dtype}
        for name, shape in self.parameter_shapes().items():
            if shape is None:
                self.register_parameter(name, None)
            else:
                self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))

    # ----------------------------------------------------------------------------------------------
    # What a subclass defines
    def parameter_shapes(self) -> dict[str, tuple[int, ...] | None]:
        """Parameter name -> shape, in torch's order; ``None`` for an absent bias."""
        raise NotImplementedError

    @property
    def state_sizes(self) -> tuple[int, ...]:
        """Feature size of each state tensor; the first one is also the cell's output."""
        return (self.hidden_size,)

    def input_projection(self, x: Tensor, w: Any) -> Tensor:
        """``W_ih x + b_ih`` for all gates at once: (..., F) -> (..., G*H)."""
        return nn.functional.linear(x, w.weight_ih, w.bias_ih)

    def recurrence(self, xw: Tensor, state: State, w: Any) -> tuple[State, Gates]:
        """One step given the projected input ``xw``: returns the new state and this step's gates."""
        raise NotImplementedError

    @staticmethod
    def recurrent_input(h: Tensor, w: Any) -> Tensor:
        """The state as it enters the recurrent matrix product: ``h`` itself, or ``h ⊙ m`` when the layer runs
        variational recurrent dropout (``w.recurrent_mask``, (B, S), the same at every step). Only that
        product's operand is masked, never the carried state (Gal & Ghahramani 2016; Keras)."""
        mask = getattr(w, "recurrent_mask", None)
        return h if mask is None else h * mask

    def torch_mode(self) -> str | None:
        """The ``torch.nn`` mode that computes exactly this cell (``"LSTM"``, ``"GRU"``, ``"RNN_TANH"``…), if any."""
        return None

    # ----------------------------------------------------------------------------------------------
    # Shared behaviour
    @property
    def output_size(self) -> int:
        return self.state_sizes[0]

    def step(self, x: Tensor, state: State, w: Any = None) -> tuple[State, Gates]:
        """One full time step: ``x`` (B, F) and ``state`` -> (new state, gates)."""
        w = self if w is None else w
        return self.recurrence(self.input_projection(x, w), state, w)

    def reset_parameters(self) -> None:
        """torch's default init, ``U(-1/sqrt(H), 1/sqrt(H))`` for every parameter, then the extra options."""
        self.init_parameters(dict(self.named_parameters(recurse=False)))

    def init_parameters(self, params: dict[str, Tensor]) -> None:
        """Initialise ``params`` (cell names -> tensors) in place; layers call this with their own tensors."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size else 0.0  # H = 0: nothing to draw
        with torch.no_grad():
            for p in params.values():
                nn.init.uniform_(p, -bound, bound)
            if self.recurrent_init == "orthogonal" and self.hidden_size:
                for name in self.recurrent_weights:
                    weight = params[name]
                    for block in weight.split(self.hidden_size, dim=0):
                        nn.init.orthogonal_(block)

    def zero_state(self, batch: int, *, device: Any = None, dtype: torch.dtype | None = None) -> State:
        """Zeros for every state tensor, (batch, size) each; device/dtype default to the parameters'."""
        ref = self.weight_ih  # None for a layer's parameter-less cells: then torch's defaults apply
        if ref is not None:
            device = ref.device if device is None else device
            dtype = ref.dtype if dtype is None else dtype
        return tuple(torch.zeros(batch, size, device=device, dtype=dtype) for size in self.state_sizes)

    def forward(self, input: Tensor, hx: Tensor | State | None = None) -> Tensor | State:
        """Same contract as ``torch.nn.*Cell``: input (B, F) or (F,), state in, new state out."""
        # Shapes first, then dtypes and devices: torch.nn's order, so a call with two mistakes is told the same one.
        x, batched = self._check_input(input)
        state = self._check_state(hx, x, batched)
        check_like(type(self).__name__, "input", x, self.weight_ih)
        for k, s in enumerate(state):
            check_like(type(self).__name__, "hx" if len(state) == 1 else f"hx[{k}]", s, x)
        new_state, _ = self.step(x, state)
        if not batched:
            new_state = tuple(s.squeeze(0) for s in new_state)
        return new_state[0] if len(new_state) == 1 else new_state

    def __prepare_scriptable__(self) -> nn.Module:
        # torch.jit.script calls this hook first: fail in one line instead of deep inside the compiler.
        raise torchscript_unsupported(self)

    def _check_input(self, input: Tensor) -> tuple[Tensor, bool]:
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: expected input to be a torch.Tensor, got {type(input).__name__}")
        # Each message leads with torch.nn's own wording (code that matches it with a regex keeps working),
        # then says in rnnkit's terms which shape was expected.
        shape = f"expected input of shape (B, {self.input_size}) or ({self.input_size},), got {tuple(input.shape)}"
        if input.dim() not in (1, 2):
            raise ShapeError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead ({shape})")
        if input.shape[-1] != self.input_size:
            raise ShapeError(
                f"{name}: input has inconsistent input_size: got {input.shape[-1]} expected {self.input_size} ({shape})"
            )
        batched = input.dim() == 2
        return (input if batched else input.unsqueeze(0)), batched

    def _check_state(self, hx: Tensor | State | None, x: Tensor, batched: bool = True) -> State:
        """``hx`` as a tuple of (B, size) tensors; unbatched input needs unbatched states (size,), as in torch.
        Shapes only: ``forward`` checks dtypes and devices once every shape is known to fit."""
        name = type(self).__name__
        batch = x.shape[0]
        if hx is None:
            return self.zero_state(batch, device=x.device, dtype=x.dtype)
        n = len(self.state_sizes)
        if isinstance(hx, Tensor):
            if n != 1:
                raise TypeError(f"{name}: expected the state as a tuple of {n} tensors (h, c), got one Tensor")
            hx = (hx,)
        elif not isinstance(hx, (tuple, list)):
            raise TypeError(f"{name}: expected the state as a Tensor or a tuple of tensors, got {type(hx).__name__}")
        if len(hx) != n:
            raise ShapeError(f"{name}: expected a state of {n} tensor(s), got {len(hx)}")
        out = []
        for k, (s, size) in enumerate(zip(hx, self.state_sizes)):
            what = "hx" if n == 1 else f"hx[{k}]"
            if not isinstance(s, Tensor):
                raise TypeError(f"{name}: expected {what} to be a torch.Tensor, got {type(s).__name__}")
            want = (batch, size) if batched else (size,)
            if tuple(s.shape) != want:
                raise ShapeError(f"{name}: {_torch_state_words(k, n, s, want)} ({_expected(what, want, s, batched)})")
            out.append(s if batched else s.unsqueeze(0))
        return tuple(out)

    def extra_repr(self) -> str:
        parts = [f"{self.input_size}, {self.hidden_size}"]
        if not self.bias:
            parts.append("bias=False")
        for attr in ("activation", "recurrent_activation", "output_activation"):
            fn = getattr(self, attr, None)
            if fn is not None:
                parts.append(f"{attr}={activation_name(fn) or fn!r}")
        if self.recurrent_init != "uniform":
            parts.append(f"recurrent_init={self.recurrent_init!r}")
        return ", ".join(parts)


class GatedCell(RecurrentCell):
    """A cell with sigmoid-like gates (GRU, LSTM): takes ``activation`` and ``recurrent_activation``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        activation: str | Activation = "tanh",
        recurrent_activation: str | Activation = "sigmoid",
        recurrent_init: str = "uniform",
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, recurrent_init=recurrent_init, device=device, dtype=dtype)
        self.activation = get_activation(activation)
        self.recurrent_activation = get_activation(recurrent_activation, what="recurrent_activation")
        self.reset_parameters()

    def has_default_activations(self) -> bool:
        return self.activation is torch.tanh and self.recurrent_activation is torch.sigmoid


class Weights:
    """The parameters of one cell under the cell's own names (``w.weight_ih``…), absent ones ``None``: what
    :meth:`RecurrentCell.step` takes as ``w``. A plain class rather than ``SimpleNamespace``, which
    ``torch.compile`` cannot trace."""

    def __init__(self, tensors: dict[str, Tensor | None]) -> None:
        for name, tensor in tensors.items():
            setattr(self, name, tensor)


def _torch_state_words(k: int, n: int, s: Tensor, want: tuple[int, ...]) -> str:
    """torch.nn's sentence for a cell state of the wrong shape (its checks, in its order)."""
    if s.dim() not in (1, 2):
        return f"Expected {'hidden' if n == 1 else f'hx[{k}]'} to be 1D or 2D, got {s.dim()}D instead"
    if len(want) == 2 and s.dim() == 2 and s.shape[0] != want[0]:
        return f"Input batch size {want[0]} doesn't match hidden{k} batch size {s.shape[0]}"
    if s.dim() == len(want) and s.shape[-1] != want[-1]:
        return f"hidden{k} has inconsistent hidden_size: got {s.shape[-1]}, expected {want[-1]}"
    return f"hidden{k} is {s.dim()}-D but the input is {'batched' if len(want) == 2 else 'unbatched'}"


def _expected(what: str, want: tuple[int, ...], s: Tensor, batched: bool) -> str:
    layout = "" if batched else " (unbatched input, so an unbatched state)"
    return f"expected {what} of shape {want}{layout}, got {tuple(s.shape)}"


def check_like(owner: str, what: str, t: Tensor, ref: Tensor, *, label: str | None = None) -> None:
    """Fail with one clear line when ``t`` does not share ``ref``'s dtype and device. ``what`` is the tensor's
    name in the fix (``input.to(...)``), ``label`` how the message calls it (torch.nn says "RNN input")."""
    if t.dtype != ref.dtype:
        fix = f"Convert {what}: {what}.to({ref.dtype})"
        if t.is_floating_point():  # torch.nn's wording; a model in an integer dtype is no fix
            fix += f", or convert model: model.to({t.dtype})"
        raise DtypeError(f"{owner}: {label or what} dtype ({t.dtype}) does not match weight dtype ({ref.dtype}). {fix}")
    if t.device != ref.device:
        raise DeviceError(
            f"{owner}: {what} is on {t.device} but the parameters are on {ref.device}; move them to one device"
        )


def check_size(name: str, value: Any, *, minimum: int) -> None:
    """A size argument: an ``int`` (``TypeError`` otherwise, as torch.nn) of at least ``minimum`` (torch.nn's
    wording: "should be of type int", "must be greater than zero")."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__} ({value!r})")
    if value < minimum:
        at_least = "greater than zero" if minimum == 1 else f"at least {minimum}"
        raise ShapeError(f"{name} must be {at_least}, got {value}")
