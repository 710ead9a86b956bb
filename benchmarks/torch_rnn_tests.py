"""PyTorch's own RNN tests with rnnkit swapped in, once per engine: how far "drop-in" really goes.

PyTorch's test files are not part of its wheel and are not part of rnnkit either: put them in a folder outside
this repository (``TESTS/test/test_nn.py``, ``TESTS/test/test_modules.py``, ``TESTS/test/nn/test_packed_sequence.py``,
from the PyTorch source matching the installed torch) and run, from the repository root::

    PYTHONPATH=src python benchmarks/torch_rnn_tests.py TESTS [--engines torch.nn,auto,...] [--json OUT]

``--engines`` defaults to ``torch.nn`` (the same selection on torch's own classes: the ceiling, as a few of these
tests fail on the installed torch itself when its version and the test files' differ) and the four engines.
Each engine runs in its own pytest process. Before collection, that process points ``torch.nn.RNN``, ``GRU``,
``LSTM``, ``RNNCell``, ``GRUCell`` and ``LSTMCell`` (and the RNN ModuleInfos of
``torch.testing._internal.common_modules``, which hold the classes themselves) at rnnkit's classes, and sets the
layers' default ``engine=``: what a user who swapped an import would get. From ``test_nn.py`` it runs the tests
whose names mention an RNN (see ``TEST_NN_SELECTION``), from ``test_modules.py`` those of the RNN/GRU/LSTM
ModuleInfos and their cells, and ``nn/test_packed_sequence.py`` whole (it tests the packing utilities that the
layers take and return). The report counts passed/failed/skipped per engine and groups the failures by message.
``test_modules.py`` needs ``expecttest`` (PyPI) installed beside torch.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ENGINES = ("auto", "reference", "torch", "fused")
#: pseudo-engine: the same selection on torch.nn's own classes, the ceiling to compare against
BASELINE = "torch.nn"
#: test_nn.py test names (pytest -k, case-insensitive) that exercise the RNN modules
TEST_NN_SELECTION = "rnn or lstm or gru or variable_sequence or cudnn_forward_exception or projections"
#: test_modules.py: the ModuleInfos nn.RNN, nn.GRU, nn.LSTM and their cells
TEST_MODULES_SELECTION = "nn_RNN or nn_GRU or nn_LSTM"
#: tests that read torch.nn.RNNBase's private attributes (rnnkit keeps no such cache; docs/torch_compat.md)
PRIVATE_INTERNALS = {"test_rnn_weight_norm": "reads torch's private _flat_weights"}


def swap_in(engine: str) -> None:
    """Make torch.nn's RNN classes rnnkit's, with ``engine`` as the layers' default engine."""
    import torch
    from torch.testing._internal import common_modules

    import rnnkit

    swap = {
        torch.nn.RNN: rnnkit.RNN,
        torch.nn.GRU: rnnkit.GRU,
        torch.nn.LSTM: rnnkit.LSTM,
        torch.nn.RNNCell: rnnkit.RNNCell,
        torch.nn.GRUCell: rnnkit.GRUCell,
        torch.nn.LSTMCell: rnnkit.LSTMCell,
    }
    for theirs, ours in swap.items():
        setattr(torch.nn, theirs.__name__, ours)
        if "engine" in (ours.__init__.__kwdefaults__ or {}):
            # The classes themselves, not subclasses: names, pickling and isinstance stay rnnkit's own.
            ours.__init__.__kwdefaults__["engine"] = engine
    for info in common_modules.module_db:
        if info.module_cls in swap:
            info.module_cls = swap[info.module_cls]
    for theirs, ours in swap.items():  # test names come from these ("test_forward_nn_LSTM_..."): keep torch's
        common_modules.MODULE_CLASS_NAMES[ours] = common_modules.MODULE_CLASS_NAMES[theirs]


def run_engine(tests: Path, engine: str, junit: Path) -> int:
    """One pytest process for ``engine``; the results land in ``junit``."""
    files = [
        (tests / "test" / "test_nn.py", TEST_NN_SELECTION),
        (tests / "test" / "test_modules.py", TEST_MODULES_SELECTION),
        (tests / "test" / "nn" / "test_packed_sequence.py", None),
    ]
    for path, _ in files:
        if not path.exists():
            sys.exit(f"missing {path}: copy PyTorch's test files there (see this script's docstring)")
    # pytest applies one -k to every file: each file's selection is made explicit by prefixing its name
    expr = " or ".join(
        f"({path.stem} and ({selection}))" if selection else f"({path.stem})" for path, selection in files
    )
    args = [str(p) for p, _ in files] + ["-k", expr, "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    cmd = [sys.executable, __file__, "--worker", engine, "--", *args]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTORCH_PRINT_REPRO_ON_FAILURE="0")
    return subprocess.run(cmd, cwd=tests, env=env).returncode


def summarize(junit: Path) -> dict:
    """Counts and failures (test id -> first line of the message) from a JUnit XML report."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    failures: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{Path(case.get('classname', '').replace('.', '/')).name}::{case.get('name')}"
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            counts["failed"] += 1
            failures[name] = reason(bad.get("message") or bad.text or "")
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return {"counts": counts, "failures": failures}


def reason(message: str) -> str:
    """A failure's message reduced to a groupable line: its first line (``Type: text``), numbers blanked."""
    message = re.sub(r"(\x1b|#x1B)\[[0-9;]*m", "", message)  # terminal colours, raw or as JUnit escapes them
    line = next((ln.strip() for ln in message.splitlines() if ln.strip()), "(no message)")
    return re.sub(r"\d+(\.\d+)?", "N", line)[:160]


def report(results: dict[str, dict]) -> str:
    """A table of counts, then each engine's failures grouped by message. With the torch.nn baseline in the
    run, the last column counts what the target asks about: tests that pass on torch.nn but fail on rnnkit,
    less those that read torch's private attributes."""
    baseline = results.get(BASELINE)
    head = "| engine | passed | failed | skipped |" + (" failing where torch.nn passes |" if baseline else "")
    out = [head, "| --- " * (5 if baseline else 4) + "|"]
    for engine, res in results.items():
        c = res["counts"]
        row = f"| {engine} | {c['passed']} | {c['failed']} | {c['skipped']} |"
        if baseline:
            row += f" {len(regressions(res, baseline))} |"
        out.append(row)
    for engine, res in results.items():
        if not res["failures"]:
            continue
        out.append(f"\n{engine}: failures grouped by message")
        groups: dict[str, list[str]] = defaultdict(list)
        for test, why in res["failures"].items():
            if engine != BASELINE and baseline and test in baseline["failures"]:
                why = f"(fails on torch.nn too) {why}"
            elif private := _private(test):
                why = f"(expected: {private}) {why}"
            groups[why].append(test)
        for why, tests in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            out.append(f"  {len(tests):3d}  {why}")
            out.extend(f"         {t}" for t in tests[:6])
            if len(tests) > 6:
                out.append(f"         ... and {len(tests) - 6} more")
    return "\n".join(out)


def _private(test: str) -> str | None:
    name = test.split("::")[-1]
    return next((why for prefix, why in PRIVATE_INTERNALS.items() if name.startswith(prefix)), None)


def regressions(res: dict, baseline: dict) -> list[str]:
    """Tests that fail here but pass on torch.nn, except those reading torch's private internals."""
    return [t for t in res["failures"] if t not in baseline["failures"] and not _private(t)]


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        # The child: swap the classes in, then hand the rest of the command line to pytest.
        engine, pytest_args = sys.argv[2], sys.argv[4:]
        if engine != BASELINE:
            swap_in(engine)
        import pytest

        sys.exit(pytest.main(pytest_args))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tests", type=Path, help="folder holding PyTorch's test/ files (outside this repository)")
    parser.add_argument(
        "--engines",
        default=",".join((BASELINE, *ENGINES)),
        help=f"comma-separated; default: {BASELINE!r} (torch's own classes, the ceiling) and all four engines",
    )
    parser.add_argument("--json", type=Path, help="also write the counts and failures here")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(","):
            junit = Path(tmp) / f"{engine}.xml"
            run_engine(args.tests.resolve(), engine, junit)
            results[engine] = summarize(junit)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
