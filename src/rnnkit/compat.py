"""Hand rnnkit layers and cells to tools that only know torch.nn's classes.

rnnkit's ``RNN``/``GRU``/``LSTM`` are not subclasses of torch's (docs/torch_compat.md says why), so a tool
that looks modules up by class — ``torch.ao.quantization.quantize_dynamic``, ``torch.jit.script``, an
exporter's table of known modules — passes them by. :func:`to_torch` swaps each one whose equations torch
has for the torch.nn module itself, sharing the same ``Parameter`` objects, so nothing is copied and
training either one trains both.
"""

from __future__ import annotations

from torch import nn

from rnnkit.cells import GRUCell, LSTMCell, RecurrentCell, RNNCell
from rnnkit.layer import Recurrent
from rnnkit.rnn import GRU, LSTM, RNN

_LAYERS: dict[type, type[nn.RNNBase]] = {RNN: nn.RNN, GRU: nn.GRU, LSTM: nn.LSTM}
_CELLS: dict[type, type[nn.RNNCellBase]] = {RNNCell: nn.RNNCell, GRUCell: nn.GRUCell, LSTMCell: nn.LSTMCell}


def to_torch(module: nn.Module, *, strict: bool = True) -> nn.Module:
    """Replace every rnnkit layer and cell inside ``module`` (or ``module`` itself) by its torch.nn peer.

    The torch.nn modules share the rnnkit modules' parameters; children are replaced in place and the
    (possibly new) top module is returned, as ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` does.
    Only what torch computes identically is converted: Elman (tanh/relu), GRU with ``reset_after=True`` and
    LSTM (layers with ``proj_size`` too), all with default activations. Anything else (peephole, Jordan,
    custom activations, an ``LSTMCell`` with ``proj_size``) raises a one-line ``ValueError`` naming the
    submodule, or with ``strict=False`` stays an rnnkit module. Per-module hooks are not carried over.

        lstm_q = torch.ao.quantization.quantize_dynamic(rnnkit.to_torch(copy.deepcopy(model)), {torch.nn.LSTM})
    """
    return _convert(module, "", strict)


def _convert(module: nn.Module, path: str, strict: bool) -> nn.Module:
    if isinstance(module, (Recurrent, RecurrentCell)):
        reason = _why_not(module)
        if reason is None:
            return _torch_layer(module) if isinstance(module, Recurrent) else _torch_cell(module)
        if strict:
            where = f"{type(module).__name__} {path!r}" if path else type(module).__name__
            raise ValueError(
                f"{where} has no torch.nn equivalent: {reason}; keep it an rnnkit module "
                "(to_torch(..., strict=False)) or change its configuration"
            )
        return module
    for name, child in list(module.named_children()):
        new = _convert(child, f"{path}.{name}" if path else name, strict)
        if new is not child:
            setattr(module, name, new)
    return module


def _why_not(module: Recurrent | RecurrentCell) -> str | None:
    """``None`` when torch.nn has a class computing exactly what ``module`` computes, else the reason."""
    table = _LAYERS if isinstance(module, Recurrent) else _CELLS
    if type(module) not in table:
        return f"torch.nn has no {type(module).__name__}"
    cell = module.cells[0] if isinstance(module, Recurrent) else module
    if cell.torch_mode() is None:
        return f"torch has no kernel for {cell.__class__.__name__}({cell.extra_repr()})"
    if isinstance(module, LSTMCell) and module.proj_size:
        return "torch.nn.LSTMCell has no proj_size"
    if isinstance(module, Recurrent):
        extras = list(module.regularisers.active())
        extras += ["merge_mode"] if module.merge_mode != "concat" else []
        extras += ["stateful"] if module.stateful else []
        if extras:
            return f"torch.nn has no {', '.join(extras)} (rnnkit layer options)"
    return None


def _torch_layer(layer: Recurrent) -> nn.RNNBase:
    ref = layer.weight_ih_l0
    kwargs = {
        "num_layers": layer.num_layers,
        "bias": layer.bias,
        "batch_first": layer.batch_first,
        "dropout": layer.dropout,
        "bidirectional": layer.bidirectional,
    }
    mode = layer.cells[0].torch_mode()
    if mode in ("RNN_TANH", "RNN_RELU"):
        kwargs["nonlinearity"] = "relu" if mode == "RNN_RELU" else "tanh"
    if mode == "LSTM":
        kwargs["proj_size"] = layer.proj_size
    # Built on the meta device (no memory, no init), then given the rnnkit layer's own parameters.
    theirs = _LAYERS[type(layer)](layer.input_size, layer.hidden_size, **kwargs, device="meta", dtype=ref.dtype)
    assert theirs._flat_weights_names == layer._flat_weights_names  # same names, same order, by construction
    for name in layer._flat_weights_names:
        setattr(theirs, name, getattr(layer, name))
    return theirs.train(layer.training)


def _torch_cell(cell: RecurrentCell) -> nn.RNNCellBase:
    ref = cell.weight_ih
    kwargs = {"nonlinearity": "relu" if cell.torch_mode() == "RNN_RELU" else "tanh"} if type(cell) is RNNCell else {}
    theirs = _CELLS[type(cell)](cell.input_size, cell.hidden_size, cell.bias, **kwargs, device="meta", dtype=ref.dtype)
    for name, param in cell.named_parameters(recurse=False):
        setattr(theirs, name, param)
    return theirs.train(cell.training)
