"""A small ONNX graph builder over ``onnx.helper``: unique names, weights as initializers, subgraphs, atomic save.

Every name in a model (main graph and ``Scan`` bodies alike) comes from one counter, so a body may read
any main-graph value (the weights) by name without shadowing it. Weights are stored once, as float32
initializers of the main graph.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:  # pragma: no cover - the deploy extra is part of dev
    raise ImportError("rnnkit.export needs the onnx package: pip install 'rnnkit[deploy]'") from e

#: ai.onnx opset of every exported model: LSTM/GRU/RNN-14, Scan-16, Split with sizes as an input (13+);
#: onnxruntime 1.11 and later run it
OPSET = 17
#: IR version matching OPSET (onnx.helper.VERSION_TABLE), so older runtimes accept the file
IR_VERSION = 8

FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64
INT32 = TensorProto.INT32
BOOL = TensorProto.BOOL


def onnx_activation(fn: Any, owner: str) -> tuple[str, list[float]]:
    """(ONNX activation name as the recurrent ops spell it, [alpha, beta] or []) for a named rnnkit activation.

    ``hard_sigmoid`` is torch's and Keras 3's ``clip(x / 6 + 1/2, 0, 1)``: HardSigmoid with alpha 1/6 (ONNX's
    own default alpha, 0.2, is Keras 2's ``hard_sigmoid_keras2``). ``identity`` is ``Affine`` with alpha 1.
    """
    from rnnkit.activations import HARD_SIGMOID_SLOPES, activation_name

    name = activation_name(fn)
    if name in HARD_SIGMOID_SLOPES:
        return "HardSigmoid", [HARD_SIGMOID_SLOPES[name], 0.5]
    simple = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "identity": "Affine"}
    if name not in simple:
        raise ValueError(
            f"to_onnx: {owner}={fn!r} is a Python callable that ONNX cannot express; use a named activation "
            "(tanh, sigmoid, relu, identity, hard_sigmoid, hard_sigmoid_keras2)"
        )
    return simple[name], ([1.0, 0.0] if name == "identity" else [])


class Graph:
    """The nodes of one (sub)graph, added through its :class:`Builder`."""

    def __init__(self, builder: Builder) -> None:
        self.b = builder
        self.nodes: list[Any] = []

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs: Any) -> Any:
        """Add a node; returns its output name (or the list of names when ``n_out > 1``)."""
        outs = [self.b.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.b.name("n_" + op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    # shorthands for the ops the cells use
    def matmul(self, a: str, b: str) -> str:
        return self.op("MatMul", [a, b])

    def add(self, a: str, b: str | None) -> str:
        return a if b is None else self.op("Add", [a, b])

    def mul(self, a: str, b: str) -> str:
        return self.op("Mul", [a, b])

    def sub(self, a: str, b: str) -> str:
        return self.op("Sub", [a, b])

    def split(self, x: str, sizes: list[int], axis: int = -1) -> list[str]:
        return self.op("Split", [x, self.b.ints(sizes)], len(sizes), axis=axis)

    def activation(self, x: str, fn: Any, owner: str) -> str:
        name, ab = onnx_activation(fn, owner)
        if name == "Affine":  # identity: no node at all
            return x
        if name == "HardSigmoid":
            return self.op("HardSigmoid", [x], alpha=ab[0], beta=ab[1])
        return self.op(name, [x])

    def linear(self, x: str, weight: Tensor | None, bias: Tensor | None = None) -> str:
        """``x @ weight.T + bias`` (``torch.nn.functional.linear``) with the weight stored transposed."""
        return self.add(self.matmul(x, self.b.weight(weight.t())), self.b.weight(bias))


class Builder:
    """Names, initializers and the main graph of one model."""

    def __init__(self) -> None:
        self._count = 0
        self.initializers: list[Any] = []
        self._seen: dict[tuple[int, int, tuple[int, ...], tuple[int, ...]], str] = {}
        self._keep: list[Tensor] = []  # keeps every keyed tensor alive, so no address is reused by another
        self.main = Graph(self)

    def name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, array: np.ndarray, stem: str = "c") -> str:
        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def ints(self, values: list[int]) -> str:
        return self.const(np.asarray(values, dtype=np.int64), "i")

    def weight(self, t: Tensor | None) -> str | None:
        """A float32 initializer holding ``t`` (stored once however often it is asked for), or None for None."""
        if t is None:
            return None
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))
        if key not in self._seen:
            self._seen[key] = self.const(t.detach().to("cpu", torch.float32).numpy(), "w")
            self._keep.append(t)
        return self._seen[key]

    def subgraph(self) -> Graph:
        return Graph(self)

    def model(self, inputs: list[Any], outputs: list[Any], doc: str, metadata: dict[str, str] | None = None) -> Any:
        graph = helper.make_graph(self.main.nodes, "rnnkit", inputs, outputs, self.initializers, doc_string=doc)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="rnnkit")
        model.ir_version = IR_VERSION
        for k, v in (metadata or {}).items():
            model.metadata_props.add(key=k, value=v)
        onnx.checker.check_model(model, full_check=True)
        return model


def tensor_info(name: str, elem_type: int, shape: list[int | str | None]) -> Any:
    """A graph input/output description; strings in ``shape`` are named dynamic dimensions."""
    return helper.make_tensor_value_info(name, elem_type, shape)


def graph_info(name: str, elem_type: int = FLOAT) -> Any:
    """A Scan body input/output of unknown shape."""
    return helper.make_tensor_value_info(name, elem_type, None)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_atomic(data: bytes, path: str | Path, what: str) -> Path:
    """Write ``data`` to ``path`` through a temporary file beside it: ``path`` is either the complete new file
    or untouched (a failure leaves no partial file). An unwritable folder is one ValueError line."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"{what}: {str(path)!r} is a folder; give a file name such as {str(path / 'model.onnx')!r}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=folder)
    except OSError as e:
        raise ValueError(f"{what}: cannot write into {str(folder)!r}: {e.strerror or e}; choose another path") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise ValueError(f"{what}: cannot write {str(path)!r}: {e.strerror or e}") from None
        raise
    return path
