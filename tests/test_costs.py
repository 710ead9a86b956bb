"""Parameter and FLOP counts of rnnkit.costs: against hand counts, sum(p.numel()) and torch's FLOP counter."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import rnnkit
from rnnkit.costs import Cost, cell_cost, layer_cost

F, H = 3, 4

LAYERS = {
    "rnn": lambda **kw: rnnkit.RNN(F, H, **kw),
    "gru": lambda **kw: rnnkit.GRU(F, H, **kw),
    "gru-cho": lambda **kw: rnnkit.GRU(F, H, reset_after=False, **kw),
    "lstm": lambda **kw: rnnkit.LSTM(F, H, **kw),
    "lstmp": lambda **kw: rnnkit.LSTM(F, H, proj_size=2, **kw),
    "peephole": lambda **kw: rnnkit.PeepholeLSTM(F, H, **kw),
    "jordan": lambda **kw: rnnkit.Jordan(F, H, 2, **kw),
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("options", [{}, {"bias": False}, {"num_layers": 2, "bidirectional": True}])
def test_params_match_the_tensors(kind, options):
    layer = LAYERS[kind](**options)
    assert layer_cost(layer).params == sum(p.numel() for p in layer.parameters())


# Hand counts for F=3, H=4 (Jordan O=2, LSTMP P=2), one cell with biases: (matmul, pointwise) per token.
HAND = {
    "rnn": (2 * (4 * 3 + 4 * 4), 2 * 4 + 4 + 4),  # biases 2H, sum H, tanh H
    "gru": (2 * (12 * 3 + 12 * 4), 6 * 4 + 2 * 4 + 4 + 4 + 3 * 4 + 4 * 4),  # biases, r/z sums, r*hn, +, acts, blend
    "gru-cho": (2 * (12 * 3 + 12 * 4), 6 * 4 + 4 + 3 * 4 + 3 * 4 + 4 * 4),  # biases, r*h, 3 sums, acts, blend
    "lstm": (2 * (16 * 3 + 16 * 4), 8 * 4 + 4 * 4 + 5 * 4 + 3 * 4 + 4),  # biases, sums, 5 acts, c, h
    "lstmp": (2 * (16 * 3 + 16 * 2 + 2 * 4), 8 * 4 + 4 * 4 + 5 * 4 + 3 * 4 + 4),
    "peephole": (2 * (16 * 3 + 16 * 4), 8 * 4 + 4 * 4 + 5 * 4 + 3 * 4 + 4 + 6 * 4),  # + 3 peephole products and sums
    "jordan": (2 * (4 * 3 + 4 * 2 + 2 * 4), 4 + 4 + 2 + 4 + 4),  # biases H+H+O, sum, tanh; identity output is free
}


@pytest.mark.parametrize("kind", sorted(HAND))
def test_flops_match_hand_counts(kind):
    cost = cell_cost(LAYERS[kind]().cells[0])
    assert (cost.matmul_flops, cost.pointwise_flops) == HAND[kind]
    assert cost.flops == sum(HAND[kind]) and cost.train_flops == 3 * sum(HAND[kind])


def test_flops_without_bias_and_with_an_output_activation():
    assert cell_cost(rnnkit.LSTM(F, H, bias=False).cells[0]).pointwise_flops == 13 * H
    assert cell_cost(rnnkit.RNN(F, H, bias=False).cells[0]).pointwise_flops == 2 * H
    jordan = rnnkit.Jordan(F, H, 2, output_activation="tanh").cells[0]
    assert cell_cost(jordan).pointwise_flops == HAND["jordan"][1] + 2


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("options", [{}, {"num_layers": 2, "bidirectional": True}])
def test_matmul_flops_match_torchs_flop_counter(kind, options):
    # The reference engine does exactly the products of the equations: torch counts 2mnk per product.
    layer = LAYERS[kind](engine="reference", **options)
    T, B = 5, 3
    x = torch.randn(T, B, F)
    with FlopCounterMode(display=False) as counter:
        layer(x)
    assert counter.get_total_flops() == layer_cost(layer).matmul_flops * T * B


def test_costs_add_and_reject_unknown_cells():
    assert Cost(1, 2, 3) + Cost(10, 20, 30) == Cost(11, 22, 33)
    assert Cost(1, 2, 3).as_dict() == {"params": 1, "matmul_flops": 2, "pointwise_flops": 3, "flops": 5,
                                       "train_flops": 15}  # fmt: skip

    class Custom(rnnkit.RecurrentCell):
        def parameter_shapes(self):
            return {"weight_ih": (H, F)}

    with pytest.raises(TypeError, match="no cost model for Custom"):
        cell_cost(Custom(F, H))
    with pytest.raises(TypeError, match="needs an rnnkit layer"):
        layer_cost(torch.nn.LSTM(F, H))
