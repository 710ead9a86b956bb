"""Drop-in ``torch.nn`` layers (``RNN``, ``GRU``, ``LSTM``) and the ones torch lacks, all on :class:`Recurrent`.

Positional arguments, defaults, parameter names, state layout and return values are torch's, so
``rnnkit.LSTM(...).load_state_dict(torch.nn.LSTM(...).state_dict())`` works and so does the reverse.
Everything beyond torch is keyword-only; ``**options`` are :class:`Recurrent`'s (the regularisers,
``merge_mode``, ``stateful``). ``mode``, ``proj_size`` (0 on RNN/GRU; passing it raises as in
torch), ``check_forward_args`` and ``permute_hidden`` are there for code that reads torch's attributes.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch

from rnnkit.activations import Activation
from rnnkit.cells import GRUCell, JordanCell, LSTMCell, PeepholeLSTMCell, RNNCell
from rnnkit.cells.base import check_size
from rnnkit.cells.indrnn import IndRNNCell
from rnnkit.cells.layernorm import LayerNormGRUCell, LayerNormLSTMCell
from rnnkit.cells.mgu import MGUCell
from rnnkit.cells.min_rnn import MinGRUCell, MinLSTMCell
from rnnkit.layer import Recurrent


def _refuse_proj_size(proj_size: object) -> None:
    # torch.nn.RNN/GRU raise ValueError for any proj_size= (even 0); taking the keyword keeps that exception type.
    if proj_size is not None:
        raise ValueError(
            f"proj_size argument is only supported for LSTM, not RNN or GRU (got proj_size={proj_size!r}; rnnkit's "
            "PeepholeLSTM takes it too)"
        )


class RNN(Recurrent):
    """Elman network, as ``torch.nn.RNN``; ``activation=`` accepts any named activation or callable."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: torch.dtype | None = None,
        *,
        activation: str | Activation | None = None,
        recurrent_init: str = "uniform",
        engine: str = "auto",
        proj_size: None = None,
        **options: Any,
    ) -> None:
        _refuse_proj_size(proj_size)
        self.nonlinearity = nonlinearity
        self.proj_size = 0
        kwargs = {"nonlinearity": nonlinearity, "activation": activation, "recurrent_init": recurrent_init}
        super().__init__(
            RNNCell, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            device, dtype, engine=engine, cell_kwargs=kwargs, **options,
        )  # fmt: skip

    @property
    def mode(self) -> str:
        """torch's name for the kernel: ``"RNN_TANH"`` or ``"RNN_RELU"`` (from ``activation=`` when it is one of
        those, else from ``nonlinearity``; ``cells[0].torch_mode()`` is None when torch has no kernel for it)."""
        return self.cells[0].torch_mode() or ("RNN_RELU" if self.nonlinearity == "relu" else "RNN_TANH")


class GRU(Recurrent):
    """GRU, as ``torch.nn.GRU``; ``reset_after=False`` gives Cho et al.'s original candidate."""

    def __init__(
        self,
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
        reset_after: bool = True,
        activation: str | Activation = "tanh",
        recurrent_activation: str | Activation = "sigmoid",
        recurrent_init: str = "uniform",
        engine: str = "auto",
        proj_size: None = None,
        **options: Any,
    ) -> None:
        _refuse_proj_size(proj_size)
        self.proj_size = 0
        kwargs = {
            "reset_after": reset_after,
            "activation": activation,
            "recurrent_activation": recurrent_activation,
            "recurrent_init": recurrent_init,
        }
        super().__init__(
            GRUCell, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            device, dtype, engine=engine, cell_kwargs=kwargs, **options,
        )  # fmt: skip

    mode = "GRU"  # torch's attribute; GRU(reset_after=False) and custom activations keep it (see cells[0].torch_mode())


class LSTM(Recurrent):
    """LSTM, as ``torch.nn.LSTM`` (with ``proj_size``); returns ``output, (h_n, c_n)``."""

    _cell_class: type[LSTMCell] = LSTMCell
    mode = "LSTM"  # torch's attribute; the cells' torch_mode() says whether torch's kernel computes these equations

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: Any = None,
        dtype: torch.dtype | None = None,
        *,
        forget_bias: float = 0.0,
        activation: str | Activation = "tanh",
        recurrent_activation: str | Activation = "sigmoid",
        recurrent_init: str = "uniform",
        engine: str = "auto",
        **options: Any,
    ) -> None:
        self.proj_size = proj_size
        kwargs = {
            "proj_size": proj_size,
            "forget_bias": forget_bias,
            "activation": activation,
            "recurrent_activation": recurrent_activation,
            "recurrent_init": recurrent_init,
        }
        super().__init__(
            self._cell_class, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            device, dtype, engine=engine, cell_kwargs=kwargs, **options,
        )  # fmt: skip


class PeepholeLSTM(LSTM):
    """LSTM whose gates see the memory cell (Gers & Schmidhuber); same arguments as :class:`LSTM`."""

    _cell_class = PeepholeLSTMCell


class Jordan(Recurrent):
    """Jordan network: the previous output ``y`` (``output_size`` features) is fed back; returns ``output, y_n``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: torch.dtype | None = None,
        *,
        activation: str | Activation = "tanh",
        output_activation: str | Activation = "identity",
        recurrent_init: str = "uniform",
        engine: str = "auto",
        **options: Any,
    ) -> None:
        check_size("output_size", output_size, minimum=1)  # a cell may have 0 outputs, a layer needs some
        kwargs = {
            "output_size": output_size,
            "activation": activation,
            "output_activation": output_activation,
            "recurrent_init": recurrent_init,
        }
        super().__init__(
            JordanCell, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            device, dtype, engine=engine, cell_kwargs=kwargs, **options,
        )  # fmt: skip


class MGU(Recurrent):
    """Minimal gated unit (Zhou et al. 2016): the GRU with one gate; torch's GRU arguments, returns ``output, h_n``."""

    def __init__(
        self,
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
        activation: str | Activation = "tanh",
        recurrent_activation: str | Activation = "sigmoid",
        recurrent_init: str = "uniform",
        engine: str = "auto",
        **options: Any,
    ) -> None:
        kwargs = {
            "activation": activation,
            "recurrent_activation": recurrent_activation,
            "recurrent_init": recurrent_init,
        }
        super().__init__(
            MGUCell, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            device, dtype, engine=engine, cell_kwargs=kwargs, **options,
        )  # fmt: skip


class IndRNN(Recurrent):
    """Independently recurrent network (Li et al. 2018): ``u ⊙ h`` instead of ``W_hh h``, ReLU by default;
    ``max_steps=T`` draws ``u`` from the paper's ``U(0, 2^{1/T})``; ``recurrent_max=m`` keeps ``|u| ≤ m`` after every
    optimiser step (:meth:`constrain_`; see :class:`~rnnkit.cells.indrnn.IndRNNCell`)."""

    def __init__(
        self,
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
        activation: str | Activation = "relu",
        max_steps: int | None = None,
        recurrent_max: float | None = None,
        engine: str = "auto",
        **options: Any,
    ) -> None:
        kwargs = {"activation": activation, "max_steps": max_steps, "recurrent_max": recurrent_max}
        super().__init__(
            IndRNNCell, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            device, dtype, engine=engine, cell_kwargs=kwargs, **options,
        )  # fmt: skip


class MinGRU(Recurrent):
    """minGRU (Feng et al. 2024): gates from the input only, trained by a parallel scan on the fused engine."""

    _cell_class: type[MinGRUCell] | type[MinLSTMCell] = MinGRUCell

    def __init__(
        self,
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
        **options: Any,
    ) -> None:
        super().__init__(
            self._cell_class, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            device, dtype, engine=engine, **options,
        )  # fmt: skip


class MinLSTM(MinGRU):
    """minLSTM (Feng et al. 2024): normalised forget and input gates from the input only; returns ``output, h_n``
    (no cell state: ``h`` is the memory). Same arguments as :class:`MinGRU`."""

    _cell_class = MinLSTMCell


class LayerNormLSTM(Recurrent):
    """Layer-normalised LSTM (Ba, Kiros & Hinton 2016; :class:`~rnnkit.cells.LayerNormLSTMCell`); torch's LSTM
    arguments without ``proj_size``; returns ``output, (h_n, c_n)``."""

    def __init__(
        self,
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
        forget_bias: float = 0.0,
        activation: str | Activation = "tanh",
        recurrent_activation: str | Activation = "sigmoid",
        recurrent_init: str = "uniform",
        engine: str = "auto",
        **options: Any,
    ) -> None:
        self.proj_size = 0
        kwargs = {
            "forget_bias": forget_bias,
            "activation": activation,
            "recurrent_activation": recurrent_activation,
            "recurrent_init": recurrent_init,
        }
        super().__init__(
            LayerNormLSTMCell, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            device, dtype, engine=engine, cell_kwargs=kwargs, **options,
        )  # fmt: skip


class LayerNormGRU(Recurrent):
    """Layer-normalised GRU (:class:`~rnnkit.cells.LayerNormGRUCell`, reset after the product); torch's GRU
    arguments; returns ``output, h_n``."""

    def __init__(
        self,
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
        activation: str | Activation = "tanh",
        recurrent_activation: str | Activation = "sigmoid",
        recurrent_init: str = "uniform",
        engine: str = "auto",
        **options: Any,
    ) -> None:
        self.proj_size = 0
        kwargs = {
            "activation": activation,
            "recurrent_activation": recurrent_activation,
            "recurrent_init": recurrent_init,
        }
        super().__init__(
            LayerNormGRUCell, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            device, dtype, engine=engine, cell_kwargs=kwargs, **options,
        )  # fmt: skip


# ------------------------------------------------------------------------------------------------
#: the cells by the names every config and command uses (``--model.cell``): the one list of them
CellName = Literal["rnn", "gru", "lstm", "peephole", "jordan", "mgu", "indrnn", "mingru", "minlstm", "lnlstm", "lngru"]
LAYERS: dict[str, type[Recurrent]] = {
    "rnn": RNN, "gru": GRU, "lstm": LSTM, "peephole": PeepholeLSTM, "jordan": Jordan,
    "mgu": MGU, "indrnn": IndRNN, "mingru": MinGRU, "minlstm": MinLSTM, "lnlstm": LayerNormLSTM, "lngru": LayerNormGRU,
}  # fmt: skip
CELL_NAMES: tuple[str, ...] = get_args(CellName)
assert tuple(LAYERS) == CELL_NAMES


def check_cell(name: str, setting: str = "") -> None:
    """One-line ValueError for a name that is not in :data:`CELL_NAMES` (``setting``: the flag that gave it)."""
    if name not in LAYERS:
        where = f" ({setting})" if setting else ""
        raise ValueError(f"unknown cell {name!r}{where}: choose one of {', '.join(CELL_NAMES)}")


def make_layer(cell: str, input_size: int, hidden_size: int, **kwargs: Any) -> Recurrent:
    """The layer for ``cell`` with torch's arguments; a Jordan layer feeds back ``hidden_size`` output features
    (the ``output_size`` it needs and the other cells do not have)."""
    check_cell(cell)
    if cell == "jordan":
        kwargs.setdefault("output_size", hidden_size)
    return LAYERS[cell](input_size, hidden_size, **kwargs)
