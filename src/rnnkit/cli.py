"""The ``rnnkit`` command: ``rnnkit <command> [flags]``; each command lives in its own module.

A command module exposes ``main(argv: list[str] | None) -> int``. Registering one is a line in
:data:`COMMANDS` (module path, one-line summary); the module is imported only when its command runs,
so ``rnnkit --help`` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

#: command name -> (module exposing ``main(argv)``, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("rnnkit.demo", "Hung-yi Lee's worked LSTM example, step by step, and a small training demo"),
    "data": ("rnnkit.data.command", "list the named corpora, fetch one, or describe a corpus (size, sha1, vocabulary)"),
    "train": ("rnnkit.commands.train", "train a language model (quick start: no arguments)"),
    "evaluate": ("rnnkit.commands.evaluate", "loss, perplexity and bits per character of a checkpoint on any text"),
    "generate": ("rnnkit.commands.generate", "continue a prefix with a trained language model, streamed"),
    "export": ("rnnkit.commands.export", "a trained language model as one ONNX or torch.export file for deployment"),
    "inspect": ("rnnkit.commands.inspect", "a trained LM's gates, states, loss on a text: HTML report, LSTMVis files"),
    "gradflow": ("rnnkit.diagnostics.gradflow", "measure ‖∂L_T/∂h_t‖ vs distance: vanishing/exploding gradients"),
    "longrange": ("rnnkit.diagnostics.longrange", "adding problem and copy memory at growing T for each cell"),
    "forecast": ("rnnkit.commands.forecast", "forecast a time series vs naive, seasonal-naive, Holt-Winters, ARIMA"),
    "classify": ("rnnkit.commands.classify", "classify sequences (8x8 digits read as glimpses, variable lengths)"),
    "bench": ("rnnkit.bench", "time every cell on every engine against torch.nn and a from-scratch loop"),
    "sweep": ("rnnkit.commands.sweep", "hyper-parameter grid of language models: table + plot of time vs perplexity"),
    "translate": ("rnnkit.commands.translate", "English→French encoder–decoder: train, eval (BLEU), predict"),
    "caption": ("rnnkit.commands.caption", "spell a digit image's name character by character (one→many)"),
}


def usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "usage: rnnkit <command> [flags]   (rnnkit <command> --help for its flags)\n\ncommands:\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        from rnnkit import __version__

        print(f"rnnkit {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"rnnkit: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from rnnkit.allocator import tune_malloc

    tune_malloc()  # keep freed buffers instead of page-faulting them back every step (docs/benchmarks.md)
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
