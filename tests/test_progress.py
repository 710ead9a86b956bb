"""What the loop tells its user: the budget, how to extend a finished run, a bar that a 0-column terminal
still draws, failed writes as one line."""

import io

import pytest

from rnnkit import progress as ui
from rnnkit.commands.train import LMTrainConfig
from rnnkit.train import TrainConfig


def test_budget_and_how_to_extend_a_finished_run():
    cfg = TrainConfig(steps=500, max_time=30, stop_at=200)
    assert ui.budget(cfg) == "30 s (evaluation excluded) or 500 steps or a pause at step 200"
    assert ui.finished(cfg, 200, 3.0) == "stop_at" and ui.finished(cfg, 10, 31.0) == "max_time"
    assert ui.finished(cfg, 10, 3.0) == "" and ui.finished(cfg, 500, 3.0) == "steps"
    assert ui.extend_hint("max_time", cfg) == "a larger --max-time (now 30)"
    assert ui.extend_hint("steps", LMTrainConfig(epochs=10, steps=260)) == "a larger --epochs (now 10, 260 steps)"


def test_a_terminal_that_reports_no_size_still_gets_a_bar(monkeypatch):
    import os
    import shutil

    from tqdm import tqdm

    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=(0, 0): os.terminal_size((0, 0)))
    stream = io.StringIO()
    stream.isatty = lambda: True  # what a pty with no size says
    monkeypatch.setattr("sys.stderr", stream)
    bar = ui.bar(10, 0, by_time=False)
    assert isinstance(bar, tqdm) and (bar.ncols, bar.nrows) == (100, 20)
    bar.update(5)
    bar.refresh()
    assert "5/10" in stream.getvalue() and "#####" in stream.getvalue()  # ASCII bar: StringIO has no encoding
    bar.close()
    monkeypatch.setattr(stream, "isatty", lambda: False)
    assert ui.bar(10, 0, by_time=False) is None  # a log file or a pipe: lines instead


def test_a_failed_write_is_one_line():
    with pytest.raises(OSError, match=r"^cannot write metrics.csv in 'runs/x': No space left on device; .*--resume"):
        with ui.writing("metrics.csv", "runs/x"):
            raise OSError(28, "No space left on device")
