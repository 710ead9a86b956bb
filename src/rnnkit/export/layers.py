"""A :class:`~rnnkit.layer.Recurrent` layer as ONNX nodes: native ``LSTM``/``GRU``/``RNN`` where ONNX has the
cell, else a ``Scan`` over the cell's step (:mod:`rnnkit.export.cells`).

ONNX's recurrent operators cover more of rnnkit than torch's own exporter uses: ``LSTM`` has a peephole
input ``P`` (rnnkit's peephole LSTM, with the output gate looking at the new ``c_t`` as ONNX specifies),
``GRU`` has ``linear_before_reset`` (1 = torch's reset-after form, 0 = Cho et al.'s reset-before form),
all three take per-gate ``activations`` (``HardSigmoid`` with its alpha) and ``sequence_lens``, whose
reverse direction starts at each sequence's own end, as rnnkit's does. What they lack — a projection
(``proj_size``), the Jordan cell's output feedback — runs as a ``Scan`` whose body is the cell's step;
``lengths`` then becomes a mask and ``ReverseSequence``, exactly the reference engine's rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from onnx import helper

from rnnkit.cells import GRUCell, JordanCell, LSTMCell, PeepholeLSTMCell, RNNCell
from rnnkit.export.cells import step_for
from rnnkit.export.graph import BOOL, INT32, Graph, graph_info, onnx_activation

if TYPE_CHECKING:
    from rnnkit.layer import Recurrent

#: native op, torch gate block -> ONNX position (ONNX LSTM: i o f c; GRU: z r h)
_NATIVE = {RNNCell: ("RNN", [0]), GRUCell: ("GRU", [1, 0, 2]), LSTMCell: ("LSTM", [0, 3, 1, 2])}
_NATIVE[PeepholeLSTMCell] = _NATIVE[LSTMCell]


def native_reason(layer: Recurrent) -> str | None:
    """``None`` if ONNX has a recurrent op for the layer's cell, else why not (the layer then runs as a Scan)."""
    cell = layer.cells[0]
    if isinstance(cell, JordanCell):
        return "the Jordan cell feeds its output back, which no ONNX recurrent op does"
    if isinstance(cell, LSTMCell) and cell.proj_size:
        return "ONNX's LSTM has no projection (proj_size)"
    if type(cell) not in _NATIVE:
        return f"ONNX has no recurrent op for {type(cell).__name__}"
    return None


def layer_nodes(
    g: Graph, layer: Recurrent, x: str, hx: list[str] | None, lengths: str | None, *, native: bool = True
) -> tuple[str, list[str]]:
    """Nodes running ``layer`` (eval mode) over ``x`` (T, B, F), time-major.

    ``hx``: one graph value per state tensor, (num_layers * D, B, S) each, or None for zeros; ``lengths``:
    (B,) int64 or None. Returns the output (T, B, D * S0) and the final states, each (num_layers * D, B, S).
    With ``native=False`` every layer is a Scan, even where ONNX has the op.
    """
    for cell in layer.cells:
        step_for(cell)  # one clear error before any node is made
    use_native = native and native_reason(layer) is None
    lens32 = g.op("Cast", [lengths], to=INT32) if lengths is not None and use_native else None
    mask = None if lengths is None or use_native else _step_mask(g, x, lengths)
    finals: list[list[str]] = [[] for _ in layer.cells[0].state_sizes]
    for l in range(layer.num_layers):
        if use_native:
            x, states = _native_layer(g, layer, l, x, hx, lens32)
        else:
            x, states = _scan_layer(g, layer, l, x, hx, lengths, mask)
        for acc, s in zip(finals, states):
            acc.append(s)
    return x, [s[0] if len(s) == 1 else g.op("Concat", s, axis=0) for s in finals]


# ------------------------------------------------------------------------------------------------
# native ops
def _native_layer(
    g: Graph, layer: Recurrent, l: int, x: str, hx: list[str] | None, lens32: str | None
) -> tuple[str, list[str]]:
    D, H = layer.num_directions, layer.hidden_size
    cell = layer.cells[l * D]
    op, order = _NATIVE[type(cell)]
    ws = [layer.weights(k) for k in range(l * D, (l + 1) * D)]

    def reorder(t: torch.Tensor) -> torch.Tensor:  # torch's gate blocks in ONNX's order
        blocks = t.split(H)
        return torch.cat([blocks[i] for i in order])

    W = g.b.weight(torch.stack([reorder(w.weight_ih) for w in ws]))  # (D, G*H, F)
    R = g.b.weight(torch.stack([reorder(w.weight_hh) for w in ws]))  # (D, G*H, H)
    B = None  # (D, 2*G*H): input biases, then recurrent biases
    if layer.bias:
        B = g.b.weight(torch.stack([torch.cat([reorder(w.bias_ih), reorder(w.bias_hh)]) for w in ws]))
    if op == "RNN":  # ONNX's activations per direction: RNN f; GRU f (gates), g; LSTM f (gates), g (candidate), h
        fns = [cell.activation]
    else:
        fns = [cell.recurrent_activation, cell.activation] + ([cell.activation] if op == "LSTM" else [])
    names, alphas, betas = [], [], []
    for fn in fns * D:
        name, ab = onnx_activation(fn, "activation")
        names.append(name)
        if ab:  # only the parametrised activations take an alpha and a beta, in order
            alphas.append(ab[0])
            betas.append(ab[1])
    attrs: dict[str, Any] = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
    attrs["activations"] = names
    if alphas:
        attrs["activation_alpha"], attrs["activation_beta"] = alphas, betas
    if op == "GRU":
        attrs["linear_before_reset"] = int(cell.reset_after)
    init = [_rows(g, s, l * D, (l + 1) * D) for s in hx] if hx is not None else []
    inputs = [x, W, R, B or "", lens32 or "", *init]
    if isinstance(cell, PeepholeLSTMCell):  # ONNX's P: i, o, f
        inputs += [""] * (8 - len(inputs) - 1)
        inputs.append(g.b.weight(torch.stack([torch.cat([w.weight_ci, w.weight_co, w.weight_cf]) for w in ws])))
    while inputs[-1] == "":
        inputs.pop()
    outs = g.op(op, inputs, 3 if op == "LSTM" else 2, **attrs)
    Y = outs[0]  # (T, D, B, H)
    if D == 1:
        y = g.op("Squeeze", [Y, g.b.ints([1])])
    else:
        y = g.op("Reshape", [g.op("Transpose", [Y], perm=[0, 2, 1, 3]), g.b.ints([0, 0, -1])])
    return y, outs[1:]


def _rows(g: Graph, s: str, start: int, end: int) -> str:
    return g.op("Slice", [s, g.b.ints([start]), g.b.ints([end]), g.b.ints([0])])


# ------------------------------------------------------------------------------------------------
# Scan over the cell's step
def _step_mask(g: Graph, x: str, lengths: str) -> str:
    """(T, B, 1) bool: step t is inside sequence b."""
    T = g.op("Squeeze", [g.op("Shape", [x], start=0, end=1), g.b.ints([0])])
    zero, one = g.b.const(np.array(0, np.int64)), g.b.const(np.array(1, np.int64))
    t = g.op("Unsqueeze", [g.op("Range", [zero, T, one]), g.b.ints([1])])  # (T, 1)
    return g.op("Unsqueeze", [g.op("Less", [t, lengths]), g.b.ints([2])])


def _zeros(g: Graph, x: str, size: int) -> str:
    """Zeros (B, size), B read from ``x`` (T, B, F)."""
    shape = g.op("Concat", [g.op("Shape", [x], start=1, end=2), g.b.ints([size])], axis=0)
    return g.op("ConstantOfShape", [shape], value=helper.make_tensor("zero", 1, [1], [0.0]))


def _scan_layer(
    g: Graph, layer: Recurrent, l: int, x: str, hx: list[str] | None, lengths: str | None, mask: str | None
) -> tuple[str, list[str]]:
    D = layer.num_directions
    sizes = layer.cells[0].state_sizes
    outputs: list[str] = []
    finals: list[list[str]] = [[] for _ in sizes]
    for d in range(D):
        k = l * D + d
        cell, w = layer.cells[k], layer.weights(k)
        step = step_for(cell)
        xw = g.linear(x, w.weight_ih, step.input_bias(cell, w))  # (T, B, G): every step's input projection at once
        if hx is not None:
            init = [g.op("Gather", [s, g.b.const(np.array(k, np.int64))], axis=0) for s in hx]
        else:
            init = [_zeros(g, x, size) for size in sizes]
        per_sequence = d == 1 and lengths is not None  # reverse each sequence within its own length
        if per_sequence:
            xw = g.op("ReverseSequence", [xw, lengths], batch_axis=1, time_axis=0)
        body = g.b.subgraph()
        s_in = [g.b.name("state") for _ in sizes]
        x_t = g.b.name("xw_t")
        m_t = g.b.name("mask_t") if mask is not None else None
        new = step.step(body, cell, w, x_t, s_in)
        if m_t is not None:  # past its length a sequence keeps its state and emits zeros
            new = [body.op("Where", [m_t, n, s]) for n, s in zip(new, s_in)]
            y_t = body.op("Where", [m_t, new[0], g.b.const(np.array(0, np.float32))])
        else:
            y_t = body.op("Identity", [new[0]])
        body_inputs = [graph_info(n) for n in [*s_in, x_t]] + ([graph_info(m_t, BOOL)] if m_t else [])
        graph = helper.make_graph(body.nodes, g.b.name("step"), body_inputs, [graph_info(n) for n in [*new, y_t]])
        reverse = int(d == 1 and lengths is None)
        n_scan = 1 + (m_t is not None)
        res = g.op(
            "Scan",
            [*init, xw] + ([mask] if m_t else []),
            len(sizes) + 1,
            body=graph,
            num_scan_inputs=n_scan,
            scan_input_directions=[reverse] * n_scan,
            scan_output_directions=[reverse],
        )
        y = res[-1]  # (T, B, S0)
        if per_sequence:
            y = g.op("ReverseSequence", [y, lengths], batch_axis=1, time_axis=0)
        outputs.append(y)
        for acc, s in zip(finals, res[:-1]):
            acc.append(g.op("Unsqueeze", [s, g.b.ints([0])]))
    y = outputs[0] if D == 1 else g.op("Concat", outputs, axis=-1)
    return y, [f[0] if D == 1 else g.op("Concat", f, axis=0) for f in finals]
