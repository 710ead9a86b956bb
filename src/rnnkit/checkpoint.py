"""Checkpoints: one folder, weights in safetensors, everything else in JSON; written atomically; loaded without pickle.

A checkpoint folder holds

* ``model.safetensors`` — the model's ``state_dict`` (tied weights stored once);
* ``train_state.safetensors`` — every other tensor: optimizer moments (``optim.<param>.<key>``), the
  carried recurrent state (``carry.<k>``) and the torch RNG state (``rng.torch``);
* ``state.json`` — the rest: configs, task metadata (vocabulary, corpus fingerprint), step, metrics,
  optimizer hyper-parameters and scalars, scheduler state, numpy/python RNG states.

Writing goes to a fresh temporary folder beside the target, then two renames swap it in; an interrupted
write leaves the previous checkpoint untouched (or, in the instant between the two renames, under a
``.old-`` name that :func:`resolve_checkpoint` falls back to). Reading uses only safetensors and JSON, so
a checkpoint from an untrusted source cannot run code.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

FORMAT = 1
MODEL_FILE = "model.safetensors"
TENSORS_FILE = "train_state.safetensors"
STATE_FILE = "state.json"


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``state`` (the JSON), the model's tensors and the other tensors."""

    path: Path
    state: dict[str, Any]
    model_tensors: dict[str, Tensor]
    tensors: dict[str, Tensor] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return int(self.state.get("step", 0))


# ------------------------------------------------------------------------------------------------
# writing
def _unique_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """``state_dict`` with each storage once (tied weights): safetensors refuses aliased tensors."""
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    out: dict[str, Tensor] = {}
    for name, t in model.state_dict().items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen:
            continue
        seen[key] = name
        out[name] = t.detach().contiguous().cpu()
    return out


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    path: str | Path, model: nn.Module, state: dict[str, Any], tensors: dict[str, Tensor] | None = None
) -> Path:
    """Write a checkpoint folder at ``path`` atomically (replacing an existing one only once complete)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent))
    try:
        save_file(_unique_state_dict(model), str(tmp / MODEL_FILE), metadata={"format": str(FORMAT)})
        save_file({k: v.detach().contiguous().cpu() for k, v in (tensors or {}).items()}, str(tmp / TENSORS_FILE))
        _write_json(tmp / STATE_FILE, {"format": FORMAT, **state})  # last: its presence marks a complete folder
        for name in (MODEL_FILE, TENSORS_FILE):
            _fsync(tmp / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.parent / f".old-{path.name}-{os.getpid()}"
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


# ------------------------------------------------------------------------------------------------
# reading
def resolve_checkpoint(path: str | Path, prefer: str = "best") -> Path:
    """The checkpoint folder for ``path``: itself, or inside a run directory ``prefer`` (best/last) or the other.

    Raises ValueError with one line when there is none.
    """
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    for name in (prefer, "last" if prefer == "best" else "best"):
        if (path / name / STATE_FILE).is_file():
            return path / name
    # an interrupted swap (crash between the two renames) leaves the complete old folder under .old-NAME-pid
    for name in (path.name, prefer):
        parent = path.parent if name == path.name else path
        olds = sorted(parent.glob(f".old-{name}-*"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in olds:
            if (old / STATE_FILE).is_file():
                return old
    if not path.exists():
        raise ValueError(f"checkpoint {str(path)!r} does not exist: pass a run directory (--out of rnnkit train) "
                         "or its best/ or last/ folder")  # fmt: skip
    raise ValueError(f"{str(path)!r} holds no checkpoint ({STATE_FILE} missing): pass a run directory or its "
                     "best/ or last/ folder")  # fmt: skip


def load_checkpoint(path: str | Path, prefer: str = "best") -> Checkpoint:
    """Read a checkpoint folder (or a run directory's ``prefer`` checkpoint); no pickle involved."""
    folder = resolve_checkpoint(path, prefer)
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        model_tensors = load_file(str(folder / MODEL_FILE))
        tensors = load_file(str(folder / TENSORS_FILE)) if (folder / TENSORS_FILE).is_file() else {}
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"checkpoint {str(folder)!r} is unreadable or corrupt: {e}") from None
    except Exception as e:  # safetensors raises its own error type on a damaged header
        raise ValueError(f"checkpoint {str(folder)!r} is unreadable or corrupt: {e}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(
            f"checkpoint {str(folder)!r} has an unknown format {state.get('format')!r} (expected {FORMAT})"
        )
    return Checkpoint(folder, state, model_tensors, tensors)


def load_model_weights(model: nn.Module, ckpt: Checkpoint) -> None:
    """Copy the checkpoint's weights into ``model``; a mismatch is one ValueError naming the differing tensors."""
    own = model.state_dict()
    saved = ckpt.model_tensors
    stored_once = _unique_state_dict(model)
    missing = sorted(k for k in stored_once if k not in saved)
    unexpected = sorted(k for k in saved if k not in own)
    shapes = sorted(f"{k} {tuple(saved[k].shape)} vs {tuple(own[k].shape)}"
                    for k in saved if k in own and saved[k].shape != own[k].shape)  # fmt: skip
    if missing or unexpected or shapes:
        parts = [f"missing {', '.join(missing[:5])}" if missing else "",
                 f"unexpected {', '.join(unexpected[:5])}" if unexpected else "",
                 f"shape {'; '.join(shapes[:5])}" if shapes else ""]  # fmt: skip
        raise ValueError(f"checkpoint {str(ckpt.path)!r} does not fit this model: {'; '.join(p for p in parts if p)}")
    with torch.no_grad():
        for k, v in saved.items():
            own[k].copy_(v)


# ------------------------------------------------------------------------------------------------
# optimizer, carried state and RNG <-> (JSON, tensors)
def optimizer_to_json(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Split ``optimizer.state_dict()`` into JSON (hyper-parameters, scalars) and tensors (``optim.<p>.<key>``)."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return {"param_groups": sd["param_groups"], "scalars": scalars}, tensors


def optimizer_from_json(optimizer: torch.optim.Optimizer, js: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, scalars in js.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(scalars)
    groups = [{**g, **({"betas": tuple(g["betas"])} if "betas" in g else {})} for g in js["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def carry_to_tensors(carry: Any) -> tuple[Any, dict[str, Tensor]]:
    """The loop's carried state (None, a tensor or a tuple of tensors) as (JSON layout, tensors)."""
    if carry is None:
        return None, {}
    if isinstance(carry, Tensor):
        return "tensor", {"carry.0": carry}
    if isinstance(carry, (tuple, list)) and all(isinstance(t, Tensor) for t in carry):
        return len(carry), {f"carry.{k}": t for k, t in enumerate(carry)}
    raise TypeError(f"cannot checkpoint a carried state of type {type(carry).__name__}: return None, a tensor or a "
                    "tuple of tensors from Task.loss")  # fmt: skip


def carry_from_tensors(layout: Any, tensors: dict[str, Tensor], device: Any = None) -> Any:
    if layout is None:
        return None
    if layout == "tensor":
        return tensors["carry.0"].to(device)
    return tuple(tensors[f"carry.{k}"].to(device) for k in range(int(layout)))


def rng_state() -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Python, numpy and torch (and CUDA) RNG states as (JSON, tensors)."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    js = {
        "python": [version, list(internal), gauss],
        "numpy": [np_name, np_keys.tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
    }
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for k, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{k}"] = s
    return js, tensors


def set_rng_state(js: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    version, internal, gauss = js["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = js["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
