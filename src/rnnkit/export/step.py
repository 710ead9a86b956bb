"""A language model's one-token step as ONNX, for generation: ``token (B,), state -> logits (B, V), new state``.

The caller keeps the state between calls, as :meth:`~rnnkit.models.LanguageModel.step` does. Each layer
is its cell's step as plain ONNX ops (:mod:`rnnkit.export.cells`) rather than a recurrent op run for one
time step: one step needs no ``Scan``, so every cell (Jordan and ``proj_size`` included) exports the same
way, and onnxruntime runs it about as fast as its native GRU for T = 1 (benchmarks/onnx_latency.py). The first layer's
input projection of a one-hot model is a row lookup (``W_ih x`` for a one-hot ``x`` is a column of
``W_ih``), so a token costs no ``V``-wide product.
"""

from __future__ import annotations

from typing import Any

import torch

from rnnkit.export.cells import step_for
from rnnkit.export.graph import FLOAT, INT64, Builder, tensor_info
from rnnkit.export.model import _outputs, _token_inputs, state_names
from rnnkit.models import LanguageModel


def lm_step_graph(model: LanguageModel, metadata: dict[str, str] | None = None) -> Any:
    """The ONNX model of ``model.step(tokens, state)`` in eval mode (state inputs required: zeros to start)."""
    layer = model.rnn
    if layer.bidirectional:
        raise ValueError("a bidirectional language model cannot generate one token at a time")
    for cell in layer.cells:
        step_for(cell)
    b = Builder()
    g = b.main
    L = layer.num_layers
    names, sizes = state_names(layer), layer.cells[0].state_sizes
    inputs = [tensor_info("token", INT64, ["batch"])]
    inputs += [tensor_info(f"{n}_0", FLOAT, [L, "batch", s]) for n, s in zip(names, sizes)]
    finals: list[list[str]] = [[] for _ in sizes]
    x = None
    for k, cell in enumerate(layer.cells):
        w = layer.weights(k)
        step = step_for(cell)
        bias = step.input_bias(cell, w)
        if k == 0 and model.embedding is None:  # one-hot input: xw = column `token` of W_ih, plus the bias
            table = w.weight_ih.t() if bias is None else w.weight_ih.t() + bias
            xw = g.op("Gather", [b.weight(table.contiguous()), "token"], axis=0)
        else:
            xw = g.linear(_token_inputs(g, model, "token") if k == 0 else x, w.weight_ih, bias)
        state = [g.op("Gather", [f"{n}_0", b.const(torch.tensor(k).numpy())], axis=0) for n in names]
        new = step.step(g, cell, w, xw, state)
        for acc, s in zip(finals, new):
            acc.append(g.op("Unsqueeze", [s, b.ints([0])]))
        x = new[0]
    logits = g.linear(x, model.head.weight, model.head.bias)
    outputs = [tensor_info("logits", FLOAT, ["batch", model.vocab_size])]
    outputs += [tensor_info(f"{n}_n", FLOAT, [L, "batch", s]) for n, s in zip(names, sizes)]
    named = {"logits": logits}
    for o, f in zip(outputs[1:], finals):
        named[o.name] = f[0] if L == 1 else g.op("Concat", f, axis=0)
    _outputs(g, named)
    return b.model(inputs, outputs, f"rnnkit LanguageModel one-token step ({layer.describe_cell()})", metadata)
