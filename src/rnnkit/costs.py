"""What a recurrent layer costs, counted from its equations: parameters and FLOPs per token.

The counts are analytical (from the sizes, not from the tensors), so they can be checked against
``sum(p.numel())`` and against torch's own FLOP counter.

FLOP convention (per token, i.e. per time step of one sequence, forward pass):

* a matrix-vector product with a (m, n) matrix costs ``2 m n`` (one multiply and one add per weight);
* every element-wise operation costs 1 per element: a bias add, a sum of two pre-activations, a
  product, ``1 - z``, and each activation (σ, tanh, relu) counts as ONE op although a tanh costs the
  hardware several; the identity activation costs nothing;
* training (forward + backward) ≈ 3 × forward: the backward pass of ``y = W x`` is two products of the
  same size (``dW += dy xᵀ`` and ``dx = Wᵀ dy``), and the pointwise backward is about twice the forward.

Per cell, with F inputs, H hidden units, P = proj_size, R = P or H (the width of ``h``), O = Jordan's
output size and b = 1 with biases, 0 without:

=========================  =======================================  ==========================================
cell                       matmul FLOPs / token                     pointwise FLOPs / token
=========================  =======================================  ==========================================
Elman (RNN)                2 (H F + H H)                            (2b + 2) H: biases, sum, act
GRU (either reset)         2 (3H F + 3H H)                          (6b + 11) H: biases, 2 sums, r⊙, sum, 3 acts,
                                                                    (1 - z) n + z h = 4
LSTM                       2 (4H F + 4H R) + 2 P H                  (8b + 13) H: biases, 4 sums, 5 acts,
                                                                    c = f c + i g (3), h = o tanh c (1)
peephole LSTM              as LSTM                                  (8b + 19) H: LSTM + 3 peephole ⊙ and +
Jordan                     2 (H F + H O + O H)                      (2b + 2) H + b O (+ O if out_act is not
                                                                    the identity)
MGU                        2 (2H F + 2H H)                          (4b + 9) H: biases, 2 sums, f⊙h, 2 acts,
                                                                    (1 - f) h + f n = 4
IndRNN                     2 H F                                    (2b + 3) H: biases, u⊙h, sum, act
minGRU                     2 (2H F)                                 (2b + 5) H: biases, σ, 1 - z, z⊙n, a⊙h + b
minLSTM                    2 (3H F)                                 (3b + 8) H: biases, 2 σ, f + i, 2 divisions,
                                                                    i'⊙n, f'⊙h + b
layer-norm LSTM            2 (4H F + 4H H)                          (67 + 9b) H: three LNs of 8H features
                                                                    (6 + b each) and the LSTM's 13
layer-norm GRU             2 (3H F + 3H H)                          (47 + 6b) H: two LNs of 6H features
                                                                    (6 + b each) and the GRU's 11
=========================  =======================================  ==========================================

A layer norm of n features (:mod:`rnnkit.cells.layernorm`) costs (6 + b) n: the mean, ``z − μ``, square and sum,
the scaling by ``1/σ``, the gain and (with b) the shift; ``1/σ`` itself is one op per row.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from rnnkit.activations import identity
from rnnkit.cells import (
    GRUCell,
    IndRNNCell,
    JordanCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    MGUCell,
    MinGRUCell,
    MinLSTMCell,
    PeepholeLSTMCell,
    RecurrentCell,
    RNNCell,
)


@dataclass(frozen=True)
class Cost:
    """Parameters and forward FLOPs per token of a cell or a layer."""

    params: int
    matmul_flops: int
    pointwise_flops: int

    @property
    def flops(self) -> int:
        """Forward FLOPs per token."""
        return self.matmul_flops + self.pointwise_flops

    @property
    def train_flops(self) -> int:
        """Forward + backward FLOPs per token (≈ 3 × forward, see the module docstring)."""
        return 3 * self.flops

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.params + other.params,
            self.matmul_flops + other.matmul_flops,
            self.pointwise_flops + other.pointwise_flops,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "params": self.params,
            "matmul_flops": self.matmul_flops,
            "pointwise_flops": self.pointwise_flops,
            "flops": self.flops,
            "train_flops": self.train_flops,
        }


def cell_cost(cell: RecurrentCell) -> Cost:
    """Parameters and forward FLOPs per token of one cell, from its sizes (see the table above)."""
    F, H, b = cell.input_size, cell.hidden_size, int(cell.bias)
    if isinstance(cell, (LayerNormLSTMCell, LayerNormGRUCell)):
        G = 4 if isinstance(cell, LayerNormLSTMCell) else 3
        weights = G * H * F + G * H * H
        ln_features = 2 * G * H + (H if G == 4 else 0)  # LN(W_ih x), LN(W_hh h) and, in the LSTM, LN(c)
        params = weights + (1 + b) * ln_features  # a gain per feature, and a shift with biases
        pointwise = (6 + b) * ln_features + (13 if G == 4 else 11) * H
        return Cost(params, 2 * weights, pointwise)
    if isinstance(cell, LSTMCell):  # also PeepholeLSTMCell
        P = cell.proj_size
        R = P or H
        weights = 4 * H * F + 4 * H * R + P * H  # W_ih, W_hh, W_hr
        params = weights + 8 * H * b
        pointwise = (8 * b + 13) * H
        if isinstance(cell, PeepholeLSTMCell):
            params += 3 * H  # w_ci, w_cf, w_co
            pointwise += 6 * H  # three w ⊙ c and three adds
        return Cost(params, 2 * weights, pointwise)
    if isinstance(cell, GRUCell):
        weights = 3 * H * F + 3 * H * H
        return Cost(weights + 6 * H * b, 2 * weights, (6 * b + 11) * H)
    if isinstance(cell, JordanCell):
        O = cell.jordan_output_size
        weights = H * F + H * O + O * H  # W_ih, W_yh, W_hy
        pointwise = (2 * b + 2) * H + b * O + (0 if cell.output_activation is identity else O)
        return Cost(weights + (2 * H + O) * b, 2 * weights, pointwise)
    if isinstance(cell, RNNCell):
        weights = H * F + H * H
        return Cost(weights + 2 * H * b, 2 * weights, (2 * b + 2) * H)
    if isinstance(cell, MGUCell):
        weights = 2 * H * F + 2 * H * H
        return Cost(weights + 4 * H * b, 2 * weights, (4 * b + 9) * H)
    if isinstance(cell, IndRNNCell):
        return Cost(H * F + H + 2 * H * b, 2 * H * F, (2 * b + 3) * H)  # u is a vector: H weights, no product
    if isinstance(cell, MinGRUCell):
        return Cost(2 * H * F + 2 * H * b, 4 * H * F, (2 * b + 5) * H)
    if isinstance(cell, MinLSTMCell):
        return Cost(3 * H * F + 3 * H * b, 6 * H * F, (3 * b + 8) * H)
    raise TypeError(f"no cost model for {type(cell).__name__}: add its counts to rnnkit.costs.cell_cost")


def layer_cost(layer: nn.Module) -> Cost:
    """Sum of :func:`cell_cost` over a :class:`~rnnkit.layer.Recurrent` layer's cells (every layer and direction).

    FLOPs are per token of the input sequence: a bidirectional layer runs both of its cells on each token.
    """
    cells = getattr(layer, "cells", None)
    if cells is None:
        raise TypeError(f"layer_cost needs an rnnkit layer (with .cells), got {type(layer).__name__}")
    total = Cost(0, 0, 0)
    for cell in cells:
        total = total + cell_cost(cell)
    return total
