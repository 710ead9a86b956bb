"""Keras 3 interop: ``from_keras(layer)`` and ``to_keras(layer)`` for SimpleRNN, GRU (both reset forms), LSTM and
Bidirectional, with the same outputs (tests run Keras itself on its torch backend).

What differs between the two, and how it is converted:

* layout — Keras stores ``kernel`` (F, G·H) and ``recurrent_kernel`` (H, G·H), multiplied as ``x @ kernel``;
  torch/rnnkit store ``weight_ih`` (G·H, F) for ``W x``: each matrix is transposed. Keras layers are batch-major,
  so ``from_keras`` returns a ``batch_first=True`` layer.
* gate order — Keras' GRU is ``z, r, h`` (update, reset, candidate), torch's ``r, z, n``: the blocks are swapped.
  LSTM's ``i, f, c, o`` is torch's ``i, f, g, o``.
* biases — Keras' SimpleRNN and LSTM have one bias, torch two (``b_ih``, ``b_hh``) that only ever appear summed:
  ``from_keras`` puts it in ``bias_ih`` and zeros ``bias_hh``; ``to_keras`` adds them. GRU with
  ``reset_after=True`` (Keras' default, torch's form) keeps two biases in both, stacked (2, 3H) in Keras, since
  the reset gate multiplies the recurrent one. With ``reset_after=False`` (Cho et al.) Keras has one bias and
  rnnkit's ``b_hn`` sits outside ``W_hn (r ⊙ h)``, so summing them is again exact.
* activations — Keras' names are rnnkit's (``linear`` is ``identity``). ``hard_sigmoid`` means the same in both:
  Keras 3's ``relu6(x + 3) / 6`` = torch's ``hardsigmoid``. Keras 2 (and tf.keras) used ``0.2 x + 0.5`` under
  that name: weights trained there need rnnkit's ``hard_sigmoid_keras2``, which Keras 3 cannot express.

``go_backwards``, a Bidirectional ``merge_mode`` other than ``concat``, peephole LSTMs, ``proj_size``, Jordan
cells and Python-callable activations have no counterpart on the other side: each is one ValueError line.
Dropout settings are not carried over (both sides ignore them at inference).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rnnkit.activations import activation_name
from rnnkit.cells import GRUCell, LSTMCell, RNNCell
from rnnkit.layer import Recurrent
from rnnkit.rnn import GRU, LSTM, RNN

#: Keras activation name -> rnnkit's (and back, through the inverse)
_FROM_KERAS = {
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "relu": "relu",
    "linear": "identity",
    "hard_sigmoid": "hard_sigmoid",
}
_TO_KERAS = {v: k for k, v in _FROM_KERAS.items()}
_GRU_SWAP = [1, 0, 2]  # Keras z, r, h <-> torch r, z, n (its own inverse)


def _keras() -> Any:
    try:
        import keras
    except ImportError as e:
        raise ImportError("rnnkit.interop needs Keras 3: pip install 'rnnkit[keras]'") from e
    return keras


def _swap(a: np.ndarray, H: int, axis: int) -> np.ndarray:
    """Reorder GRU gate blocks (size H along ``axis``) between Keras' z, r, h and torch's r, z, n."""
    blocks = np.split(a, 3, axis=axis)
    return np.concatenate([blocks[i] for i in _GRU_SWAP], axis=axis)


# ------------------------------------------------------------------------------------------------
# Keras -> rnnkit
def from_keras(layer: Any) -> Recurrent:
    """An rnnkit layer (``batch_first=True``) computing what the built Keras ``layer`` computes.

    ``layer``: ``keras.layers.SimpleRNN``, ``GRU``, ``LSTM`` or a ``Bidirectional`` of one of them
    (``merge_mode="concat"``). Call it as ``output, state = rnnkit_layer(x)``; Keras' ``return_sequences`` and
    ``return_state`` only choose which of those it hands back.
    """
    keras = _keras()
    wrapped = isinstance(layer, keras.layers.Bidirectional)
    if wrapped:
        merge = layer.get_config().get("merge_mode")
        if merge != "concat":
            raise ValueError(
                f"from_keras: Bidirectional(merge_mode={merge!r}) has no rnnkit equivalent: rnnkit "
                "concatenates the two directions (merge_mode='concat')"
            )
        directions = [layer.forward_layer, layer.backward_layer]
    else:
        directions = [layer]
    kinds = (keras.layers.SimpleRNN, keras.layers.GRU, keras.layers.LSTM)
    for d, part in enumerate(directions):
        if type(part) not in kinds:
            raise TypeError(
                f"from_keras converts keras.layers.SimpleRNN, GRU, LSTM and Bidirectional, not "
                f"{type(part).__module__}.{type(part).__name__}"
            )
        if not part.built or not part.weights:
            raise ValueError(
                f"from_keras: the Keras layer {part.name!r} has no weights yet; build it first "
                "(call it on an input, or layer.build((None, None, features)))"
            )
        if part.go_backwards != (d == 1):
            raise ValueError(
                f"from_keras: {part.name!r} has go_backwards={part.go_backwards}, which rnnkit has no "
                "flag for: convert a layer without it and flip the time axis of its input and output"
            )
    configs = [_config(part) for part in directions]
    if wrapped and configs[0] != configs[1]:
        raise ValueError(
            "from_keras: the Bidirectional's forward and backward layers differ in type or settings; "
            "rnnkit's bidirectional layers share them"
        )
    kind, units, kwargs = configs[0]
    F = int(directions[0].weights[0].shape[0])
    dtype = getattr(torch, str(directions[0].weights[0].dtype).rsplit(".", 1)[-1])  # "float32" -> torch.float32
    cls = {"SimpleRNN": RNN, "GRU": GRU, "LSTM": LSTM}[kind]
    out = cls(F, units, batch_first=True, bidirectional=wrapped, dtype=dtype, **kwargs)
    with torch.no_grad():
        for d, part in enumerate(directions):
            suffix = "_l0" + ("_reverse" if d else "")
            for name, value in _weights_from_keras(kind, part, units).items():
                getattr(out, name + suffix).copy_(torch.from_numpy(value))
    return out


def _config(part: Any) -> tuple[str, int, dict[str, Any]]:
    """(layer kind, units, rnnkit keyword arguments) of one Keras recurrent layer."""
    cfg = part.get_config()
    kind = type(part).__name__
    kwargs: dict[str, Any] = {"bias": bool(cfg["use_bias"])}
    names = ["activation"] + (["recurrent_activation"] if kind != "SimpleRNN" else [])
    for attr in names:
        value = cfg[attr]
        if not isinstance(value, str) or value not in _FROM_KERAS:
            raise ValueError(
                f"from_keras: {part.name!r} has {attr}={value!r}; rnnkit converts the named Keras "
                f"activations {', '.join(_FROM_KERAS)}"
            )
        kwargs[attr] = _FROM_KERAS[value]
    if kind == "GRU":
        kwargs["reset_after"] = bool(cfg["reset_after"])
    return kind, int(cfg["units"]), kwargs


def _weights_from_keras(kind: str, part: Any, H: int) -> dict[str, np.ndarray]:
    values = [np.asarray(w) for w in part.get_weights()]
    kernel, recurrent = values[0], values[1]
    bias = values[2] if len(values) > 2 else None
    if kind == "GRU":
        kernel, recurrent = _swap(kernel, H, 1), _swap(recurrent, H, 1)
    out = {"weight_ih": kernel.T.copy(), "weight_hh": recurrent.T.copy()}
    if bias is not None:
        if kind == "GRU" and bias.ndim == 2:  # reset_after=True: [input bias; recurrent bias]
            out["bias_ih"], out["bias_hh"] = _swap(bias[0], H, 0), _swap(bias[1], H, 0)
        else:
            out["bias_ih"] = _swap(bias, H, 0) if kind == "GRU" else bias
            out["bias_hh"] = np.zeros_like(bias)
    return out


# ------------------------------------------------------------------------------------------------
# rnnkit -> Keras
def to_keras(layer: Recurrent, **keras_kwargs: Any) -> Any:
    """A Keras 3 layer with ``layer``'s weights (rnnkit ``RNN``, ``GRU`` or ``LSTM``, either direction).

    One layer deep: a ``SimpleRNN``/``GRU``/``LSTM`` (a ``Bidirectional`` of it when bidirectional) built for
    (batch, time, features) input, with ``return_sequences=True`` and ``return_state=True`` so it returns what
    the rnnkit layer does (``keras_kwargs`` override these and add others). Deeper: a ``keras.Sequential`` of
    one such layer per depth level, each returning sequences and no state (a Keras stack returns only the last
    layer's output). Keras takes batch-major input whatever the rnnkit layer's ``batch_first``.
    """
    keras = _keras()
    if not isinstance(layer, Recurrent):
        raise TypeError(f"to_keras converts rnnkit layers (rnnkit.RNN, GRU, LSTM), not {type(layer).__name__}")
    cell = layer.cells[0]
    kind = {RNNCell: "SimpleRNN", GRUCell: "GRU", LSTMCell: "LSTM"}.get(type(cell))
    if kind is None:
        raise ValueError(
            f"to_keras: Keras 3 has no {type(cell).__name__} (it converts RNNCell, GRUCell and LSTMCell layers only)"
        )
    if isinstance(cell, LSTMCell) and cell.proj_size:
        raise ValueError("to_keras: Keras' LSTM has no projection (proj_size); there is nothing to convert it to")
    dtype = str(layer.weight_ih_l0.dtype).removeprefix("torch.")
    settings: dict[str, Any] = {"units": layer.hidden_size, "use_bias": layer.bias, "dtype": dtype}
    for attr in ["activation"] + (["recurrent_activation"] if kind != "SimpleRNN" else []):
        fn = getattr(cell, attr)
        name = activation_name(fn)
        if name not in _TO_KERAS:
            hint = " (Keras 3's hard_sigmoid is x/6 + 1/2)" if name == "hard_sigmoid_keras2" else ""
            raise ValueError(
                f"to_keras: {attr}={name or fn!r} has no Keras 3 equivalent{hint}; Keras names {', '.join(_FROM_KERAS)}"
            )
        settings[attr] = _TO_KERAS[name]
    if kind == "GRU":
        settings["reset_after"] = cell.reset_after
    if kind == "LSTM":
        settings["unit_forget_bias"] = False  # an init option only; the weights are set below
    deep = layer.num_layers > 1
    built = []
    for l in range(layer.num_layers):
        options = {**settings, "return_sequences": True, "return_state": not deep, **keras_kwargs}
        inner = getattr(keras.layers, kind)(**options)
        outer = keras.layers.Bidirectional(inner, merge_mode="concat", dtype=dtype) if layer.bidirectional else inner
        F = layer.input_size if l == 0 else layer.num_directions * layer.hidden_size
        outer.build((None, None, F))
        parts = [outer.forward_layer, outer.backward_layer] if layer.bidirectional else [outer]
        for d, part in enumerate(parts):
            part.set_weights(_weights_to_keras(kind, layer, l * layer.num_directions + d))
        built.append(outer)
    return keras.Sequential([keras.Input((None, layer.input_size)), *built]) if deep else built[0]


def _weights_to_keras(kind: str, layer: Recurrent, k: int) -> list[np.ndarray]:
    w = layer.weights(k)
    H = layer.hidden_size

    def np_(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy()

    kernel, recurrent = np_(w.weight_ih).T, np_(w.weight_hh).T
    if kind == "GRU":
        kernel, recurrent = _swap(kernel, H, 1), _swap(recurrent, H, 1)
    out = [kernel, recurrent]
    if w.bias_ih is not None:
        b_ih, b_hh = np_(w.bias_ih), np_(w.bias_hh)
        if kind == "GRU" and layer.cells[k].reset_after:
            out.append(np.stack([_swap(b_ih, H, 0), _swap(b_hh, H, 0)]))
        else:
            b = b_ih + b_hh
            out.append(_swap(b, H, 0) if kind == "GRU" else b)
    return out
