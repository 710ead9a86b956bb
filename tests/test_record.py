"""rnnkit.diagnostics.record: every (layer, direction)'s gates and states, chunked, equal one direct call."""

import numpy as np
import pytest
import torch

from rnnkit import GRU, LSTM, RNN, Jordan, PeepholeLSTM
from rnnkit.diagnostics.record import gate_range, record, run_with_gates, single_layer

LAYERS = {
    "lstm": lambda **kw: LSTM(5, 6, **kw),
    "lstm-proj": lambda **kw: LSTM(5, 6, proj_size=3, **kw),
    "peephole": lambda **kw: PeepholeLSTM(5, 6, **kw),
    "gru": lambda **kw: GRU(5, 6, **kw),
    "gru-cho": lambda **kw: GRU(5, 6, reset_after=False, **kw),
    "rnn-relu": lambda **kw: RNN(5, 6, nonlinearity="relu", **kw),
    "jordan": lambda **kw: Jordan(5, 6, 4, **kw),
}


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_record_matches_one_direct_call(name, bidirectional):
    layer = LAYERS[name](num_layers=2, bidirectional=bidirectional, dtype=torch.float64)
    x = torch.randn(23, 5, dtype=torch.float64)
    blocks, out = record(layer, x, chunk=5)  # 5 chunks, the last one short
    ref_out, _, ref_gates = layer(x[:, None], return_gates=True)
    torch.testing.assert_close(out, ref_out[:, 0].detach(), rtol=0, atol=1e-12)
    assert [(b.layer, b.direction) for b in blocks] == [(i, d) for i in range(2) for d in range(1 + bidirectional)]
    D = layer.num_directions
    for k, b in enumerate(blocks):
        assert set(b.gates) == set(layer.cells[0].gate_names)
        for n, g in b.gates.items():  # stored as float32 (what the report needs)
            np.testing.assert_allclose(g, ref_gates[n][k, :, 0].detach().numpy(), rtol=0, atol=1e-6)
        # the states: the block's own output (its half of the layer output for the top layer)
        own = "y" if name == "jordan" else "h"
        if b.layer == 1:
            half = ref_out[:, 0, b.direction * layer.output_size : (b.direction + 1) * layer.output_size]
            np.testing.assert_allclose(b.states[own], half.detach().numpy(), atol=1e-6)
        if "c" in b.gates:
            assert list(b.states) == ["c", "h"] and b.states["c"] is b.gates["c"]
    assert len(blocks) == 2 * D


def test_chunk_sizes_agree_and_a_batch_is_refused():
    layer = LSTM(3, 4, dtype=torch.float64)
    x = torch.randn(17, 3, dtype=torch.float64)
    single = single_layer(layer, 0, 0)
    outs = [run_with_gates(single, x, chunk)[0] for chunk in (0, 1, 4, 17, 100)]  # 0: one direct call
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="one sequence"):
        record(layer, torch.randn(17, 2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"one-layer, one-direction"):
        run_with_gates(LSTM(3, 4, num_layers=2), torch.randn(5, 3))


def test_batch_first_layer_and_unbatched_forms():
    layer = GRU(3, 4, batch_first=True)
    x = torch.randn(9, 3)
    a, _ = record(layer, x)
    b, _ = record(layer, x[None])  # (1, T, F): the layer's own layout
    np.testing.assert_array_equal(a[0].states["h"], b[0].states["h"])


def test_gate_ranges_come_from_the_cell_activations():
    lstm = LSTM(2, 3).cells[0]
    assert [gate_range(lstm, n) for n in "ifgoc"] == [(0, 1), (0, 1), (-1, 1), (0, 1), None]
    hard = GRU(2, 3, recurrent_activation="hard_sigmoid").cells[0]
    assert gate_range(hard, "z") == (0, 1) and gate_range(hard, "n") == (-1, 1)
    assert gate_range(RNN(2, 3, nonlinearity="relu").cells[0], "h") is None
    jordan = Jordan(2, 3, 2, output_activation="tanh").cells[0]
    assert gate_range(jordan, "y") == (-1, 1) and gate_range(Jordan(2, 3, 2).cells[0], "y") is None
