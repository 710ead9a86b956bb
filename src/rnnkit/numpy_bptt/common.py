"""The BPTT driver shared by every cell: input checks, the output head and its loss, and truncation.

Notation follows the classic hand derivation of BPTT (tanh state, softmax output), generalised to any cell and a batch:

* ``s_t = cell(x_t, s_{t-1})``             — the recurrence (``U = weight_ih``, ``W = weight_hh``);
* ``z_t = V s_t + c``                       — the output head (``V``: (O, S), ``c``: (O,));
* softmax head: ``ŷ_t = softmax(z_t)``, ``E_t = -log ŷ_t[y_t]`` (the derivation's ``E_t = -Σ y_t log ŷ_t``);
* squared-error head: ``ŷ_t = z_t``, ``E_t = ½ ‖ŷ_t - y_t‖²``;
* ``L = Σ_b Σ_t E_t`` — summed over time (as in the seed) and over the batch (independent sequences).

A cell (see :class:`Cell`) supplies one step forward and one step backward; this module runs them over
time. Backward accumulates, for every parameter θ, ``∂L/∂θ = Σ_t (∂L/∂s_t)(∂⁺s_t/∂θ)`` where
``∂L/∂s_t = ∂E_t/∂s_t + (∂L/∂s_{t+1})(∂s_{t+1}/∂s_t)`` — the seed's product ``∏ ∂s_i/∂s_{i-1}`` unrolled
one factor at a time.

Truncation (``truncate=k``) comes in two textbook forms:

* ``"window"`` (Williams & Peng's BPTT(k); the seed's sum ``Σ_{k=0}^{j}`` cut to its last k terms): the
  gradient of each ``E_t`` flows back through at most k steps — into ``s_t, …, s_{t-k+1}`` — and the
  part flowing into ``s_{t-k}`` is cut.
* ``"chunk"`` (what a torch user gets by detaching the carried state every k steps): the sequence is
  cut into chunks of k steps; no gradient crosses from one chunk into the state that ends the previous one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

Array = np.ndarray
State = tuple[Array, ...]
Params = dict[str, Array]

HEADS = ("softmax", "mse")
TRUNCATIONS = ("window", "chunk")


# --------------------------------------------------------------------------------------------------
# Activations with their derivatives written in terms of the *output* y = f(z) (what backward keeps).
def sigmoid(z: Array) -> Array:
    """σ(z) = 1 / (1 + e^{-z}), written via tanh so that it never overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


ACTIVATIONS: dict[str, tuple[Any, Any]] = {
    "tanh": (np.tanh, lambda y: 1.0 - y * y),  # tanh' = 1 - tanh² ≤ 1
    "sigmoid": (sigmoid, lambda y: y * (1.0 - y)),  # σ' = σ(1 - σ) ≤ 0.25: why sigmoid RNNs vanish
    "relu": (lambda z: np.maximum(z, 0.0), lambda y: (y > 0).astype(y.dtype)),
    "identity": (lambda z: z, lambda y: np.ones_like(y)),
}


def activation(name: str, what: str = "activation") -> tuple[Any, Any]:
    """``(f, f')`` for a named activation, ``f'`` taking ``y = f(z)``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown {what} {name!r} for the NumPy reference: use one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def linear(x: Array, weight: Array, bias: Array | None) -> Array:
    """``x Wᵀ + b`` for a batch of rows: (B, in) -> (B, out)."""
    y = x @ weight.T
    return y if bias is None else y + bias


def accumulate(grads: Params, name: str, value: Array) -> None:
    """``grads[name] += value`` — skipped for a parameter the cell does not have (an absent bias)."""
    if name in grads:
        grads[name] += value


# --------------------------------------------------------------------------------------------------
class Cell(Protocol):
    """What the driver needs from a cell; see :mod:`rnnkit.numpy_bptt.elman` for the simplest one."""

    name: str
    #: feature size of each state tensor; the first one, ``s_t``, is the output the head reads
    state_sizes: tuple[int, ...]

    def parameter_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape, rnnkit/torch names and gate order."""
        ...

    def step(self, p: Params, x: Array, state: State) -> tuple[State, Any]:
        """One step forward: ``x`` (B, F), state -> new state, cache for backward."""
        ...

    def step_backward(self, p: Params, cache: Any, dstate: State, grads: Params) -> tuple[State, Array]:
        """One step backward: ∂L/∂(new state) -> ∂L/∂(old state), ∂L/∂x; adds parameter gradients to ``grads``."""
        ...


@dataclass
class BPTTResult:
    """Everything a forward + hand-written backward pass over one sequence batch produces.

    Shapes: T steps, B sequences, F input features, O head outputs; state component k has ``S_k`` features.
    """

    #: L = Σ_b Σ_t E_t
    loss: float
    #: ∂L/∂θ for every cell parameter (cell's names) and the head's ``V`` and ``c``
    grads: Params
    #: ∂L/∂x_t, (T, B, F)
    dx: Array
    #: ∂L/∂s_0 for each initial state component, (B, S_k)
    dstate0: State
    #: ∂L/∂s_t for t = 1..T and each state component (total derivative, incl. paths through later steps), (T, B, S_k)
    dstates: State
    #: the forward states s_1..s_T per component, (T, B, S_k)
    states: State
    #: the head's pre-activation z_t = V s_t + c, (T, B, O) (the prediction itself for the squared-error head)
    logits: Array


# --------------------------------------------------------------------------------------------------
# Input checks: every message names the problem and the fix.
def as_float64(name: str, a: Any) -> Array:
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be an array of numbers: {err}") from None
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN or inf (first at index {tuple(int(i) for i in bad)}); clean the data")
    return arr


def check_params(cell: Cell, params: Params, input_size: int, *, head: bool) -> Params:
    """float64 copies of ``params``, after checking every name and shape against the cell's."""
    expected = dict(cell.parameter_shapes(input_size))
    if head:
        if "V" not in params:
            raise ValueError("params has no head weight 'V' (shape (O, S)): add the output layer's weight")
        O = np.shape(params["V"])[0] if np.ndim(params["V"]) == 2 else -1
        expected.update({"V": (O, cell.state_sizes[0]), "c": (O,)})
    missing = [n for n in expected if n not in params]
    if missing:
        raise ValueError(f"params is missing {', '.join(missing)} for {cell.name}; expected {_shapes(expected)}")
    extra = [n for n in params if n not in expected and (head or n not in ("V", "c"))]
    if extra:
        raise ValueError(f"params has unexpected {', '.join(extra)} for {cell.name}; expected {_shapes(expected)}")
    out = {}
    for n, shape in expected.items():
        arr = as_float64(f"parameter {n!r}", params[n])
        if arr.shape != shape:
            raise ValueError(
                f"parameter {n!r} has shape {arr.shape} but {cell.name} with input size {input_size} "
                f"needs {shape}; check hidden_size/input_size/output_size"
            )
        out[n] = arr
    return out


def _shapes(d: dict[str, tuple[int, ...]]) -> str:
    return "{" + ", ".join(f"{n}: {s}" for n, s in d.items()) + "}"


def check_input(x: Any) -> Array:
    x = as_float64("x", x)
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"x must be a non-empty (T, B, F) array (time-major), got shape {x.shape}")
    return x


def check_state0(cell: Cell, state0: Any, batch: int) -> State:
    sizes = cell.state_sizes
    if state0 is None:
        return tuple(np.zeros((batch, s)) for s in sizes)
    if isinstance(state0, np.ndarray) or not isinstance(state0, (tuple, list)):
        state0 = (state0,)
    if len(state0) != len(sizes):
        raise ValueError(f"state0 for {cell.name} must be {len(sizes)} array(s) of shapes (B, S), got {len(state0)}")
    out = []
    for k, (s, size) in enumerate(zip(state0, sizes)):
        s = as_float64(f"state0[{k}]", s)
        if s.shape != (batch, size):
            raise ValueError(f"state0[{k}] must have shape ({batch}, {size}), got {s.shape}")
        out.append(s)
    return tuple(out)


def check_target(target: Any, head: str, T: int, B: int, O: int, last_only: bool) -> Array:
    lead = (B,) if last_only else (T, B)
    where = "(B,) with loss_steps='last'" if last_only else "(T, B)"
    if head == "softmax":
        y = np.asarray(target)
        if y.shape != lead or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"softmax head needs integer class targets of shape {where}, got {y.dtype} {y.shape}")
        if y.min() < 0 or y.max() >= O:
            raise ValueError(f"class targets must be in [0, {O}) (O = rows of V), got [{y.min()}, {y.max()}]")
        return y if not last_only else y[None]
    y = as_float64("target", target)
    if y.shape != (*lead, O):
        raise ValueError(f"squared-error head needs float targets of shape {where[:-1]}, {O}), got {y.shape}")
    return y if not last_only else y[None]


# --------------------------------------------------------------------------------------------------
def run_forward(cell: Cell, p: Params, x: Array, state0: State) -> tuple[list[State], list[Any]]:
    """s_1..s_T (each a state tuple) and the per-step caches."""
    states, caches, state = [], [], state0
    for t in range(x.shape[0]):
        state, cache = cell.step(p, x[t], state)  # s_t = cell(x_t, s_{t-1})
        states.append(state)
        caches.append(cache)
    return states, caches


def head_loss(head: str, z: Array, y: Array) -> tuple[float, Array]:
    """Loss Σ E_t and ∂L/∂z_t for the head's pre-activation ``z`` (n, B, O)."""
    if head == "softmax":
        z_max = z.max(axis=-1, keepdims=True)
        log_y_hat = z - z_max - np.log(np.exp(z - z_max).sum(axis=-1, keepdims=True))  # log softmax(z_t)
        picked = np.take_along_axis(log_y_hat, y[..., None], axis=-1)
        loss = -picked.sum()  # E_t = -log ŷ_t[y_t]   (= -Σ y_t log ŷ_t with one-hot y_t)
        dz = np.exp(log_y_hat)  # ∂E_t/∂z_t = ŷ_t - y_t   (softmax + cross-entropy, one-hot y_t)
        np.put_along_axis(dz, y[..., None], np.take_along_axis(dz, y[..., None], axis=-1) - 1.0, axis=-1)
        return float(loss), dz
    diff = z - y
    return float(0.5 * (diff * diff).sum()), diff  # E_t = ½‖ŷ_t - y_t‖², ∂E_t/∂ŷ_t = ŷ_t - y_t


def run_backward(
    cell: Cell,
    p: Params,
    caches: list[Any],
    ds_head: Array,
    loss_steps: list[int],
    grads: Params,
    truncate: int | None,
    truncation: str,
    F: int,
) -> tuple[Array, State, State]:
    """Backpropagate ∂E_t/∂s_t (``ds_head`` (T, B, S_0)) through time; returns ∂L/∂x, ∂L/∂s_0, ∂L/∂s_t."""
    T, B = ds_head.shape[:2]
    sizes = cell.state_sizes
    dx = np.zeros((T, B, F))
    dstates = tuple(np.zeros((T, B, s)) for s in sizes)

    def zeros() -> State:
        return tuple(np.zeros((B, s)) for s in sizes)

    def through(t: int, d: State) -> State:
        """Record ∂L/∂s_{t+1} (array index t), then push it back through step t to ∂L/∂s_t."""
        for acc, dk in zip(dstates, d):
            acc[t] += dk
        d_prev, dx_t = cell.step_backward(p, caches[t], d, grads)
        dx[t] += dx_t
        return d_prev

    if truncation == "window" and truncate is not None:
        dstate0 = zeros()
        for j in loss_steps:  # E at array index j sits on s_{j+1}; it may reach s_{j+1}, …, s_{j+2-k}
            d: State = (ds_head[j], *zeros()[1:])
            for t in range(j, max(j - truncate, -1), -1):  # k steps back at most
                d = through(t, d)
            if j + 1 < truncate:  # the window reached past the start: s_0 is inside it
                dstate0 = tuple(a + b for a, b in zip(dstate0, d))
            # else: d is ∂E/∂s_{j+1-k}, the gradient the truncation cuts
        return dx, dstate0, dstates

    d = zeros()  # ∂L/∂s_T from later steps: nothing
    for t in reversed(range(T)):
        d = (d[0] + ds_head[t], *d[1:])  # ∂L/∂s_t = ∂E_t/∂s_t + (∂L/∂s_{t+1})(∂s_{t+1}/∂s_t)
        d = through(t, d)  # now ∂L/∂s_{t} in 1-based terms: the state step t consumed
        if truncate is not None and t % truncate == 0 and t > 0:
            d = zeros()  # chunk boundary: the carried state was detached here
    return dx, d, dstates


def _prepare(
    cell: Cell,
    params: Params,
    x: Any,
    target: Any,
    head: str,
    state0: Any,
    truncate: Any,
    truncation: str,
    loss_steps: str,
) -> tuple[Params, Array, State, Array, list[int]]:
    """Validate everything once; returns float64 params, x, s_0, targets and the steps that carry a loss."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}: use one of {', '.join(HEADS)}")
    if truncation not in TRUNCATIONS:
        raise ValueError(f"unknown truncation {truncation!r}: use one of {', '.join(TRUNCATIONS)}")
    if loss_steps not in ("all", "last"):
        raise ValueError(f"loss_steps must be 'all' or 'last', got {loss_steps!r}")
    x = check_input(x)
    T, B, F = x.shape
    if truncate is not None:
        if not isinstance(truncate, (int, np.integer)) or isinstance(truncate, bool) or truncate < 1:
            raise ValueError(f"truncate must be a positive number of steps or None, got {truncate!r}")
        if T < truncate:
            raise ValueError(
                f"the sequence (T={T}) is shorter than the truncation window (truncate={truncate}); "
                f"use truncate <= {T} or None for full BPTT"
            )
    p = check_params(cell, params, F, head=True)
    s0 = check_state0(cell, state0, B)
    last_only = loss_steps == "last"
    y = check_target(target, head, T, B, p["V"].shape[0], last_only)
    return p, x, s0, y, [T - 1] if last_only else list(range(T))


def bptt(
    cell: Cell,
    params: Params,
    x: Any,
    target: Any,
    *,
    head: Literal["softmax", "mse"] = "softmax",
    state0: Any = None,
    truncate: int | None = None,
    truncation: Literal["window", "chunk"] = "window",
    loss_steps: Literal["all", "last"] = "all",
) -> BPTTResult:
    """Forward pass, loss and hand-written backward pass of ``cell`` over ``x`` (T, B, F).

    ``params`` holds the cell's parameters under rnnkit/torch names plus the head's ``V`` (O, S) and ``c`` (O,).
    ``target``: class indices (T, B) for ``head="softmax"``, values (T, B, O) for ``head="mse"``; with
    ``loss_steps="last"`` only ``E_T`` counts and the target is (B,) / (B, O). ``state0``: the initial state
    (one (B, S) array, or a tuple for LSTMs); zeros when omitted. ``truncate=k``: backpropagate at most k
    steps (see the module docstring for ``truncation``).
    """
    p, x, s0, y, steps = _prepare(cell, params, x, target, head, state0, truncate, truncation, loss_steps)
    states, caches = run_forward(cell, p, x, s0)
    s = np.stack([st[0] for st in states])  # s_1..s_T: (T, B, S)
    z = s @ p["V"].T + p["c"]  # z_t = V s_t + c: (T, B, O)
    loss, dz_steps = head_loss(head, z[steps], y)
    dz = np.zeros_like(z)
    dz[steps] = dz_steps  # ∂L/∂z_t, zero where no loss is taken

    grads = {n: np.zeros_like(v) for n, v in p.items()}
    grads["V"] = np.einsum("tbo,tbs->os", dz, s)  # ∂E/∂V = Σ_t (ŷ_t - y_t) s_tᵀ   (∂E/∂V)
    grads["c"] = dz.sum(axis=(0, 1))  # ∂E/∂c = Σ_t (ŷ_t - y_t)
    ds_head = dz @ p["V"]  # ∂E_t/∂s_t = Vᵀ (ŷ_t - y_t): (T, B, S)
    dx, dstate0, dstates = run_backward(cell, p, caches, ds_head, steps, grads, truncate, truncation, x.shape[2])
    return BPTTResult(
        loss=loss,
        grads=grads,
        dx=dx,
        dstate0=dstate0,
        dstates=dstates,
        states=tuple(np.stack([st[k] for st in states]) for k in range(len(cell.state_sizes))),
        logits=z,
    )


def loss(
    cell: Cell,
    params: Params,
    x: Any,
    target: Any,
    *,
    head: Literal["softmax", "mse"] = "softmax",
    state0: Any = None,
    loss_steps: Literal["all", "last"] = "all",
) -> float:
    """L alone (forward pass only), with :func:`bptt`'s arguments: what finite differences evaluate."""
    p, x, s0, y, steps = _prepare(cell, params, x, target, head, state0, None, "window", loss_steps)
    states, _ = run_forward(cell, p, x, s0)
    z = np.stack([st[0] for st in states]) @ p["V"].T + p["c"]
    return head_loss(head, z[steps], y)[0]


def forward(cell: Cell, params: Params, x: Any, state0: Any = None) -> State:
    """The states s_1..s_T of ``cell`` over ``x`` (T, B, F), one (T, B, S_k) array per state component."""
    x = check_input(x)
    p = check_params(cell, params, x.shape[2], head=False)
    states, _ = run_forward(cell, p, x, check_state0(cell, state0, x.shape[1]))
    return tuple(np.stack([st[k] for st in states]) for k in range(len(cell.state_sizes)))
