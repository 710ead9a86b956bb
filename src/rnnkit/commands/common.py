"""Subcommands (``rnnkit translate train|eval|predict``): one dispatcher. The training commands' shared
flags and error handling live in :mod:`rnnkit.runner`."""

from __future__ import annotations

import sys
from collections.abc import Callable


def dispatch(prog: str, doc: str, subcommands: dict[str, Callable[[list[str]], int]], argv: list[str] | None) -> int:
    """``prog SUB [flags]``: run ``subcommands[SUB]``; no argument or ``--help`` prints ``doc``; exit 2 on an
    unknown subcommand."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(doc.strip())
        return 0
    if argv[0] not in subcommands:
        names = ", ".join(subcommands)
        print(f"{prog}: error: unknown subcommand {argv[0]!r}: use one of {names}", file=sys.stderr)
        return 2
    return subcommands[argv[0]](argv[1:])
