"""rnnkit.export.to_onnx: onnxruntime against rnnkit over random layer configurations, the graphs' ops, bad input."""

import os
import random

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import rnnkit
from _readonly import read_only, writable
from rnnkit.export import to_onnx
from rnnkit.models import LanguageModel

NAMED = ["tanh", "sigmoid", "relu", "identity", "hard_sigmoid", "hard_sigmoid_keras2"]
CELLS = ["rnn", "gru", "gru_cho", "lstm", "peephole", "jordan"]


def make_layer(rng: random.Random, cell: str):
    """A random layer of ``cell`` with random options (sizes, depth, direction, bias, layout, activations)."""
    F, H = rng.randint(1, 5), rng.randint(1, 6)
    common = dict(
        num_layers=rng.choice([1, 2]),
        bias=rng.random() < 0.8,
        batch_first=rng.random() < 0.5,
        bidirectional=rng.random() < 0.5,
    )
    gated = dict(activation=rng.choice(NAMED), recurrent_activation=rng.choice(NAMED)) if rng.random() < 0.4 else {}
    if cell == "rnn":
        return rnnkit.RNN(F, H, activation=rng.choice(NAMED), **common)
    if cell in ("gru", "gru_cho"):
        return rnnkit.GRU(F, H, reset_after=cell == "gru", **common, **gated)
    if cell == "jordan":
        return rnnkit.Jordan(
            F, H, rng.randint(1, 4), activation=rng.choice(NAMED), output_activation=rng.choice(NAMED), **common
        )
    proj = rng.randint(1, H - 1) if H > 1 and rng.random() < 0.3 else 0
    cls = rnnkit.LSTM if cell == "lstm" else rnnkit.PeepholeLSTM
    return cls(F, H, proj_size=proj, **common, **gated)


def batch_of(layer, B, T, g):
    x = torch.randn(T, B, layer.input_size, generator=g)
    return x.transpose(0, 1).contiguous() if layer.batch_first else x


def states_of(layer, B, g):
    LD = layer.num_layers * layer.num_directions
    return tuple(torch.randn(LD, B, s, generator=g) for s in layer.cells[0].state_sizes)


def as_hx(states):
    return states[0] if len(states) == 1 else states


def run_onnx(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {k: v.numpy() for k, v in feeds.items()})


def flat(result):
    output, state = result[:2]
    return [output, *((state,) if isinstance(state, torch.Tensor) else state)]


@pytest.mark.parametrize("seed", range(36))
def test_random_layer_matches_onnxruntime(seed, tmp_path):
    """Export with a (T=4, B=2) example, run on other batch sizes and lengths: every output to 1e-5."""
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    cell = CELLS[seed % len(CELLS)]
    layer = make_layer(rng, cell).eval()
    with_state, with_lengths = rng.random() < 0.5, rng.random() < 0.5
    ops = "scan" if seed % 5 == 4 else "native"
    example = batch_of(layer, 2, 4, g)
    path = tmp_path / "layer.onnx"
    lengths = torch.tensor([4, 2]) if with_lengths else None
    to_onnx(
        layer,
        (example, as_hx(states_of(layer, 2, g))) if with_state else example,
        path,
        lengths=lengths,
        recurrent_ops=ops,
    )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    for B, T in [(1, 1), (3, 7), (5, 2)]:
        x = batch_of(layer, B, T, g)
        feeds = {"input": x}
        hx = None
        if with_state:
            hx = states_of(layer, B, g)
            names = ["y_0"] if cell == "jordan" else ["h_0", "c_0"][: len(hx)]
            feeds.update(zip(names, hx))
        lens = None
        if with_lengths:
            lens = torch.randint(1, T + 1, (B,), generator=g)
            lens[0] = T
            feeds["lengths"] = lens
        got = run_onnx(path, feeds)
        with torch.no_grad():
            want = flat(layer(x, None if hx is None else as_hx(hx), lengths=lens))
        assert len(got) == len(want)
        for o, w in zip(got, want):
            np.testing.assert_allclose(o, w.numpy(), rtol=1e-5, atol=1e-5, err_msg=f"{layer} B={B} T={T}")


def op_types(path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_native_ops_carry_every_option(tmp_path):
    """Peepholes as LSTM's P, Cho's GRU as linear_before_reset=0, hard sigmoid as HardSigmoid with alpha 1/6."""
    x = torch.randn(3, 2, 4)
    path = tmp_path / "m.onnx"
    to_onnx(rnnkit.PeepholeLSTM(4, 5, bidirectional=True, recurrent_activation="hard_sigmoid"), x, path)
    (node,) = [n for n in onnx.load(str(path)).graph.node if n.op_type == "LSTM"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert len(node.input) == 8 and node.input[7]  # P
    assert attrs["direction"] == b"bidirectional"
    assert attrs["activations"] == [b"HardSigmoid", b"Tanh", b"Tanh"] * 2
    np.testing.assert_allclose(attrs["activation_alpha"], [1 / 6] * 2, rtol=1e-6)
    to_onnx(rnnkit.GRU(4, 5, reset_after=False, num_layers=2), x, path)
    nodes = [n for n in onnx.load(str(path)).graph.node if n.op_type == "GRU"]
    assert len(nodes) == 2
    assert all(
        onnx.helper.get_attribute_value(a) == 0 for n in nodes for a in n.attribute if a.name == "linear_before_reset"
    )
    to_onnx(rnnkit.RNN(4, 5, nonlinearity="relu"), x, path)
    assert "RNN" in op_types(path) and "Scan" not in op_types(path)
    # no native op: a Scan of the step; recurrent_ops="scan" forces one
    to_onnx(rnnkit.LSTM(4, 5, proj_size=2), x, path)
    assert "Scan" in op_types(path) and "LSTM" not in op_types(path)
    to_onnx(rnnkit.Jordan(4, 5, 3), x, path)
    assert "Scan" in op_types(path)
    to_onnx(rnnkit.LSTM(4, 5), x, path, recurrent_ops="scan")
    assert "Scan" in op_types(path) and "LSTM" not in op_types(path)


@pytest.mark.parametrize(
    ("cell", "input_kind", "tie"),
    [("gru", "onehot", False), ("lstm", "embedding", True), ("jordan", "embedding", False)],
)
def test_language_model_sequence_graph(cell, input_kind, tie, tmp_path):
    """tokens (B, T) -> logits (B, T, V) and the final state, at another batch size and length than the example's."""
    model = LanguageModel(11, cell, hidden_size=6, num_layers=2, input=input_kind, embed_size=6, tie_weights=tie).eval()
    tokens = torch.randint(0, 11, (2, 5))
    path = tmp_path / "lm.onnx"
    to_onnx(model, (tokens, model.init_state(2)), path)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 11, (3, 9), generator=g)
    state = tuple(torch.randn(2, 3, s, generator=g) for s in model.rnn.cells[0].state_sizes)
    names = ["y_0"] if cell == "jordan" else ["h_0", "c_0"][: len(state)]
    got = run_onnx(path, {"tokens": tokens, **dict(zip(names, state))})
    with torch.no_grad():
        want = flat(model(tokens, as_hx(state)))
    for o, w in zip(got, want):
        np.testing.assert_allclose(o, w.numpy(), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# bad input: one clear line, nothing written
def one_line(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_not_an_rnnkit_model(tmp_path):
    with pytest.raises(TypeError) as e:
        to_onnx(torch.nn.LSTM(4, 5), torch.randn(3, 2, 4), tmp_path / "m.onnx")
    assert "torch.nn.modules.rnn.LSTM" in one_line(e) and "rnnkit.LSTM" in one_line(e)
    with pytest.raises(TypeError, match="not torch.nn.modules.linear.Linear"):
        to_onnx(torch.nn.Linear(3, 3), torch.randn(2, 3), tmp_path / "m.onnx")
    from rnnkit.tasks.classify import SequenceClassifier

    with pytest.raises(TypeError, match=r"SequenceClassifier; export its recurrent layer \(.rnn\)"):
        to_onnx(SequenceClassifier(4, 3), torch.randn(2, 3, 4), tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("example", "match"),
    [
        (torch.randn(3, 2, 5), r"does not fit the LSTM: LSTM: expected input of shape \(T, B, 4\)"),
        (torch.randn(3, 4), r"must be batched, \(T, B, F\) with F=4"),
        ((torch.randn(3, 2, 4), (torch.randn(1, 3, 5), torch.randn(1, 3, 5))), r"expected h_0 of shape \(1, 2, 5\)"),
        ("abc", "example_input must be a Tensor"),
        ([1, 2, 3], r"must be x or \(x, state\), got a sequence of 3"),
    ],
)
def test_wrong_example(example, match, tmp_path):
    with pytest.raises((ValueError, TypeError), match=match) as e:
        to_onnx(rnnkit.LSTM(4, 5), example, tmp_path / "m.onnx")
    one_line(e)
    assert not list(tmp_path.iterdir())


class MyCell(rnnkit.LSTMCell):
    pass


@pytest.mark.parametrize(
    ("layer", "match"),
    [
        (rnnkit.LSTM(4, 5, activation=torch.nn.functional.softsign), "activation=<function softsign"),
        (rnnkit.GRU(4, 5, dtype=torch.float64), "exports float32 models, this one is torch.float64"),
        (rnnkit.Recurrent(MyCell, 4, 5), "no ONNX translation for MyCell"),
    ],
)
def test_unsupported_option(layer, match, tmp_path):
    with pytest.raises(ValueError, match=match) as e:
        to_onnx(layer, torch.randn(3, 2, 4, dtype=layer.weight_ih_l0.dtype), tmp_path / "m.onnx")
    one_line(e)
    assert not list(tmp_path.iterdir())


def test_unwritable_output_keeps_what_was_there(tmp_path, monkeypatch):
    layer = rnnkit.GRU(4, 5)
    x = torch.randn(3, 2, 4)
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(ValueError, match="is a folder") as e:
        to_onnx(layer, x, tmp_path)
    one_line(e)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot write into") as e:
        to_onnx(layer, x, blocker / "m.onnx")  # the 'folder' is a file
    one_line(e)

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(ValueError, match="No space left on device"):
        to_onnx(layer, x, target)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "m.onnx"]  # no temporary file left


def test_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    read_only(folder)
    try:
        with pytest.raises(ValueError, match="cannot write into .*(Permission denied|Operation not permitted)") as e:
            to_onnx(rnnkit.GRU(4, 5), torch.randn(3, 2, 4), folder / "m.onnx")
        one_line(e)
        assert not list(folder.iterdir())
    finally:
        writable(folder)
