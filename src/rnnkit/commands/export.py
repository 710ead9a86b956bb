"""``rnnkit export``: a trained language model as one file that generates one token per call.

    rnnkit export runs/lm                              # -> runs/lm.onnx (onnxruntime, any ONNX runtime)
    rnnkit export runs/lm --format torch-export        # -> runs/lm.pt2 (torch.export.load(...).module())
    rnnkit export runs/lm/best --out deploy/lm.onnx

The file maps ``(token, state)`` to ``(logits, new state)`` and carries the vocabulary; see docs/deploy.md
and examples/onnx_generate.py (generation with onnxruntime and numpy only).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rnnkit.config import parse_config


@dataclass
class ExportCommand:
    checkpoint: str = "runs/lm"
    """a run directory of rnnkit train (its best checkpoint) or a checkpoint folder (also accepted positionally)"""
    format: Literal["onnx", "torch-export"] = "onnx"
    """onnx (a graph for onnxruntime and other ONNX runtimes) or torch-export (a torch.export program, .pt2)"""
    out: str = ""
    """output file (default: beside the checkpoint, named after it: runs/lm -> runs/lm.onnx or runs/lm.pt2)"""
    engine: str = "reference"
    """torch-export only: the layer engine traced (reference: plain torch operators)"""


def default_out(checkpoint: str, format: str) -> Path:
    from rnnkit.export.lm import SUFFIX

    path = Path(checkpoint)
    return path.with_name(path.name + SUFFIX[format])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def positional(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("checkpoint_path", nargs="?", metavar="CHECKPOINT", help="same as --checkpoint")

    cfg, ns = parse_config(
        ExportCommand,
        argv,
        prog="rnnkit export",
        extra=positional,
        description="Write a trained language model's one-token step (token, state -> logits, "
        "state) as one file with its vocabulary: ONNX or a torch.export program.",
    )
    if ns.checkpoint_path:
        cfg.checkpoint = ns.checkpoint_path
    try:
        import torch

        from rnnkit.export.lm import export_language_model
        from rnnkit.tasks.lm import load_language_model

        model, vocab, saved = load_language_model(cfg.checkpoint)
        trained_in = model.head.weight.dtype
        model = model.float()  # deployment runs float32 (a float64 run converts; the check below covers it)
        out = Path(cfg.out) if cfg.out else default_out(cfg.checkpoint, cfg.format)
        prompt = str(saved.state.get("task", {}).get("prompt") or "")
        path = export_language_model(model, vocab, out, cfg.format, prompt=prompt, engine=cfg.engine)
    except (ValueError, TypeError, OSError, RuntimeError, ImportError) as e:
        print(f"rnnkit export: error: {str(e).removeprefix('rnnkit export: ')}", file=sys.stderr)
        return 1
    size = path.stat().st_size / 1e6
    converted = f", converted from {trained_in}" if trained_in != torch.float32 else ""
    print(
        f"wrote {path} ({cfg.format}, {size:.2f} MB{converted}): {model.rnn.describe_cell()} x "
        f"{model.rnn.num_layers}, {len(vocab)} tokens"
    )
    return 0
