"""The one generic recurrent layer: any cell × time × depth × direction, run by a chosen engine.

:class:`Recurrent` owns the parameters under torch's names (``weight_ih_l0``, ``bias_hh_l1_reverse``, …)
and keeps one parameter-less cell per (layer, direction) for its equations. Forward validates and
normalises the input (batch_first, unbatched, ``PackedSequence``, ``lengths=``), hands a time-major
problem to an engine (see :mod:`rnnkit.engines`) and restores the caller's layout.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.activations import activation_name
from rnnkit.cells import RecurrentCell
from rnnkit.cells.base import Weights, check_like, check_size
from rnnkit.engines import ENGINES, check_engine_name, select_engine
from rnnkit.errors import ShapeError, torchscript_unsupported
from rnnkit.regularisers import CallMasks, Regularisers, check_merge_mode, draw_seed

StateIn = Tensor | tuple[Tensor, ...] | None


class Recurrent(nn.Module):
    """Run ``cell_class`` over time, ``num_layers`` deep, in one or both directions.

    Arguments match ``torch.nn.RNNBase``; ``cell_kwargs`` go to every cell (activations, ``proj_size``…).
    ``engine``: ``"auto"`` (fastest that fits), ``"reference"``, ``"torch"`` or any registered engine;
    it can be changed at any time by assigning ``layer.engine``.

    Beyond torch (keyword-only, all off by default; :mod:`rnnkit.regularisers` has the equations):
    ``input_dropout``, ``recurrent_dropout`` (variational, Gal & Ghahramani 2016), ``zoneout`` on h and
    ``zoneout_cell`` on c (Krueger et al. 2017; at evaluation the expectation), ``weight_dropout`` (DropConnect
    on the recurrent matrix, Merity et al. 2018) — probabilities in [0, 1); at evaluation the layer is
    deterministic. ``merge_mode`` (Keras' ``Bidirectional``): how a bidirectional layer combines its two
    directions, ``"concat"`` (torch's layout, the default), ``"sum"``, ``"mul"``, ``"ave"`` or ``None`` (the two
    outputs stacked on a new axis before the features: (T, B, 2, S)); stacked layers read the merged output.
    ``stateful``: carry the final state into the next call (when no state is passed) until
    :meth:`reset_states`; the carried state is detached, so backpropagation is truncated at the call boundary.
    """

    # class-level defaults, so that a layer built without __init__ (copy, unpickling an older one) has them
    regularisers: Regularisers = Regularisers()
    merge_mode: str | None = "concat"
    stateful: bool = False
    _carried: tuple[Tensor, ...] | None = None
    _masks: CallMasks | None = None

    def __init__(
        self,
        cell_class: type[RecurrentCell],
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: torch.dtype | None = None,
        *,
        engine: str = "auto",
        cell_kwargs: dict[str, Any] | None = None,
        input_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        zoneout_cell: float = 0.0,
        weight_dropout: float = 0.0,
        merge_mode: str | None = "concat",
        stateful: bool = False,
    ) -> None:
        super().__init__()
        # The exception types are torch.nn.RNNBase's, so code that guards a constructor call keeps working.
        # The messages also carry torch.nn's wording, which code (and torch's own tests) match with regexes.
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(
                "dropout should be a number in range [0, 1] representing the probability of an element being "
                f"zeroed, got {dropout!r}"
            )
        for flag, value in (("bias", bias), ("batch_first", batch_first)):
            if not isinstance(value, bool):
                raise TypeError(
                    f"{flag} should be of type bool, got: {type(value).__name__} ({value!r}); pass True or False"
                )
        regularisers = Regularisers(input_dropout, recurrent_dropout, zoneout, zoneout_cell, weight_dropout)
        check_merge_mode(merge_mode, bidirectional)
        if not isinstance(stateful, bool):
            raise TypeError(f"stateful should be of type bool, got: {type(stateful).__name__} ({stateful!r})")
        check_size("input_size", input_size, minimum=1)
        check_size("hidden_size", hidden_size, minimum=1)
        check_size("num_layers", num_layers, minimum=1)
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"dropout={dropout} has no effect with num_layers=1: it applies between stacked layers",
                stacklevel=3,
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.engine = check_engine_name(engine)
        self.cell_kwargs = dict(cell_kwargs or {})
        self.regularisers = regularisers
        self.merge_mode = merge_mode
        self.stateful = stateful
        self._carried: tuple[Tensor, ...] | None = None  # the stateful layer's state between calls
        self._masks: CallMasks | None = None  # set for the duration of a regularised call

        cells: list[RecurrentCell] = []
        self._flat_weights_names: list[str] = []
        for layer in range(num_layers):
            for direction in range(self.num_directions):
                below = cells[-1].output_size if layer else 0  # the previous layer's features per direction
                merged = merge_mode in ("concat", None)  # None: stacked layers read the concatenation
                layer_input = input_size if layer == 0 else below * (self.num_directions if merged else 1)
                cell = cell_class(layer_input, hidden_size, bias=bias, **self.cell_kwargs, device=device, dtype=dtype)
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                # The layer, not the cell, owns the tensors (torch's names); the cell keeps only its equations.
                for name, param in list(cell._parameters.items()):
                    if param is not None:
                        self.register_parameter(name + suffix, param)
                        self._flat_weights_names.append(name + suffix)
                    cell._parameters[name] = None
                cells.append(cell)
        self._cells = tuple(cells)  # a tuple, so nn.Module does not register them as children
        self._check_regularisers()

    def _check_regularisers(self) -> None:
        cell = self._cells[0]
        name = type(cell).__name__
        if self.regularisers.zoneout_cell and len(cell.state_sizes) < 2:
            raise ValueError(
                f"zoneout_cell={self.regularisers.zoneout_cell} needs a cell with a memory cell c (LSTM, "
                f"PeepholeLSTM); {name} has only h: use zoneout="
            )
        if self.regularisers.recurrent_dropout and not cell.supports_recurrent_dropout:
            raise ValueError(
                f"recurrent_dropout={self.regularisers.recurrent_dropout}: {name} does not route its recurrent "
                "product through recurrent_input(), so it cannot apply it; use input_dropout or zoneout"
            )
        if self.regularisers.weight_dropout and not cell.recurrent_weights:
            raise ValueError(
                f"weight_dropout={self.regularisers.weight_dropout}: {name} has no recurrent weight matrix to drop "
                "connections from; use input_dropout or zoneout"
            )

    # ----------------------------------------------------------------------------------------------
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def cells(self) -> tuple[RecurrentCell, ...]:
        """The parameter-less cells, one per (layer, direction), in torch's order."""
        return self._cells

    @property
    def output_size(self) -> int:
        """Features per direction in ``output`` (``proj_size`` or ``hidden_size``, Jordan's ``output_size``)."""
        return self._cells[0].output_size

    def weights(self, k: int) -> Weights:
        """The parameters of cell ``k`` under the cell's own names (``weight_ih``…), absent biases as None."""
        suffix = f"_l{k // self.num_directions}" + ("_reverse" if k % self.num_directions else "")
        names = self._cells[k].parameter_shapes()
        tensors = {n: getattr(self, n + suffix, None) for n in names}
        if self._masks is not None:  # during a forward call: DropConnect on the recurrent matrix (training)
            for n in self._cells[k].recurrent_weights:
                tensors[n] = self._masks.weight(k, n, tensors[n])
        return Weights(tensors)

    @property
    def call_masks(self) -> CallMasks | None:
        """The regularisation of the forward call in progress (engines read it), or None."""
        return self._masks

    def call_flat_weights(self) -> list[Tensor]:
        """:meth:`flat_weights` as this call uses them (with ``weight_dropout`` in training, the dropped ones)."""
        if self._masks is None:
            return self.flat_weights()
        out = []
        for k in range(len(self._cells)):
            w = vars(self.weights(k))
            out += [w[n] for n in self._cells[k].parameter_shapes() if w[n] is not None]
        return out

    def __getstate__(self) -> dict[str, Any]:
        """Pickling and ``copy.deepcopy`` leave out the kept one-step stepper (derived data, made again on use)."""
        state = dict(super().__getstate__())
        state.pop("_stepper_cache", None)
        return state

    def reset_states(self) -> None:
        """Forget the state a ``stateful`` layer carries: the next call starts from zeros (or the given state)."""
        self._carried = None

    def flat_weights(self) -> list[Tensor]:
        """Every parameter in torch's flat order (what ``torch.lstm`` & co. take)."""
        return [getattr(self, n) for n in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Tensor]]:
        """As ``torch.nn.RNNBase.all_weights``: one list of parameters per (layer, direction)."""
        per_cell = len(self._flat_weights_names) // len(self._cells)
        flat = self.flat_weights()
        return [flat[i : i + per_cell] for i in range(0, len(flat), per_cell)]

    def flatten_parameters(self) -> None:
        """No-op kept for drop-in compatibility with ``torch.nn.RNNBase``."""

    def reset_parameters(self) -> None:
        for k, cell in enumerate(self._cells):
            cell.init_parameters({n: t for n, t in vars(self.weights(k)).items() if t is not None})

    @torch.no_grad()
    def constrain_(self) -> None:
        """Clip every parameter that its cell bounds (:meth:`~rnnkit.cells.base.RecurrentCell.constraints`, e.g.
        IndRNN's ``recurrent_max``) back inside the bound, in place. rnnkit's trainer calls it after every optimiser
        step; in a loop of your own, call it after ``optimizer.step()``. A no-op for cells without bounds."""
        for k, cell in enumerate(self._cells):
            w = self.weights(k)
            for name, bound in cell.constraints().items():
                getattr(w, name).clamp_(-bound, bound)

    def stepper(self) -> Any:
        """A :class:`~rnnkit.engines.fused.stepper.Stepper`: this layer one token at a time, little overhead
        (on a CUDA device, :class:`rnnkit.engines.triton.stepper.Stepper`: the Triton kernels, same API)."""
        if self.weight_ih_l0.device.type == "cuda":
            if self.regularisers.zoneout or self.regularisers.zoneout_cell:
                raise ValueError("a layer with zoneout cannot be stepped by the GPU stepper (it has no zoneout); "
                                 "run the layer on one-step sequences instead")  # fmt: skip
            from rnnkit.engines.triton.stepper import Stepper as GPUStepper

            return GPUStepper(self)
        from rnnkit.engines.fused.stepper import Stepper

        return Stepper(self)

    def __prepare_scriptable__(self) -> nn.Module:
        # torch.jit.script calls this hook first: fail in one line instead of deep inside the compiler.
        raise torchscript_unsupported(self)

    def describe_cell(self) -> str:
        return self._cells[0].__class__.__name__ + f"({self._cells[0].extra_repr()})"

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.cell_kwargs.get("proj_size"):  # where torch's repr puts it
            s += f", proj_size={self.cell_kwargs['proj_size']}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for flag, default in (
            ("bias", True),
            ("batch_first", False),
            ("dropout", 0.0),
            ("bidirectional", False),
        ):
            if getattr(self, flag) != default:
                s += f", {flag}={getattr(self, flag)}"
        for name, p in self.regularisers.active().items():
            s += f", {name}={p}"
        if self.merge_mode != "concat":
            s += f", merge_mode={self.merge_mode!r}"
        if self.stateful:
            s += ", stateful=True"
        defaults = {n: p.default for n, p in inspect.signature(type(self).__init__).parameters.items()}
        for k, v in self.cell_kwargs.items():
            if k != "proj_size" and (k in defaults and v != defaults[k] or k not in defaults):
                s += f", {k}={activation_name(v) or v!r}" if callable(v) else f", {k}={v!r}"
        return s + (f", engine={self.engine!r}" if self.engine != "auto" else "")

    # ----------------------------------------------------------------------------------------------
    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: StateIn = None,
        lengths: Tensor | list[int] | None = None,
        return_gates: bool = False,
    ) -> tuple[Any, ...]:
        """Run the layer; returns ``(output, h_n)`` / ``(output, (h_n, c_n))`` exactly as torch does.

        ``lengths`` (B,) marks where each padded sequence ends (any order): outputs past it are zero and
        the final states are those at each sequence's last valid step. With ``return_gates=True`` a third
        value maps each gate name to a tensor (num_layers * num_directions, T, B, size)
        ((…, B, T, size) when ``batch_first``), zero past each sequence's length.
        """
        input, hx = self._autocast_inputs(input, hx)
        packed = isinstance(input, PackedSequence)
        if packed:
            if lengths is not None:
                raise ValueError("pass either a PackedSequence or lengths=, not both")
            self._check_features(input.data, f"PackedSequence data of shape (N, {self.input_size})")
            x, lengths = pad_packed_sequence(input, batch_first=False)  # the caller's batch order
            batched = True
        else:
            x, batched = self._check_input(input)
        T, B = x.shape[0], x.shape[1]
        lengths = self._check_lengths(lengths, T, B, x.device)
        if hx is None and self.stateful and self._carried is not None:
            carried = self._carried[0].shape[1]
            if carried != B:
                raise ValueError(
                    f"{type(self).__name__}(stateful=True) carries the state of a batch of {carried} sequences, "
                    f"got a batch of {B}: call reset_states() before changing the batch size"
                )
            state = self._carried
        else:
            state = self._check_state(hx, B, batched, x)

        regs = self.regularisers
        if regs.any() and (self.training or regs.zoneout or regs.zoneout_cell):
            # the engines read this call's masks (one seed per call) through call_masks / weights(k)
            self._masks = CallMasks(regs, self.training, draw_seed() if self.training else None)
            try:
                output, final, gates = self._run_engine(x, state, lengths, return_gates)
            finally:
                self._masks = None
        else:
            output, final, gates = self._run_engine(x, state, lengths, return_gates)
        if self.stateful:  # detached: backpropagation stops at the call boundary (truncated BPTT)
            self._carried = tuple(s.detach() for s in final)

        if packed:
            output = self._repack(output, lengths, input)
        elif self.batch_first and batched:
            output = output.transpose(0, 1)
        if gates is not None and self.batch_first:
            gates = {n: g.transpose(1, 2) for n, g in gates.items()}
        if not batched:
            output = output.squeeze(1)
            final = tuple(s.squeeze(1) for s in final)
            gates = {n: g.squeeze(2) for n, g in gates.items()} if gates is not None else None
        state_out = final[0] if len(final) == 1 else final
        return (output, state_out, gates) if return_gates else (output, state_out)

    def _run_engine(
        self, x: Tensor, state: tuple[Tensor, ...], lengths: Tensor | None, return_gates: bool
    ) -> tuple[Tensor, tuple[Tensor, ...], dict[str, Tensor] | None]:
        engine = select_engine(self, x, return_gates)
        if x.shape[1] == 0:  # an empty batch (as torch.nn accepts): the reference loop returns empty tensors
            engine = ENGINES["reference"]
        return engine.run(self, x, state, lengths, return_gates)

    @staticmethod
    def _repack(output: Tensor, lengths: Tensor, like: PackedSequence) -> PackedSequence:
        """Pack ``output`` (T, B, …, caller's batch order) exactly as ``like`` was packed: same
        ``batch_sizes`` and the same ``sorted_indices`` (``None`` for input packed with ``enforce_sorted=True``)."""
        order = like.sorted_indices
        if order is not None:
            output, lengths = output.index_select(1, order), lengths.index_select(0, order)
        data = pack_padded_sequence(output, lengths.cpu(), enforce_sorted=True).data
        return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)

    # ----------------------------------------------------------------------------------------------
    # The checks. Exception types are torch.nn's (see rnnkit.errors); messages name expected and got.
    def check_forward_args(self, input: Tensor, hidden: StateIn, batch_sizes: Tensor | None) -> None:
        """``torch.nn.RNNBase``'s check, for code that calls it: ``input`` is batched ((T, B, F), or (B, T, F)
        with ``batch_first``) or, with ``batch_sizes``, a PackedSequence's data (N, F); ``hidden`` batched."""
        name = type(self).__name__
        if batch_sizes is not None:
            if input.dim() != 2:
                raise ShapeError(
                    f"{name}: input must have 2 dimensions, got {input.dim()} (expected PackedSequence data "
                    f"(N, {self.input_size}), got {tuple(input.shape)})"
                )
            self._check_features(input, f"PackedSequence data of shape (N, {self.input_size})")
            self._check_state(hidden, int(batch_sizes[0]), True, input)
            return
        if input.dim() != 3:
            raise ShapeError(
                f"{name}: input must have 3 dimensions, got {input.dim()} (expected a batched input, got "
                f"{tuple(input.shape)})"
            )
        x, _ = self._check_input(input)
        self._check_state(hidden, x.shape[1], True, x)

    def permute_hidden(self, hx: StateIn, permutation: Tensor | None) -> StateIn:
        """Reorder the batch dimension of a state (a tensor or a tuple of them), as ``torch.nn.RNNBase`` does."""
        if permutation is None or hx is None:
            return hx
        if isinstance(hx, Tensor):
            return hx.index_select(1, permutation)
        return tuple(h.index_select(1, permutation) for h in hx)

    def _autocast_inputs(self, input: Any, hx: StateIn) -> tuple[Any, StateIn]:
        """Under ``torch.autocast`` the layer takes inputs and states of any float dtype (a bf16 activation from
        an autocast Linear, a state returned by another engine) in its weights' dtype: the engines decide which
        products run in lower precision (the cell state and the weights stay in float32)."""
        w = self.weight_ih_l0
        if not (torch.is_autocast_enabled(w.device.type) and w.is_floating_point()):
            return input, hx

        def cast(t: Any) -> Any:
            if isinstance(t, Tensor) and t.is_floating_point() and t.dtype != w.dtype and t.device == w.device:
                return t.to(w.dtype)
            return t

        if isinstance(input, PackedSequence):
            input = input._replace(data=cast(input.data))
        else:
            input = cast(input)
        if isinstance(hx, (tuple, list)):
            hx = type(hx)(cast(h) for h in hx)
        return input, cast(hx)

    def _check_features(self, t: Tensor, expected: str) -> None:
        """``t``'s last dimension is input_size and it shares the weights' dtype and device."""
        name = type(self).__name__
        if t.shape[-1] != self.input_size:
            raise ShapeError(
                f"{name}: expected {expected}, got {tuple(t.shape)}: "
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {t.shape[-1]}"
            )
        check_like(name, "input", t, self.weight_ih_l0, label="RNN input")

    def _check_input(self, input: Tensor) -> tuple[Tensor, bool]:
        name = type(self).__name__
        if isinstance(input, Tensor) and input.dim() in (2, 3) and input.shape[-1] == self.input_size:
            check_like(name, "input", input, self.weight_ih_l0, label="RNN input")  # the usual case: no messages
        else:  # a message for what is wrong (built only here: a one-token decoding loop calls this every step)
            self._refuse_input(input)
        time_dim = 1 if self.batch_first and input.dim() == 3 else 0
        if input.shape[time_dim] == 0:  # an empty batch is fine; a sequence needs a step (torch: RuntimeError)
            raise ShapeError(
                f"{name}: Expected sequence length to be larger than 0 in RNN, got an input of shape "
                f"{tuple(input.shape)} with no time steps"
            )
        if input.dim() == 2:
            return input.unsqueeze(1), False
        return (input.transpose(0, 1) if self.batch_first else input), True

    def _refuse_input(self, input: Any) -> None:
        name = type(self).__name__
        layout = "(B, T, {F})" if self.batch_first else "(T, B, {F})"
        expected = layout.format(F=self.input_size)
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: expected input to be a Tensor or PackedSequence, got {type(input).__name__}")
        if input.dim() not in (2, 3):
            raise ShapeError(
                f"{name}: expected input of shape {expected} (batch_first={self.batch_first}) or unbatched "
                f"(T, {self.input_size}), got {tuple(input.shape)}"
            )
        self._check_features(input, f"input of shape {expected} (batch_first={self.batch_first})")

    def _check_lengths(self, lengths: Any, T: int, B: int, device: torch.device) -> Tensor | None:
        if lengths is None:
            return None
        name = type(self).__name__
        lengths = torch.as_tensor(lengths)
        if lengths.dim() != 1 or lengths.shape[0] != B or (lengths.dtype.is_floating_point and B > 0):
            raise ValueError(
                f"{name}: lengths must be {B} integers (one per sequence), got shape {tuple(lengths.shape)} "
                f"dtype {lengths.dtype}"
            )
        # reading the values needs them on the host: torch.compile cannot trace that (a graph break), so a
        # compiled model trusts its lengths, as torch.nn's packed sequences do
        if B > 0 and not torch.compiler.is_compiling() and (int(lengths.min()) < 1 or int(lengths.max()) > T):
            raise ValueError(
                f"{name}: every length must be in [1, T={T}], got min {int(lengths.min())} max {int(lengths.max())}"
            )
        return lengths.to(device=device, dtype=torch.int64)

    def _check_state(self, hx: StateIn, B: int, batched: bool, x: Tensor) -> tuple[Tensor, ...]:
        name = type(self).__name__
        sizes = self._cells[0].state_sizes
        LD = self.num_layers * self.num_directions
        if hx is None:
            return tuple(x.new_zeros(LD, B, s) for s in sizes)
        kind = "a tuple (h_0, c_0)" if len(sizes) == 2 else "one tensor h_0"
        if isinstance(hx, Tensor):
            if len(sizes) != 1:
                raise TypeError(f"{name}: expected the initial state as {kind}, got one Tensor")
            hx = (hx,)
        elif not isinstance(hx, (tuple, list)):
            raise TypeError(f"{name}: expected the initial state as {kind}, got {type(hx).__name__}")
        if len(hx) != len(sizes):
            raise ShapeError(f"{name}: expected the initial state as {kind}, got {len(hx)} tensor(s)")
        out = []
        for k, (s, size) in enumerate(zip(hx, sizes)):
            what = "hx" if len(sizes) == 1 else ("h_0", "c_0")[k]
            if not isinstance(s, Tensor):
                raise TypeError(f"{name}: expected {what} to be a Tensor, got {type(s).__name__}")
            want = (LD, B, size) if batched else (LD, size)
            if tuple(s.shape) != want:
                hidden = "hidden" if len(sizes) == 1 else f"hidden[{k}]"  # torch.nn's words lead, rnnkit's follow
                raise ShapeError(
                    f"{name}: Expected {hidden} size {want}, got {list(s.shape)}: expected {what} of shape {want} "
                    f"(num_layers * num_directions, {'batch, ' if batched else ''}state size)"
                )
            check_like(name, what, s, x)
            out.append(s if batched else s.unsqueeze(1))
        return tuple(out)


def constrain(model: nn.Module) -> None:
    """:meth:`Recurrent.constrain_` on every rnnkit layer inside ``model`` (after ``optimizer.step()``)."""
    for module in model.modules():
        if isinstance(module, Recurrent):
            module.constrain_()
