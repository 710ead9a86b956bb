"""``to_onnx``: an rnnkit layer or language model as an ONNX file, checked, written atomically.

The graph is built from the weights with ``onnx.helper`` (no tracing): each recurrent layer becomes native
``LSTM``/``GRU``/``RNN`` nodes where ONNX has the cell, else a ``Scan`` of the cell's step
(:mod:`rnnkit.export.layers`). Batch and time are dynamic dimensions; the example input only fixes which
inputs the graph has (an initial state, ``lengths``) and is checked against the module first. The model
computes in float32 and in eval mode (no dropout).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from onnx import helper
from torch import Tensor, nn

from rnnkit.cells import JordanCell
from rnnkit.export.graph import FLOAT, INT64, Builder, Graph, save_atomic, tensor_info
from rnnkit.export.layers import layer_nodes
from rnnkit.layer import Recurrent
from rnnkit.models import LanguageModel

RecurrentOps = Literal["native", "scan"]


def state_names(layer: Recurrent) -> list[str]:
    """The stem of each state tensor's graph name: ``h`` (and ``c`` for LSTMs), ``y`` for a Jordan layer."""
    n = len(layer.cells[0].state_sizes)
    return ["y"] if isinstance(layer.cells[0], JordanCell) else ["h", "c"][:n]


def to_onnx(
    module: nn.Module,
    example_input: Any,
    path: str | Path,
    *,
    lengths: Tensor | list[int] | None = None,
    recurrent_ops: RecurrentOps = "native",
) -> Path:
    """Write ``module`` (an rnnkit layer or :class:`~rnnkit.models.LanguageModel`) to ``path`` as ONNX.

    ``example_input`` is what the module's forward takes: ``x`` or ``(x, hx)`` for a layer, ``tokens`` or
    ``(tokens, state)`` for a language model; passing a state adds state inputs (``h_0``, ``c_0``) to the
    graph, and ``lengths=`` (a layer's padded batch) adds a ``lengths`` input (int64, one per sequence).
    Outputs are named as torch names them: ``output``/``logits``, ``h_n``, ``c_n`` (``y_n`` for Jordan).
    ``recurrent_ops="scan"`` runs every layer as a Scan, even where a native op exists (for runtimes
    without the recurrent ops). Any problem is one ValueError or TypeError line; ``path`` is written only
    when the whole model is built and checked.
    """
    if recurrent_ops not in ("native", "scan"):
        raise ValueError(f"to_onnx: recurrent_ops must be 'native' or 'scan', got {recurrent_ops!r}")
    x, state = _split_example(example_input)
    _check_module(module)
    _check_example(module, x, state, lengths)
    native = recurrent_ops == "native"
    if isinstance(module, LanguageModel):
        model = lm_graph(module, state is not None, native)
    else:
        model = layer_graph(module, state is not None, lengths is not None, native)
    return save_atomic(model.SerializeToString(), path, "to_onnx")


# ------------------------------------------------------------------------------------------------
# checks
def _split_example(example: Any) -> tuple[Any, Any]:
    if isinstance(example, (tuple, list)):
        if not 1 <= len(example) <= 2:
            raise ValueError(f"to_onnx: example_input must be x or (x, state), got a sequence of {len(example)} items")
        return example[0], (example[1] if len(example) == 2 else None)
    return example, None


def _check_module(module: Any) -> None:
    if not isinstance(module, (LanguageModel, Recurrent)):
        kind = f"{type(module).__module__}.{type(module).__name__}"
        hint = ""
        inner = (
            [n for n, m in module.named_modules() if isinstance(m, Recurrent)] if isinstance(module, nn.Module) else []
        )
        if inner:
            hint = f"; export its recurrent layer (.{inner[0]}) and run the rest around it"
        if isinstance(module, nn.RNNBase):
            hint = f"; load its state_dict into rnnkit.{type(module).__name__}(same arguments) and export that"
        raise TypeError(
            "to_onnx exports rnnkit layers (rnnkit.LSTM, GRU, RNN, PeepholeLSTM, Jordan, MGU, IndRNN, MinGRU, MinLSTM, "
            "LayerNormLSTM, LayerNormGRU, "
            "Recurrent) and "
            f"rnnkit.models.LanguageModel, not {kind}{hint}"
        )
    dtypes = {p.dtype for p in module.parameters()}
    if dtypes != {torch.float32}:
        got = ", ".join(sorted(str(d) for d in dtypes))
        raise ValueError(f"to_onnx exports float32 models, this one is {got}: export module.float()")


def _check_example(module: nn.Module, x: Any, state: Any, lengths: Any) -> None:
    """Run the module once on the example (eval mode, no gradient), so a wrong shape fails with its own message."""
    name = type(module).__name__
    if not isinstance(x, Tensor):
        raise TypeError(f"to_onnx: example_input must be a Tensor (or (Tensor, state)), got {type(x).__name__}")
    if isinstance(module, LanguageModel):
        if lengths is not None:
            raise ValueError("to_onnx: a LanguageModel takes no lengths=; export its layer (model.rnn) for padding")
        if x.dim() != 2 or x.dtype != torch.long:
            raise ValueError(
                "to_onnx: a LanguageModel's example input is tokens (B, T) of dtype torch.long, "
                f"got shape {tuple(x.shape)} {x.dtype}"
            )
    elif x.dim() != 3:
        layout = "(B, T, F)" if module.batch_first else "(T, B, F)"
        raise ValueError(
            f"to_onnx: the example input must be batched, {layout} with F={module.input_size} "
            f"(batch_first={module.batch_first}), got shape {tuple(x.shape)}"
        )
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            if isinstance(module, LanguageModel):
                module(x, state)
            else:
                module(x, state, lengths=lengths)
    except (ValueError, TypeError, RuntimeError, IndexError) as e:
        raise ValueError(f"to_onnx: the example input does not fit the {name}: {str(e).splitlines()[0]}") from None
    finally:
        module.train(was_training)


# ------------------------------------------------------------------------------------------------
# graphs
def _state_io(layer: Recurrent, suffix: str, batch: str = "batch") -> list[Any]:
    LD = layer.num_layers * layer.num_directions
    return [
        tensor_info(f"{n}_{suffix}", FLOAT, [LD, batch, s])
        for n, s in zip(state_names(layer), layer.cells[0].state_sizes)
    ]


def _outputs(g: Graph, named: dict[str, str]) -> None:
    """Give graph values their public names (an Identity node each)."""
    for public, value in named.items():
        g.nodes.append(helper.make_node("Identity", [value], [public], name=f"out_{public}"))


def layer_graph(layer: Recurrent, with_state: bool, with_lengths: bool, native: bool = True) -> Any:
    """The ONNX model of ``layer.forward(input, hx, lengths=...)`` (eval mode)."""
    b = Builder()
    g = b.main
    F = layer.input_size
    x_shape: list[Any] = ["batch", "time", F] if layer.batch_first else ["time", "batch", F]
    inputs = [tensor_info("input", FLOAT, x_shape)]
    x = g.op("Transpose", ["input"], perm=[1, 0, 2]) if layer.batch_first else "input"
    hx = None
    if with_state:
        inputs += _state_io(layer, "0")
        hx = [i.name for i in inputs[1:]]
    if with_lengths:
        inputs.append(tensor_info("lengths", INT64, ["batch"]))
    y, finals = layer_nodes(g, layer, x, hx, "lengths" if with_lengths else None, native=native)
    if layer.batch_first:
        y = g.op("Transpose", [y], perm=[1, 0, 2])
    out_size = layer.num_directions * layer.output_size
    outputs = [tensor_info("output", FLOAT, [*x_shape[:2], out_size]), *_state_io(layer, "n")]
    _outputs(g, {"output": y, **{o.name: f for o, f in zip(outputs[1:], finals)}})
    return b.model(inputs, outputs, f"rnnkit {type(layer).__name__}({layer.extra_repr()})")


def _token_inputs(g: Graph, model: LanguageModel, tokens: str) -> str:
    """Token ids (any shape) -> the layer's input: embedding rows or one-hot vectors."""
    if model.embedding is not None:
        return g.op("Gather", [g.b.weight(model.embedding.weight), tokens], axis=0)
    depth = g.b.const(np.array(model.vocab_size, np.int64))
    return g.op("OneHot", [tokens, depth, g.b.const(np.array([0, 1], np.float32))], axis=-1)


def lm_graph(model: LanguageModel, with_state: bool, native: bool = True) -> Any:
    """The ONNX model of ``LanguageModel.forward(tokens, state)`` (eval mode): tokens (B, T) -> logits (B, T, V)."""
    layer = model.rnn
    b = Builder()
    g = b.main
    inputs = [tensor_info("tokens", INT64, ["batch", "time"])]
    hx = None
    if with_state:
        inputs += _state_io(layer, "0")
        hx = [i.name for i in inputs[1:]]
    x = _token_inputs(g, model, g.op("Transpose", ["tokens"], perm=[1, 0]))  # (T, B, E)
    y, finals = layer_nodes(g, layer, x, hx, None, native=native)
    logits = g.op("Transpose", [g.linear(y, model.head.weight, model.head.bias)], perm=[1, 0, 2])
    outputs = [tensor_info("logits", FLOAT, ["batch", "time", model.vocab_size]), *_state_io(layer, "n")]
    _outputs(g, {"logits": logits, **{o.name: f for o, f in zip(outputs[1:], finals)}})
    return b.model(inputs, outputs, f"rnnkit LanguageModel ({layer.describe_cell()}, {layer.num_layers} layer(s))")
