"""rnnkit.interop against Keras 3 itself (torch backend): the same outputs both ways, and what cannot convert."""

import os

os.environ["KERAS_BACKEND"] = "torch"  # before keras is first imported: Keras on torch, no TensorFlow needed

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import rnnkit  # noqa: E402
from rnnkit.interop import from_keras, to_keras  # noqa: E402

F, H, B, T = 3, 4, 2, 5
NAMES = ["tanh", "sigmoid", "relu", "linear", "hard_sigmoid"]


def numpy_of(outputs):
    return [keras.ops.convert_to_numpy(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


def randomize(layer, seed):
    """Random weights (biases included), so that a swapped gate or a dropped bias shows."""
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in layer.get_weights()])


def rnnkit_outputs(layer, x, initial=None):
    """rnnkit's (output, h_n[, c_n]) laid out as Keras returns them: output, then each direction's states."""
    with torch.no_grad():
        output, state = layer(torch.from_numpy(x), initial)
    states = [state] if isinstance(state, torch.Tensor) else list(state)  # each (D, B, H)
    per_direction = [s[d] for d in range(layer.num_directions) for s in states]
    return [output.numpy()] + [s.numpy() for s in per_direction]


def keras_layer(kind, seed, **kw):
    rng = np.random.default_rng(seed)
    act = {"activation": str(rng.choice(NAMES))}
    if kind != "SimpleRNN":
        act["recurrent_activation"] = str(rng.choice(NAMES))
    cls = getattr(keras.layers, kind)
    return cls(H, return_sequences=True, return_state=True, **act, **kw)


CASES = [
    ("SimpleRNN", {}),
    ("SimpleRNN", {"use_bias": False}),
    ("GRU", {"reset_after": True}),
    ("GRU", {"reset_after": False}),
    ("GRU", {"reset_after": True, "use_bias": False}),
    ("LSTM", {}),
    ("LSTM", {"use_bias": False}),
]


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize(("kind", "kw"), CASES)
def test_from_keras_and_back(kind, kw, bidirectional):
    assert keras.backend.backend() == "torch"
    seed = len(kind) * 7 + len(kw) + bidirectional
    inner = keras_layer(kind, seed, **kw)
    layer = keras.layers.Bidirectional(inner) if bidirectional else inner
    x = np.random.default_rng(seed).normal(size=(B, T, F)).astype(np.float32)
    layer(x)  # builds it
    for part in [layer.forward_layer, layer.backward_layer] if bidirectional else [layer]:
        randomize(part, seed)
    want = numpy_of(layer(x))
    ours = from_keras(layer)
    assert ours.batch_first and ours.bidirectional == bidirectional
    got = rnnkit_outputs(ours, x)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    # back to Keras: the same numbers again, through Keras' own code
    again = numpy_of(to_keras(ours)(x))
    for g, w in zip(again, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: rnnkit.RNN(F, H, nonlinearity="relu"),
        lambda: rnnkit.GRU(F, H, bidirectional=True),
        lambda: rnnkit.GRU(F, H, reset_after=False, recurrent_activation="hard_sigmoid"),
        lambda: rnnkit.LSTM(F, H, activation="identity", bias=False),
        lambda: rnnkit.LSTM(F, H, forget_bias=1.0, bidirectional=True),
    ],
)
def test_to_keras_with_initial_state(make):
    """rnnkit -> Keras -> same outputs, an initial state included (both bias vectors in use: torch's init)."""
    layer = make().eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, F, generator=g)
    D = layer.num_directions
    states = [torch.randn(D, B, H, generator=g) for _ in layer.cells[0].state_sizes]
    with torch.no_grad():
        output, final = layer(x.transpose(0, 1).contiguous(), states[0] if len(states) == 1 else tuple(states))
    k = to_keras(layer)
    initial = [s[d].numpy() for d in range(D) for s in states]  # Keras: each direction's h (and c) in turn
    got = numpy_of(k(x.numpy(), initial_state=initial))
    finals = [final] if isinstance(final, torch.Tensor) else list(final)
    want = [output.transpose(0, 1).numpy()] + [s[d].numpy() for d in range(D) for s in finals]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_deep_layer_becomes_a_sequential():
    layer = rnnkit.GRU(F, H, num_layers=3, bidirectional=True, batch_first=True).eval()
    x = torch.randn(B, T, F)
    model = to_keras(layer)
    assert isinstance(model, keras.Sequential) and len(model.layers) == 3
    with torch.no_grad():
        want = layer(x)[0].numpy()
    np.testing.assert_allclose(numpy_of(model(x.numpy()))[0], want, rtol=1e-5, atol=1e-5)


def test_hard_sigmoid_is_keras_3s():
    """Keras 3's hard_sigmoid is torch's (x/6 + 1/2); Keras 2's 0.2x + 1/2 is rnnkit's hard_sigmoid_keras2."""
    z = np.linspace(-4, 4, 33).astype(np.float32)
    keras3 = numpy_of(keras.activations.hard_sigmoid(z))[0]
    ours = rnnkit.get_activation("hard_sigmoid")(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(ours, keras3, atol=1e-7)
    keras2 = rnnkit.get_activation("hard_sigmoid_keras2")(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(keras2, np.clip(0.2 * z + 0.5, 0, 1), atol=1e-7)
    assert not np.allclose(keras2, keras3)


# ------------------------------------------------------------------------------------------------
# what does not convert: one line each
def one_line(excinfo):
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: keras.layers.GRU(H, go_backwards=True), "go_backwards=True"),
        (lambda: keras.layers.Bidirectional(keras.layers.LSTM(H), merge_mode="sum"), "merge_mode='sum'"),
        (lambda: keras.layers.LSTM(H, activation="softsign"), "activation='softsign'"),
        (lambda: keras.layers.Dense(H), "not keras.src.layers.core.dense.Dense"),
    ],
)
def test_from_keras_refuses(make, match):
    layer = make()
    layer.build((None, None, F))
    with pytest.raises((ValueError, TypeError), match=match) as e:
        from_keras(layer)
    one_line(e)


def test_from_keras_unbuilt():
    with pytest.raises(ValueError, match="has no weights yet; build it first") as e:
        from_keras(keras.layers.LSTM(H))
    one_line(e)


@pytest.mark.parametrize(
    ("layer", "match"),
    [
        (rnnkit.PeepholeLSTM(F, H), "Keras 3 has no PeepholeLSTMCell"),
        (rnnkit.Jordan(F, H, 2), "Keras 3 has no JordanCell"),
        (rnnkit.LSTM(F, H, proj_size=2), "no projection"),
        (rnnkit.GRU(F, H, activation="hard_sigmoid_keras2"), r"hard_sigmoid_keras2. has no Keras 3 equivalent"),
        (rnnkit.LSTM(F, H, activation=torch.nn.functional.softsign), "activation=<function softsign"),
        (torch.nn.LSTM(F, H), "not LSTM"),
    ],
)
def test_to_keras_refuses(layer, match):
    with pytest.raises((ValueError, TypeError), match=match) as e:
        to_keras(layer)
    one_line(e)
