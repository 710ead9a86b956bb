"""LSTMVis's input files for a language model's pass over a text (Strobelt, Gehrmann, Pfister & Rush, "LSTMVis:
A Tool for Visual Analysis of Hidden State Dynamics in Recurrent Neural Networks").

LSTMVis reads a project folder holding

* ``lstm.yml`` — the config: the files, where the word sequence is, which state matrices to offer;
* ``states.h5`` — one (T, units) float32 matrix per state and layer (``c1``, ``h1``, ``c2``, …: row t is
  the state after reading token t);
* ``train.h5`` — ``word_ids``, the token id at each of the T positions;
* ``words.dict`` — one ``token id`` line per vocabulary entry.

LSTMVis splits dictionary lines on whitespace, so whitespace inside a token is written visibly
(:func:`dict_token`: space ``␣``, line break ``↵``, tab ``⇥``, any other as ``<U+XXXX>``). It applies
``tanh`` to a state unless its config says ``transform: none``, which is said for states already in [-1, 1].
The folder is written beside its final place and renamed into it, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit.diagnostics.record import Block

CONFIG = "lstm.yml"
STATES = "states.h5"
WORDS = "train.h5"
DICT = "words.dict"
_VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}


def dict_token(token: str) -> str:
    """``token`` with its whitespace made visible, so that a ``words.dict`` line splits into exactly two fields."""
    return "".join(_VISIBLE.get(ch, f"<U+{ord(ch):04X}>") if ch.isspace() else ch for ch in token)


def dataset_name(block: Block, kind: str) -> str:
    """``c1``, ``h2``, ``h1_reverse``: the state, its layer from 1, the direction."""
    return f"{kind}{block.layer + 1}" + ("_reverse" if block.direction else "")


def state_paths(blocks: list[Block]) -> list[dict[str, Any]]:
    """The ``states.types`` entries of the config, one per (block, state): the first state of a block (the
    recurrent memory: LSTM ``c``, else ``h``; Jordan ``y``) is LSTMVis's ``state``, the others ``output``."""
    types = []
    for block in blocks:
        for k, (kind, values) in enumerate(block.states.items()):
            entry: dict[str, Any] = {"type": "state" if k == 0 else "output", "layer": block.layer + 1,
                                     "path": dataset_name(block, kind)}  # fmt: skip
            if np.abs(values).max(initial=0.0) <= 1.0:
                entry["transform"] = "none"  # already in [-1, 1]: LSTMVis' tanh would only squash it
            types.append(entry)
    return types


def _yaml(name: str, description: str, types: list[dict[str, Any]]) -> str:
    """The config in YAML (strings as JSON strings, which YAML reads as its double-quoted scalars)."""
    rows = "\n".join("  - {" + ", ".join(f"{k}: {v}" for k, v in t.items()) + "}" for t in types)
    return (f"name: {json.dumps(name)}\ndescription: {json.dumps(description)}\n"
            f"files:\n  states: {STATES}\n  train: {WORDS}\n  words: {DICT}\n"
            "word_sequence:\n  file: train\n  path: word_ids\n  dict_file: words\n"
            f"states:\n  file: states\n  types:\n{rows}\n")  # fmt: skip


def export_lstmvis(folder: str | Path, blocks: list[Block], ids: Any, vocab_tokens: list[str], *,
                   name: str = "rnnkit", description: str = "") -> Path:  # fmt: skip
    """Write LSTMVis's project files for ``blocks`` (from :func:`~rnnkit.diagnostics.record.record`) over the
    token ``ids`` (T,) into ``folder``, which must be new, empty, or an earlier export (it is replaced)."""
    import h5py

    folder = Path(folder)
    check_target(folder)
    ids = np.asarray(ids.cpu() if hasattr(ids, "cpu") else ids, dtype=np.int64)
    types = state_paths(blocks)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with h5py.File(tmp / STATES, "w") as f:
            for block in blocks:
                for kind, values in block.states.items():
                    f.create_dataset(dataset_name(block, kind), data=values.astype(np.float32))
        with h5py.File(tmp / WORDS, "w") as f:
            f.create_dataset("word_ids", data=ids)
        lines = [f"{dict_token(t)} {i}\n" for i, t in enumerate(vocab_tokens)]
        (tmp / DICT).write_text("".join(lines), encoding="utf-8")
        (tmp / CONFIG).write_text(_yaml(name, description, types), encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the export is an ordinary folder
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def check_target(folder: Path) -> None:
    """Refuse a target that holds anything but an earlier export: replacing it must not destroy other files."""
    from rnnkit.diagnostics.report import check_output_folder

    check_output_folder(folder.parent)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--lstmvis {str(folder)!r} is a file: give a folder for LSTMVis's project files")
    if folder.is_dir():
        ours = {CONFIG, STATES, WORDS, DICT}
        others = sorted(p.name for p in folder.iterdir() if p.name not in ours)
        if others:
            raise ValueError(f"--lstmvis folder {str(folder)!r} holds other files ({', '.join(others[:3])}): "
                             "give a new or empty folder")  # fmt: skip
