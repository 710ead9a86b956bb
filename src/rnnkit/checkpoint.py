"""Checkpoints: one folder, weights in safetensors, everything else in JSON; written atomically; loaded without pickle.

A checkpoint folder holds

* ``model.safetensors`` — the model's ``state_dict`` (tied weights stored once);
* ``train_state.safetensors`` — every other tensor: optimizer moments (``optim.<param>.<key>``), the
  carried recurrent state (``carry.<k>``) and the torch RNG state (``rng.torch``);
* ``state.json`` — the rest: configs, task metadata (vocabulary, corpus fingerprint), step, metrics,
  optimizer hyper-parameters and scalars, scheduler state, numpy/python RNG states, and the SHA-256 of
  the two tensor files (``files``), checked on every load: damaged bytes are refused, not loaded.

Writing goes to a fresh temporary folder beside the target, then two renames swap it in
(:func:`rnnkit.atomic.atomic_folder`); an interrupted write leaves the previous checkpoint untouched (or, in
the instant between the two renames, under a ``.old-`` name that loading falls back to and
:func:`recover_run` puts back). Reading uses only safetensors and JSON, so a checkpoint from an untrusted
source cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from rnnkit.atomic import atomic_file, atomic_folder, recover
from rnnkit.config import flatten, to_dict

log = logging.getLogger(__name__)

FORMAT = 2  # 2: state.json lists the SHA-256 of each tensor file (format 1, without them, still loads)
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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(
    path: str | Path, model: nn.Module, state: dict[str, Any], tensors: dict[str, Tensor] | None = None
) -> Path:
    """Write a checkpoint folder at ``path`` atomically (replacing an existing one only once complete).

    ``state.json`` records the SHA-256 of both tensor files; :func:`load_checkpoint` verifies them.
    """
    path = Path(path)
    with atomic_folder(path) as tmp:
        _save(_unique_state_dict(model), tmp / MODEL_FILE, metadata={"format": str(FORMAT)})
        _save({k: v.detach().contiguous().cpu() for k, v in (tensors or {}).items()}, tmp / TENSORS_FILE)
        files = {}
        for name in (MODEL_FILE, TENSORS_FILE):
            _fsync(tmp / name)
            files[name] = sha256_file(tmp / name)  # of the bytes on disk, read back after the write
        with atomic_file(tmp / STATE_FILE) as f:  # last: its presence marks a complete folder
            json.dump({**state, "format": FORMAT, "files": files}, f, indent=1, sort_keys=True)
        mode = (tmp / STATE_FILE).stat().st_mode & 0o777  # what open() gives under the umask; safetensors'
        for name in (MODEL_FILE, TENSORS_FILE):  # own files are private (0600)
            os.chmod(tmp / name, mode)
    return path


def _save(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors' save_file, with its I/O failures (full disk, size limit) raised as the OSError they are."""
    try:
        save_file(tensors, str(path), metadata=metadata)
    except OSError:
        raise
    except Exception as e:  # safetensors reports "I/O error: File too large (os error 27)" as its own type
        code = re.search(r"os error (\d+)", str(e))
        if code is None:
            raise
        raise OSError(int(code[1]), os.strerror(int(code[1])), str(path)) from None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------
# reading
def recover_run(out: str | Path) -> list[str]:
    """After a kill: put back a checkpoint caught mid-swap and delete half-written files in run directory
    ``out``; returns what was done, one line each."""
    return recover(out, complete=STATE_FILE)


def resolve_checkpoint(path: str | Path, prefer: str = "best") -> Path:
    """The checkpoint folder for ``path``: itself, or inside a run directory ``prefer`` (best/last) or the other.

    Raises ValueError with one line when there is none.
    """
    candidates = _candidates(Path(path), prefer)
    if candidates:
        return candidates[0]
    _no_checkpoint(Path(path))
    raise AssertionError  # unreachable


def _candidates(path: Path, prefer: str) -> list[Path]:
    """Complete checkpoint folders for ``path``, preferred first (a run directory gives best/ and last/)."""
    if (path / STATE_FILE).is_file():
        return [path]
    out = [path / n for n in (prefer, "last" if prefer == "best" else "best") if (path / n / STATE_FILE).is_file()]
    # an interrupted swap (crash between the two renames) leaves the complete old folder under .old-NAME-pid
    for name in (prefer, "last" if prefer == "best" else "best"):
        if not (path / name).exists():
            olds = sorted(path.glob(f".old-{name}-*"), key=lambda p: p.stat().st_mtime, reverse=True)
            out.extend(old for old in olds if (old / STATE_FILE).is_file())
    if not out:
        olds = sorted(path.parent.glob(f".old-{path.name}-*"), key=lambda p: p.stat().st_mtime, reverse=True)
        out.extend(old for old in olds if (old / STATE_FILE).is_file() and not path.exists())
    return out


def _no_checkpoint(path: Path) -> None:
    if not path.exists():
        raise ValueError(f"checkpoint {str(path)!r} does not exist: pass a run directory (--out of rnnkit train) "
                         "or its best/ or last/ folder")  # fmt: skip
    raise ValueError(f"{str(path)!r} holds no checkpoint ({STATE_FILE} missing): pass a run directory or its "
                     "best/ or last/ folder")  # fmt: skip


def has_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` (a run directory or a checkpoint folder) holds a complete checkpoint."""
    return bool(_candidates(Path(path), "last"))


def _read(folder: Path) -> Checkpoint:
    """Read and verify one checkpoint folder; ValueError (one line) when it is unreadable or damaged."""
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"checkpoint {str(folder)!r} is unreadable or corrupt: {STATE_FILE}: {e}") from None
    if not isinstance(state, dict) or state.get("format") not in (1, FORMAT):
        found = state.get("format") if isinstance(state, dict) else None
        raise ValueError(f"checkpoint {str(folder)!r} has an unknown format {found!r} (expected {FORMAT})")
    files = state.get("files")
    if state["format"] >= 2 and not isinstance(files, dict):  # format 1 predates checksums
        raise ValueError(f"checkpoint {str(folder)!r} is corrupt: {STATE_FILE} lists no file checksums")
    for name, digest in (files or {}).items():
        try:
            actual = sha256_file(folder / name)
        except OSError as e:
            raise ValueError(f"checkpoint {str(folder)!r} is damaged: cannot read {name} ({e.strerror})") from None
        if actual != digest:
            raise ValueError(f"checkpoint {str(folder)!r} is damaged: {name} does not match the SHA-256 recorded "
                             f"in {STATE_FILE} ({actual[:12]}… instead of {str(digest)[:12]}…)")  # fmt: skip
    try:
        model_tensors = load_file(str(folder / MODEL_FILE))
        tensors = load_file(str(folder / TENSORS_FILE)) if (folder / TENSORS_FILE).is_file() else {}
    except Exception as e:  # OSError, or safetensors' own error type on a damaged header
        raise ValueError(f"checkpoint {str(folder)!r} is unreadable or corrupt: {e}") from None
    return Checkpoint(folder, state, model_tensors, tensors)


def load_checkpoint(path: str | Path, prefer: str = "best") -> Checkpoint:
    """Read and verify a checkpoint folder, or a run directory's ``prefer`` checkpoint (best/ or last/).

    Every file is checked against the SHA-256 that ``state.json`` records. In a run directory a damaged
    checkpoint is passed over for the other one (best/ <-> last/) with a warning that says so; a damaged
    folder named directly is refused with one line that names the intact alternative, if there is one.
    No pickle is involved.
    """
    path = Path(path)
    candidates = _candidates(path, prefer)
    if not candidates:
        _no_checkpoint(path)
    errors = []
    for folder in candidates:
        try:
            saved = _read(folder)
        except ValueError as e:
            if folder == path:  # named directly: no silent substitute
                other = _sibling(folder)
                hint = f"; {str(other)!r} is intact: pass it, or the run directory" if other else ""
                raise ValueError(f"{e}{hint}") from None
            errors.append(str(e))
            continue
        if errors:
            log.warning("%s; using %s (step %d) instead", "; ".join(errors), folder, saved.step)
        return saved
    if len(errors) == 1:
        raise ValueError(errors[0])
    raise ValueError(f"no intact checkpoint in {str(path)!r}: " + "; ".join(errors))


def _sibling(folder: Path) -> Path | None:
    """The intact other checkpoint (best/ <-> last/) of a folder inside a run directory, if any."""
    if folder.name not in ("best", "last"):
        return None
    other = folder.parent / ("last" if folder.name == "best" else "best")
    try:
        _read(other)
    except ValueError:
        return None
    return other


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
# what must match for a resume
def model_signature(model: nn.Module) -> dict[str, Any]:
    """What must match for a resume: class, configuration and parameter shapes."""
    config = getattr(model, "config", None)
    return {
        "class": type(model).__name__,
        "config": to_dict(config) if config is not None and hasattr(config, "__dataclass_fields__") else None,
        "parameters": {k: list(v.shape) for k, v in model.state_dict().items()},
    }


def describe_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for each difference; long lists (vocabularies) summarised."""
    fa, fb = flatten(_as_json(saved)), flatten(_as_json(current))
    out = []
    for k in sorted(set(fa) | set(fb)):
        a, b = fa.get(k), fb.get(k)
        if a == b:
            continue
        if isinstance(a, list) and isinstance(b, list) and max(len(a), len(b)) > 8:
            sa, sb = {repr(x) for x in a}, {repr(x) for x in b}
            added, removed = sorted(sb - sa)[:5], sorted(sa - sb)[:5]
            out.append(f"{k}: {len(a)} -> {len(b)} entries (added {', '.join(added) or 'none'}; "
                       f"removed {', '.join(removed) or 'none'})")  # fmt: skip
        else:
            out.append(f"{k}: {a!r} -> {b!r}")
    return out


def _as_json(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` as it reads back from JSON (tuples become lists), so that a saved config compares equal to its source."""
    return json.loads(json.dumps(d))


def resume_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Why a checkpoint cannot continue with this model and task: config and metadata differences, else shapes."""

    def view(sig: dict[str, Any], shapes: bool) -> dict[str, Any]:
        model = {"class": sig["model"]["class"], **(sig["model"]["config"] or {})}
        if shapes:
            model["parameters"] = sig["model"]["parameters"]
        return {"model": model, "task": sig["task"]}

    return describe_differences(view(saved, False), view(current, False)) or describe_differences(
        view(saved, True), view(current, True)
    )


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
