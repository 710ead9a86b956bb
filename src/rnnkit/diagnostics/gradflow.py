"""How far back does the gradient reach? ‖∂L_T/∂h_t‖ against the distance T − t, measured.

RNN tutorials write the gradient reaching step t from a loss at step T as a product of per-step factors,
``∂L_T/∂h_t = ∂L_T/∂h_T · ∏_{i=t+1}^{T} ∂h_i/∂h_{i-1}``; for an Elman cell each factor is
``diag(f'(a_i)) W``, so the norm shrinks (vanishes) or grows (explodes) geometrically with T − t
depending on the size of ``W`` (its spectral radius ρ) and the saturation of ``f``. This module measures
that norm for a real model and batch: the model is an rnnkit layer with a linear read-out trained (or not)
on the adding problem; ``L_T = ½ (ŷ_T − y)²`` per sequence is its loss at the last step; the per-step
gradients ``∂L_T/∂h_t`` come from the hand-written NumPy BPTT (:mod:`rnnkit.numpy_bptt`, float64) on a
copy of the weights, and are averaged over the batch.

Conditions per cell: ``init`` (torch's default init), ``init ρ=r`` (every H×H gate block of ``weight_hh``
rescaled to spectral radius r), ``trained`` and ``trained+clip`` (``train_steps`` steps of the one training
loop, without / with gradient-norm clipping, from the default init or from ``train_radius``). A run that
diverges (NaN/inf loss) is reported as such.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from rnnkit import numpy_bptt as nb
from rnnkit.atomic import save_figure
from rnnkit.rnn import CELL_NAMES
from rnnkit.tasks.longrange import AddingTask, SequenceModel, adding_problem

log = logging.getLogger("rnnkit.gradflow")


#: cells whose recurrence has no matrix to measure or rescale
NO_RECURRENT_MATRIX = ("indrnn", "mingru", "minlstm")


@dataclass
class GradFlowConfig:
    """Settings of ``rnnkit gradflow``."""

    cells: tuple[str, ...] = ("rnn", "gru", "lstm")
    """cells to measure: rnn (Elman, tanh), gru, lstm, peephole, jordan, mgu (not indrnn, mingru, minlstm: no matrix)"""
    hidden_size: int = 64
    """hidden units"""
    seq_len: int = 100
    """sequence length T of the adding problem; distances T - t run from 0 to T - 1"""
    batch_size: int = 64
    """sequences the gradient norms are averaged over (and the training batch size)"""
    radii: tuple[float, ...] = (0.5, 2.0)
    """spectral radii to rescale the recurrent weights to at init (below 1: vanishing, above 1: exploding)"""
    train_steps: int = 200
    """steps of brief training on the adding problem for the trained conditions (0 = skip them)"""
    optimizer: Literal["adamw", "sgd"] = "adamw"
    """optimizer of the brief training (plain SGD shows what clipping is for; AdamW rescales steps itself)"""
    lr: float = 3e-3
    """learning rate of the brief training"""
    clip_norm: float = 1.0
    """gradient-norm clipping of the trained+clip condition"""
    train_radius: float = 0.0
    """start the trained conditions from recurrent weights rescaled to this spectral radius (0 = default init)"""
    forget_bias: float = 0.0
    """added to the LSTM forget-gate biases at init (torch: 0; Jozefowicz et al. 2015: 1)"""
    seed: int = 0
    """seed for the initialisation, the training batches and the measured batch"""
    out: str = "runs/gradflow"
    """output folder: gradflow.png, gradflow.json"""

    def __post_init__(self) -> None:
        bad = [c for c in self.cells if c not in CELL_NAMES]
        if bad or not self.cells:
            raise ValueError(f"cells must be a comma list of {', '.join(CELL_NAMES)}, got {','.join(self.cells)}")
        flat = [c for c in self.cells if c in NO_RECURRENT_MATRIX]
        if flat:
            names = ", ".join(flat)
            raise ValueError(
                f"gradflow rescales a recurrent matrix's spectral radius, and {names} has none (IndRNN: a vector; "
                f"minGRU, minLSTM: nothing): leave {names} out of --cells"
            )
        for name in ("hidden_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.seq_len < 2:
            raise ValueError(
                f"seq_len must be at least 2 (the adding problem marks one step per half), got {self.seq_len}"
            )
        if any(not r > 0 for r in self.radii):
            raise ValueError(f"radii must be positive numbers, got {self.radii}")
        if self.train_steps < 0 or self.lr <= 0 or self.clip_norm <= 0 or self.train_radius < 0:
            raise ValueError("train_steps and train_radius must be >= 0, lr and clip_norm > 0")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be adamw or sgd, got {self.optimizer!r}")


def table_distances(seq_len: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, … below ``seq_len``, and the farthest distance ``seq_len - 1``."""
    out, base = [], 1
    while base < seq_len:
        out.extend(d for d in (base, 2 * base, 5 * base) if d < seq_len)
        base *= 10
    return sorted(set(out) | {seq_len - 1})


def spectral_radius(layer: torch.nn.Module) -> float:
    """The largest spectral radius among the H×H gate blocks of the recurrent weight (``weight_hh``/``weight_yh``)."""
    w = _recurrent_weight(layer).detach().double()
    blocks = w.split(w.shape[1], dim=0) if w.shape[0] % w.shape[1] == 0 else (w,)
    return max(float(torch.linalg.eigvals(b).abs().max()) for b in blocks)


def set_spectral_radius(layer: torch.nn.Module, radius: float) -> None:
    """Rescale every H×H gate block of the recurrent weight in place so that its spectral radius is ``radius``."""
    w = _recurrent_weight(layer)
    if w.shape[0] % w.shape[1]:
        raise ValueError(f"cannot rescale a {tuple(w.shape)} recurrent weight block by block (projected LSTM?)")
    with torch.no_grad():
        for block in w.split(w.shape[1], dim=0):
            block.mul_(radius / float(torch.linalg.eigvals(block.double()).abs().max()))


def _recurrent_weight(layer: torch.nn.Module) -> torch.Tensor:
    for name in ("weight_hh_l0", "weight_yh_l0"):
        if hasattr(layer, name):
            return getattr(layer, name)
    raise ValueError("no recurrent weight (weight_hh_l0 / weight_yh_l0) on this layer")


def gradient_norms(model: SequenceModel, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Mean over the batch of ‖∂L_T/∂h_t‖ for t = 1..T, as a (T,) array; ``x`` (B, T, F), ``y`` (B,)."""
    cell = nb.cell_from_layer(model.rnn)
    params = nb.params_from_torch(model.rnn, head=model.head)
    xs = x.detach().double().transpose(0, 1).numpy()  # (T, B, F): the reference is time-major
    target = y.detach().double().reshape(-1, 1).numpy()  # (B, 1)
    result = nb.bptt(cell, params, xs, target, head="mse", loss_steps="last")  # L = Σ_b ½ (ŷ_T - y)²
    dh = result.dstates[0]  # (T, B, H): ∂L_T/∂h_t, per sequence (sequences do not interact)
    return np.linalg.norm(dh, axis=-1).mean(axis=1)


def lm_gradient_norms(
    model: torch.nn.Module, ids: torch.Tensor, steps: int = 100, windows: int = 16, carried: Any = None
) -> np.ndarray:
    """‖∂L_T/∂s_t‖ of a trained language model on real text, for every layer at once.

    ``windows`` windows of ``steps`` tokens, spread evenly over ``ids`` (N,), each start from the state the
    model carries there (one plain pass over the text); ``L_T`` is the next-token loss after a window's last
    token and ``s_t`` each layer's recurrent state (``h``; Jordan's ``y``) entering step t + 1. The state is
    fed one step at a time with a zero tensor added to it, so that the gradient of that tensor is the total
    derivative ∂L_T/∂s_t through every later step and layer; the steps are the cells' own one-step equations
    (``cell.step``), far cheaper per step than a layer call. Returns a (num_layers, steps) array, mean over
    windows, whose column d - 1 holds distance d = T − t. ``carried(p)``, when given, is the model's state
    after ``ids[:p]`` (a caller that has every state saves the plain pass).
    """
    ids = torch.as_tensor(ids).reshape(-1)
    steps = min(steps, len(ids) - 1)
    if steps < 1:
        raise ValueError(f"measuring gradient flow needs at least 2 tokens, got {len(ids)}")
    starts = np.unique(np.linspace(0, len(ids) - 1 - steps, max(1, windows)).round().astype(int)).tolist()
    model.eval()
    kept, state, pos = [], None, 0
    with torch.no_grad():  # the carried state at each window start
        for p in starts:
            if carried is not None and p > 0:
                state = carried(p)
            elif p > pos:
                _, state = model(ids[None, pos:p], state)
                pos = p
            kept.append(_as_tuple(model.init_state(1) if state is None else state))
    state = tuple(torch.cat([s[i] for s in kept], dim=1) for i in range(len(kept[0])))  # (L, K, S) each
    inputs = model._inputs(torch.stack([ids[p : p + steps] for p in starts]))  # (K, steps, F)
    target = torch.stack([ids[p + steps] for p in starts])
    layers = [(model.rnn.cells[k], model.rnn.weights(k)) for k in range(model.rnn.num_layers)]
    states = [tuple(s[k] for s in state) for k in range(len(layers))]  # per layer: (K, size) components
    threads = torch.get_num_threads()
    # one thread for the loop: its (windows, units) operations are too small to share out, and on a busy machine
    # waiting for a second thread made them up to 10x slower (measured: 1.2 s against 2.5-20 s for this loop)
    torch.set_num_threads(1)
    try:
        grads = _probed_steps(model, layers, states, inputs, target)
    finally:
        torch.set_num_threads(threads)
    norms = torch.stack([g.norm(dim=-1).mean(dim=1) for g in grads], dim=1)  # (L, steps), column t: s_t
    return norms.flip(1).detach().cpu().double().numpy()


def _probed_steps(model: Any, layers: list, states: list, inputs: torch.Tensor, target: torch.Tensor) -> Any:
    """The steps of :func:`lm_gradient_norms`, a zero probe added to each layer's fed state; the probes' gradients."""
    import torch.nn.functional as F

    probes = []
    with torch.enable_grad():
        for t in range(inputs.shape[1]):
            probe = states[0][0].new_zeros((len(layers), *states[0][0].shape)).requires_grad_()  # (L, K, S)
            probes.append(probe)
            x = inputs[:, t]
            for k, (cell, w) in enumerate(layers):
                s = states[k]
                states[k], _ = cell.step(x, (s[0] + probe[k], *s[1:]), w)
                x = states[k][0]  # a layer's output is its first state (h; Jordan's y)
        loss = F.cross_entropy(model.head(x), target, reduction="sum")  # Σ over windows: each its own L_T
        return torch.autograd.grad(loss, probes)


def _as_tuple(state: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return (state,) if isinstance(state, torch.Tensor) else tuple(state)


def train_briefly(model: SequenceModel, task: AddingTask, cfg: GradFlowConfig, clip_norm: float) -> str | None:
    """``cfg.train_steps`` steps of the one training loop; ``None``, or why training diverged."""
    from rnnkit.train import NonFiniteLossError, OptimConfig, TrainConfig, train

    tcfg = TrainConfig(
        steps=cfg.train_steps,
        eval_every=cfg.train_steps,
        log_every=cfg.train_steps,
        seed=cfg.seed,
        plot=False,
        optim=OptimConfig(name=cfg.optimizer, lr=cfg.lr, clip_norm=clip_norm),
    )
    quiet = logging.getLogger("rnnkit.train")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory(prefix="rnnkit-gradflow-") as tmp:
            train(model, task, tcfg, out_dir=tmp)
    except NonFiniteLossError as e:
        return str(e).split(":")[0]
    finally:
        quiet.setLevel(level)
    return None


def gradient_flow(cfg: GradFlowConfig, progress: Any = None) -> dict[str, dict[str, Any]]:
    """Measure every condition for every cell: ``{cell: {condition: {"norms": (T,) array, "rho": ρ, …}}}``."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    x, y = adding_problem(cfg.batch_size, cfg.seq_len, gen)  # the measured batch, the same for every condition
    task = AddingTask(cfg.seq_len, batch_size=cfg.batch_size, val_size=256, seed=cfg.seed + 2)
    start = cfg.train_radius or None
    results: dict[str, dict[str, Any]] = {}
    for cell in cfg.cells:
        conditions: list[tuple[str, float | None, float | None]] = [("init", None, None)]
        conditions += [(f"init ρ={r:g}", r, None) for r in cfg.radii]
        if cfg.train_steps:
            trained = "trained" + (f" from ρ={start:g}" if start else "")
            conditions += [(trained, start, 0.0), (f"{trained}+clip{cfg.clip_norm:g}", start, cfg.clip_norm)]
        results[cell] = {}
        for name, radius, clip in conditions:
            torch.manual_seed(cfg.seed)  # the same initial weights for every condition of a cell
            model = SequenceModel(cell, 2, cfg.hidden_size, 1, forget_bias=cfg.forget_bias)
            if radius is not None:
                set_spectral_radius(model.rnn, radius)
            entry: dict[str, Any] = {}
            diverged = train_briefly(model, task, cfg, clip) if clip is not None else None
            if diverged:
                entry.update(diverged=diverged, rho=float("nan"), mse=float("nan"))
                entry["norms"] = np.full(cfg.seq_len, np.nan)
            else:
                with torch.no_grad():
                    entry["mse"] = task.evaluate(model)["mse"]
                entry["rho"] = spectral_radius(model.rnn)
                entry["norms"] = gradient_norms(model, x, y)
            results[cell][name] = entry
            if progress is not None:
                progress.update(1)
    return results


def format_table(results: dict[str, dict[str, Any]], seq_len: int) -> str:
    """One row per (cell, condition): ρ, validation MSE, then ‖∂L_T/∂h_t‖ at each distance T − t."""
    dists = [0, *table_distances(seq_len)]
    width = max(18, *(len(n) + 2 for conds in results.values() for n in conds))
    head = f"{'cell':<9}{'condition':<{width}}{'ρ(W_hh)':>8}{'MSE':>7}" + "".join(f"{'d=' + str(d):>10}" for d in dists)
    lines = [head, "-" * len(head)]
    for cell, conds in results.items():
        for name, e in conds.items():
            if e.get("diverged"):
                lines.append(f"{cell:<9}{name:<{width}}  diverged: {e['diverged']}")
                continue
            norms = e["norms"]  # index t-1 holds step t; distance d = T - t sits at index T-1-d
            vals = "".join(f"{norms[seq_len - 1 - d]:>10.2e}" for d in dists)
            lines.append(f"{cell:<9}{name:<{width}}{e['rho']:>8.2f}{e['mse']:>7.3f}{vals}")
    return "\n".join(lines)


def plot(results: dict[str, dict[str, Any]], seq_len: int, path: Path, title: str = "") -> None:
    """One panel per cell: ‖∂L_T/∂h_t‖ against T − t on a log scale, one line per condition."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(results), 3.6))
    axes = fig.subplots(1, len(results), sharey=True, squeeze=False)
    d = np.arange(seq_len)
    for ax, (cell, conds) in zip(axes[0], results.items()):
        for name, e in conds.items():
            if e.get("diverged"):
                ax.plot([], [], label=f"{name}: diverged")  # keeps the legend honest
                continue
            norms = np.maximum(e["norms"][::-1], 1e-300)  # reversed: index = distance T - t
            label = name if name.startswith("init ρ") else f"{name} (ρ={e['rho']:.2f})"
            ax.semilogy(d, norms, label=label, lw=1.5)
        ax.set_title(cell.upper() if cell != "peephole" else "Peephole LSTM")
        ax.set_xlabel("distance T − t (steps)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("‖∂L_T/∂h_t‖ (mean over batch)")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from rnnkit.config import parse_config, to_dict

    argv = list(sys.argv[1:] if argv is None else argv)
    argv = [x for a in argv for x in (["--preset", "quick"] if a == "--quick" else [a])]  # --quick: CI-size run
    cfg, _ = parse_config(
        GradFlowConfig,
        argv,
        prog="rnnkit gradflow",
        description="Measure ‖∂L_T/∂h_t‖ against the distance T - t for RNN/GRU/LSTM (vanishing vs exploding). "
        "--quick (= --preset quick) is a CI-size run.",
        presets={"quick": {"hidden_size": 8, "seq_len": 12, "batch_size": 8, "train_steps": 5}},
    )
    out = Path(cfg.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"rnnkit gradflow: error: cannot create {cfg.out!r}: {e.strerror}", file=sys.stderr)
        return 1
    n = len(cfg.cells) * (1 + len(cfg.radii) + (2 if cfg.train_steps else 0))
    with tqdm(total=n, desc="gradflow", unit="condition", leave=False, dynamic_ncols=True, disable=None) as bar:
        try:
            results = gradient_flow(cfg, progress=bar)
        except (ValueError, np.linalg.LinAlgError) as e:
            print(f"rnnkit gradflow: error: {e}", file=sys.stderr)
            return 1
    print(f"‖∂L_T/∂h_t‖ at distance d = T - t (adding problem, T={cfg.seq_len}, H={cfg.hidden_size}, "
          f"mean over {cfg.batch_size} sequences)")  # fmt: skip
    print(format_table(results, cfg.seq_len))
    png = out / "gradflow.png"
    plot(results, cfg.seq_len, png, title=f"adding problem, T={cfg.seq_len}, H={cfg.hidden_size}")
    record = {"config": to_dict(cfg), "results": {c: {k: {**v, "norms": v["norms"].tolist()} for k, v in conds.items()}
                                                  for c, conds in results.items()}}  # fmt: skip
    (out / "gradflow.json").write_text(json.dumps(record, indent=1))
    print(f"wrote {png} and {out / 'gradflow.json'}")
    return 0


__all__ = [
    "GradFlowConfig",
    "format_table",
    "gradient_flow",
    "gradient_norms",
    "lm_gradient_norms",
    "plot",
    "set_spectral_radius",
    "spectral_radius",
    "table_distances",
]
