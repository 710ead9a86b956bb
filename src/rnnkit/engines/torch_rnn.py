"""The ``"torch"`` engine: delegate to torch's own fused kernels (oneDNN/native on CPU, cuDNN on GPU).

It runs only what torch has a kernel for: Elman (tanh/relu), GRU with ``reset_after=True`` and LSTM
(with ``proj_size``), all with default activations, and it cannot report gates. The layer's parameters
are passed in torch's flat order, so nothing is copied. ``lengths`` become a ``PackedSequence`` (torch
needs no sorting: ``enforce_sorted=False``), and the final states come back in the caller's batch order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.engines.registry import RunResult, register_engine
from rnnkit.regularisers import in_loop_unsupported, merge

if TYPE_CHECKING:
    from rnnkit.layer import Recurrent

_KERNELS = {"LSTM": torch.lstm, "GRU": torch.gru, "RNN_TANH": torch.rnn_tanh, "RNN_RELU": torch.rnn_relu}


class TorchEngine:
    name = "torch"

    def unsupported(self, layer: Recurrent, x: Tensor, return_gates: bool) -> str | None:
        cell = layer.cells[0]
        if cell.torch_mode() is None:
            return f"torch has no kernel for {layer.describe_cell()}"
        if return_gates:
            return "torch's kernels do not expose gate activations (return_gates=True)"
        reason = in_loop_unsupported(layer)
        if reason is not None:
            return f"torch's kernels have no regularisers inside the time loop: {reason}"
        deep = layer.num_layers > 1
        if layer.regularisers.input_dropout and layer.training and (deep or layer.bidirectional):
            return "input_dropout on more than one cell needs a mask per cell, which torch's kernels cannot take"
        if deep and layer.merge_mode not in ("concat", None):
            return f"merge_mode={layer.merge_mode!r} between stacked layers (torch's kernels concatenate)"
        if (
            torch.compiler.is_compiling()
            and x.device.type == "cpu"
            and torch.is_grad_enabled()
            and any(p.requires_grad for p in layer.flat_weights())
        ):
            # torch 2.13: "expected Tensor() for op: torch.ops.aten.mkldnn_rnn_layer.default" on the backward
            return "torch's oneDNN RNN kernel fails under torch.compile when training on the CPU"
        return None

    def run(
        self, layer: Recurrent, x: Tensor, hx: tuple[Tensor, ...], lengths: Tensor | None, return_gates: bool
    ) -> RunResult:
        mode = layer.cells[0].torch_mode()
        kernel = _KERNELS[mode]
        weights = layer.call_flat_weights()  # with weight_dropout in training: DropConnect on W_hh
        masks = layer.call_masks
        keep = masks.input_mask(0, x) if masks is not None else None
        if keep is not None:  # one cell (unsupported() says so): its (B, F) input mask
            x = x * keep
        out, final = self._run(layer, kernel, mode, x, hx, lengths, weights)
        if layer.bidirectional and layer.merge_mode != "concat":
            out = merge(list(out.chunk(2, dim=-1)), layer.merge_mode)
        return out, final, None

    @staticmethod
    def _run(
        layer: Recurrent, kernel: Any, mode: str, x: Tensor, hx: tuple[Tensor, ...], lengths: Tensor | None,
        weights: list[Tensor],
    ) -> tuple[Tensor, tuple[Tensor, ...]]:  # fmt: skip
        state = hx if mode == "LSTM" else hx[0]
        flags = (layer.bias, layer.num_layers, float(layer.dropout), layer.training, layer.bidirectional)
        if lengths is None:
            out, *final = kernel(x, state, weights, *flags, False)
            return out, tuple(final)
        packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
        order, undo = packed.sorted_indices, packed.unsorted_indices
        state = tuple(s.index_select(1, order) for s in hx)
        data, *final = kernel(packed.data, packed.batch_sizes, state if mode == "LSTM" else state[0], weights, *flags)
        out, _ = pad_packed_sequence(PackedSequence(data, packed.batch_sizes, order, undo), total_length=x.shape[0])
        return out, tuple(s.index_select(1, undo) for s in final)


register_engine(TorchEngine(), auto_priority=0)
