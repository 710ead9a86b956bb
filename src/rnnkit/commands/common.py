"""What every training command shares: resume flags and one-line failures."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: failures a user can fix (bad file, bad flag, refused resume): one line, exit status 1, no traceback
EXPECTED_ERRORS = (ValueError, TypeError, OSError, RuntimeError)


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """``--resume`` and ``--overwrite`` for a command that writes a run directory."""
    parser.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    parser.add_argument("--overwrite", action="store_true", help="discard an existing run in --out")


def run_guarded(prog: str, fn: Callable[[], T], *, on_interrupt: str) -> T | int:
    """Call ``fn`` with log lines routed around the tqdm bar; returns its result, or the exit status after
    printing one line: 130 on Ctrl-C (``on_interrupt`` says where the work is), 1 on an expected error."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        with logging_redirect_tqdm():
            return fn()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {on_interrupt}", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1


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
