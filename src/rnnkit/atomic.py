"""Every output rnnkit writes goes through here: a file or a folder is built under a temporary name beside its
target and renamed into place once complete, so a crash, a kill or a full disk never leaves half of it.

* :func:`atomic_file` — the one primitive for files (JSON reports, CSV, metrics, figures, downloads);
* :func:`atomic_folder` — the same for a folder (a checkpoint): the old folder is kept until the new one is in;
* :func:`recover` — after a kill: puts back a folder caught between its two renames and deletes the leftovers.

Temporary names start with a dot (``.NAME.XXXX.tmp``, ``.tmp-NAME-XXXX``, ``.old-NAME-PID``) so that a
listing of a run directory shows only finished outputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_file", "atomic_folder", "recover", "save_figure", "write_json", "write_text"]


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fresh(parent: Path, prefix: str, suffix: str, folder: bool) -> Path:
    """Create a new file or folder with a unique name in ``parent``, with the permissions a plain ``open`` or
    ``mkdir`` would give (tempfile's are private: 0600/0700, which would then be what the user gets)."""
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            if folder:
                os.mkdir(path, 0o777)  # the umask applies
            else:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {parent}")


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", **open_kw: Any) -> Iterator[IO[Any]]:
    """``with atomic_file(p) as f: f.write(...)``: ``p`` appears, complete and synced, only if the block succeeds.

    ``mode`` is ``"w"`` (text, UTF-8 unless ``encoding`` is given) or ``"wb"``; on an error (including
    KeyboardInterrupt) the temporary file is removed and ``p`` keeps its previous content.
    """
    path = Path(path)
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    if mode == "w":
        open_kw.setdefault("encoding", "utf-8")
    tmp = _fresh(path.parent, f".{path.name}.", ".tmp", folder=False)
    try:
        with open(tmp, mode, **open_kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_file(path) as f:
        f.write(text)


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON atomically; arrays (anything with ``tolist``) become lists, other objects strings."""
    text = json.dumps(obj, indent=indent, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    write_text(path, text)


def save_figure(fig: Any, path: str | Path, dpi: int = 90) -> None:
    """Save a matplotlib figure as PNG atomically. rnnkit builds ``matplotlib.figure.Figure`` objects directly,
    never through pyplot: no global figure list to close, and a notebook's backend is left alone."""
    with atomic_file(path, "wb") as f:
        fig.savefig(f, dpi=dpi, format="png")


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """``with atomic_folder(p) as tmp: <write files into tmp>``: then ``tmp`` replaces ``p`` in two renames.

    Until the block ends, ``p`` is untouched; between the two renames (a few microseconds) the previous
    folder is at ``.old-NAME-PID`` beside it, where :func:`recover` finds it. Files written into ``tmp``
    should be flushed and synced by the writer (safetensors and :func:`atomic_file` do).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _fresh(path.parent, f".tmp-{path.name}-", "", folder=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.parent / f".old-{path.name}-{os.getpid()}"
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def recover(directory: str | Path, complete: str | None = None) -> list[str]:
    """Undo what a kill left in ``directory``; returns one line per action, for the log.

    A folder caught between the two renames of :func:`atomic_folder` (``.old-NAME-PID`` present, ``NAME``
    missing) goes back to ``NAME`` when it holds the file ``complete`` (or always, if ``complete`` is None);
    temporary files and folders of interrupted writes are deleted. Only dot-names made here are touched.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    done = []
    olds = sorted(directory.glob(".old-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in olds:
        name = old.name[len(".old-") :].rsplit("-", 1)[0]
        target = directory / name
        if not target.exists() and old.is_dir() and (complete is None or (old / complete).is_file()):
            os.replace(old, target)
            done.append(f"restored {name}/ from an interrupted checkpoint swap")
    for leftover in [*directory.glob(".old-*"), *directory.glob(".tmp-*"), *directory.glob(".*.tmp")]:
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        done.append(f"removed {leftover.name}, left by an interrupted write")
    return done
