"""``rnnkit inspect``: see inside a trained language model — gates, states, loss and gradient flow on a text.

    rnnkit inspect runs/lm --text story.txt --out report.html      # one self-contained HTML file
    rnnkit inspect runs/lm --text "The Time Traveller smiled."      # the text itself (report.html)
    rnnkit inspect runs/lm --text story.txt --lstmvis lstmvis/story # LSTMVis's input files (no HTML)

The report is :mod:`rnnkit.diagnostics.report`'s; the LSTMVis export :mod:`rnnkit.diagnostics.lstmvis`'s.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnkit.config import parse_config


@dataclass
class InspectCommand:
    checkpoint: str = ""
    """run directory of rnnkit train or a checkpoint folder (its best checkpoint); also the first argument"""
    text: str = ""
    """the text to read: a UTF-8 text file, or the text itself"""
    out: str = ""
    """the HTML report to write (default report.html, or none when only --lstmvis is given)"""
    lstmvis: str = ""
    """a new folder to write LSTMVis's input files into (states and words in HDF5, dictionary, lstm.yml)"""
    max_tokens: int = 10_000
    """read at most this many tokens of the text (0 = all of it)"""
    top_k: int = 5
    """strongest contexts shown per unit"""
    gradflow_steps: int = 100
    """window of the gradient-flow measurement, in tokens (0 = leave it out)"""

    def __post_init__(self) -> None:
        if self.max_tokens < 0 or self.top_k < 1 or self.gradflow_steps < 0:
            raise ValueError("max_tokens and gradflow_steps must be >= 0, top_k >= 1")


def read_text_arg(arg: str) -> tuple[str, str | None]:
    """``--text``: (the text, its file) — an existing file's contents, else (the string itself, None)."""
    from rnnkit.data.corpora import read_text_file

    if arg == "":
        raise ValueError("--text is empty: give a UTF-8 text file or the text itself")
    path = Path(arg).expanduser()
    if path.is_dir():
        raise ValueError(f"--text {arg!r} is a folder: give a UTF-8 text file or the text itself")
    if path.is_file():
        return read_text_file(path), str(path)
    if re.fullmatch(r"\S+(/\S*|\.[A-Za-z0-9]{1,5})", arg):  # one word that looks like a file name
        raise ValueError(f"--text {arg!r} looks like a file name but there is no such file; check the path (or put "
                         "the text in a file)")  # fmt: skip
    return arg, None


def _model_meta(model: Any, vocab: Any, saved: Any, source: str) -> dict[str, str]:
    c = model.config
    size = f"{c.num_layers} × {c.hidden_size}" if c.num_layers > 1 else f"{c.hidden_size}"
    inp = f"embedding {c.embed_size or c.hidden_size}" if c.input == "embedding" else "one-hot input"
    best = saved.state.get("best") or {}
    score = f", validation loss {best['loss']:.3f}" if "loss" in best else ""
    corpus = saved.state.get("task", {}).get("corpus", {}).get("name", "?")
    return {
        "model": f"{c.cell.upper()} {size}, {inp}, {len(vocab)} {vocab.level} tokens"
        + (f" (normalize={vocab.normalize})" if vocab.normalize != "none" else ""),
        "checkpoint": f"{saved.path} (step {saved.step:,}{score}), trained on {corpus}",
        "text": source,
    }


def run(cfg: InspectCommand) -> int:
    from rnnkit.diagnostics.lstmvis import check_target, export_lstmvis
    from rnnkit.diagnostics.report import check_output_folder, inspect_model, read_text
    from rnnkit.tasks.lm import load_language_model

    start = time.perf_counter()
    if not cfg.checkpoint:
        raise ValueError("give a checkpoint: rnnkit inspect RUN_DIR --text FILE_OR_STRING")
    out = Path(cfg.out or ("" if cfg.lstmvis else "report.html"))
    if cfg.out or not cfg.lstmvis:  # fail before the work, not after it
        check_output_folder(out.parent)
        if out.is_dir():
            raise ValueError(f"--out {str(out)!r} is a folder: give a file name, e.g. {out / 'report.html'}")
    if cfg.lstmvis:
        check_target(Path(cfg.lstmvis))
    text, file = read_text_arg(cfg.text)
    source = file or f"the {len(text):,}-character string given"
    model, vocab, saved = load_language_model(cfg.checkpoint)
    reading = read_text(model, vocab, text, max_tokens=cfg.max_tokens)
    if reading.oov:
        unknown = "".join(dict.fromkeys(reading.tokens[i] for i in reading.oov))
        print(f"rnnkit inspect: warning: {len(reading.oov)} token(s) of the text are outside the model's vocabulary "
              f"({unknown[:40]!r}): read as <unk>, marked in the report", file=sys.stderr)  # fmt: skip
    written = []
    if cfg.out or not cfg.lstmvis:
        report = inspect_model(model, vocab, reading, top_k=cfg.top_k, gradflow_steps=cfg.gradflow_steps,
                               title=Path(file).name if file else "a string",
                               meta=_model_meta(model, vocab, saved, source))  # fmt: skip
        report.save(out)
        written.append(f"{out} ({out.stat().st_size / 1e6:.2f} MB)")
    if cfg.lstmvis:
        export_lstmvis(cfg.lstmvis, reading.blocks, reading.ids, vocab.idx_to_token,
                       name=f"rnnkit {model.config.cell} on {Path(file).name if file else 'a string'}",
                       description=source)  # fmt: skip
        written.append(f"{cfg.lstmvis}/ (LSTMVis)")
    print(f"wrote {' and '.join(written)}: {len(reading.tokens):,} tokens in {time.perf_counter() - start:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-"):  # the checkpoint as the first argument
        argv = ["--checkpoint", argv[0], *argv[1:]]
    cfg, _ = parse_config(InspectCommand, argv, prog="rnnkit inspect",
                          description="See inside a trained language model: an interactive HTML report of its "
                          "gates, states, per-token loss and gradient flow on a text, or LSTMVis's input files. "
                          "Usage: rnnkit inspect CHECKPOINT --text FILE_OR_STRING [--out report.html] "
                          "[--lstmvis DIR]")  # fmt: skip
    try:
        return run(cfg)
    except (ValueError, TypeError, OSError) as e:
        print(f"rnnkit inspect: error: {e}", file=sys.stderr)
        return 1
