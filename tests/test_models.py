import pytest
import torch
import torch.nn.functional as F

from rnnkit.models import LanguageModel, ModelConfig, detach_state

V = 7


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "peephole", "jordan"])
@pytest.mark.parametrize("input", ["onehot", "embedding"])
def test_shapes_and_state_carry_equals_one_pass(cell, input):
    """Two halves with the state carried give the same logits as the whole sequence at once (float64)."""
    torch.manual_seed(0)
    model = ModelConfig(cell=cell, hidden_size=5, num_layers=2, input=input).build(V, dtype=torch.float64)
    tokens = torch.randint(0, V, (3, 8))
    logits, state = model(tokens)
    assert logits.shape == (3, 8, V)
    first, s = model(tokens[:, :5])
    second, s = model(tokens[:, 5:], detach_state(s))
    torch.testing.assert_close(torch.cat([first, second], 1), logits, rtol=0, atol=1e-12)
    zero = model.init_state(3)
    torch.testing.assert_close(model(tokens, zero)[0], logits, rtol=0, atol=0)


def test_matches_torch_lstm_plus_linear():
    """Parity: the model is exactly one-hot -> torch.nn.LSTM -> Linear with the same weights."""
    torch.manual_seed(0)
    model = LanguageModel(V, "lstm", 6, 2, dtype=torch.float64)
    ref = torch.nn.LSTM(V, 6, 2, batch_first=True, dtype=torch.float64)
    ref.load_state_dict(model.rnn.state_dict())
    tokens = torch.randint(0, V, (2, 9))
    out, (h, c) = ref(F.one_hot(tokens, V).double())
    logits, (h2, c2) = model(tokens)
    torch.testing.assert_close(logits, model.head(out), rtol=0, atol=1e-13)
    torch.testing.assert_close(h2, h, rtol=0, atol=1e-13)


def test_tied_weights_share_one_tensor_and_learn_together():
    model = LanguageModel(V, "gru", 6, input="embedding", tie_weights=True)
    assert model.head.weight is model.embedding.weight
    assert sum(p.numel() for p in model.parameters()) == V * 6 + model.rnn.weight_ih_l0.numel() * 2 + 6 * 3 * 2 + V


def test_dropout_only_in_training():
    torch.manual_seed(0)
    model = LanguageModel(V, "lstm", 8, 2, dropout=0.5, input="embedding")
    tokens = torch.randint(0, V, (2, 5))
    model.eval()
    assert torch.equal(model(tokens)[0], model(tokens)[0])
    model.train()
    assert not torch.equal(model(tokens)[0], model(tokens)[0])


def test_engine_is_settable_and_engines_agree():
    torch.manual_seed(0)
    model = LanguageModel(V, "lstm", 4, dtype=torch.float64)
    tokens = torch.randint(0, V, (2, 6))
    fast = model(tokens)[0]
    model.engine = "reference"
    torch.testing.assert_close(model(tokens)[0], fast, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cell": "transformer"}, "model.cell"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"tie_weights": True}, "needs model.input=embedding"),
        ({"tie_weights": True, "input": "embedding", "embed_size": 3}, "embed_size == model.hidden_size"),
        ({"engine": "warp"}, "unknown engine"),
    ],
)
def test_config_errors_name_the_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_bad_tokens():
    model = LanguageModel(V)
    with pytest.raises(ValueError, match="long tensor"):
        model(torch.zeros(2, 3))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "peephole", "jordan"])
@pytest.mark.parametrize("input", ["onehot", "embedding"])
def test_step_equals_forward_one_token_at_a_time(cell, input):
    """LanguageModel.step (the layer's stepper in eval mode; forward in training mode) == forward (float64)."""
    torch.manual_seed(0)
    model = ModelConfig(cell=cell, hidden_size=5, num_layers=2, input=input).build(V, dtype=torch.float64)
    tokens = torch.randint(0, V, (3, 6))
    with torch.no_grad():
        expected, expected_state = model(tokens)
    for training in (False, True):
        model.train(training)
        state = None
        for t in range(tokens.shape[1]):
            logits, state = model.step(tokens[:, t], state)
            torch.testing.assert_close(logits, expected[:, t], rtol=0, atol=1e-12)
        for got, want in zip(state if isinstance(state, tuple) else (state,),
                             expected_state if isinstance(state, tuple) else (expected_state,)):  # fmt: skip
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert model.__dict__["_stepper_cache"] is not None  # the fast path ran in eval mode


def test_a_model_with_a_kept_stepper_still_copies_and_pickles():
    """The stepper kept on the model is rebuilt from its layer, so deepcopy/pickle give working models."""
    import copy
    import pickle

    torch.manual_seed(0)
    model = ModelConfig(cell="gru", hidden_size=5).build(V, dtype=torch.float64).eval()
    tokens = torch.tensor([1, 2])
    want, _ = model.step(tokens)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert clone.__dict__["_stepper_cache"].layer is clone.rnn
        torch.testing.assert_close(clone.step(tokens)[0], want, rtol=0, atol=0)
