"""The command line under hostile input: fuzzed and degenerate corpus files, output folders that refuse writes
(read-only, a full disk simulated by a patched writer and by a real ``ulimit -f`` in a child process), and
NaN or infinity injected into the loss at a random step.

Every case must end in a finished run or in exit status 1 with one ``rnnkit train: error:`` line (no
traceback), must not leave a damaged checkpoint, and a failed write must leave the run resumable.
Hypothesis cases per run: 15 corpus files, 12 failing writers, 8 non-finite losses (×4 with
``RNNKIT_FUZZ_CASES`` >= 1200).
"""

import errno
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rnnkit.checkpoint as ck
from rnnkit.commands import train as train_cmd

SRC = str(Path(__file__).resolve().parents[1] / "src")
SCALE = 4 if int(os.environ.get("RNNKIT_FUZZ_CASES", "300")) >= 1200 else 1
FUZZ = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck), "derandomize": False}
TINY = ["--model.hidden_size", "8", "--model.num_layers", "1", "--model.embed_size", "4", "--lm.batch_size", "2",
        "--lm.num_steps", "8", "--steps", "6", "--epochs", "0", "--max-time", "0", "--eval-every", "3",
        "--log-every", "1", "--sample.num_tokens", "5", "--threads", "1", "--plot", "false",
        "--lm.eval_batch_size", "1"]  # fmt: skip
WORDS = "the time traveller said and we sat still in silence ".split(" ")


def words(n: int) -> str:
    return " ".join(WORDS[(i * 7) % len(WORDS)] for i in range(n))


def one_line_error(err: str) -> bool:
    lines = err.strip().splitlines()
    return len(lines) >= 1 and lines[-1].startswith("rnnkit train: error:") and "Traceback" not in err


def intact(out: Path) -> list[int]:
    """Steps of the checkpoints in ``out``, each loaded and verified (a damaged one fails the test)."""
    return [ck.load_checkpoint(out / name).step for name in ("best", "last") if (out / name / "state.json").is_file()]


# ------------------------------------------------------------------------------------------------
# corpus files
@pytest.mark.parametrize(
    "content, outcome",
    [
        (b"", "is empty"),
        (bytes(range(256)) * 8, "looks binary"),
        ("café crème ".encode("latin-1") * 200, "not valid UTF-8"),
        (b"a", "train part is empty"),
        (("a" * 2000).encode(), "ok"),  # one distinct character: a one-token vocabulary still trains
        (words(600).encode("utf-8-sig"), "ok"),  # a UTF-8 byte-order mark
    ],
    ids=["empty", "binary", "latin-1", "one-character", "one-symbol", "bom"],
)
def test_degenerate_corpus_files(tmp_path, capsys, content, outcome):
    corpus, out = tmp_path / "corpus.txt", tmp_path / "run"
    corpus.write_bytes(content)
    status = train_cmd.main(["--data", str(corpus), "--out", str(out), *TINY])
    err = capsys.readouterr().err
    if outcome == "ok":
        assert status == 0, err
        assert len(intact(out)) == 2
    else:
        assert status == 1 and one_line_error(err) and outcome in err, err
        assert not out.exists()  # a refused corpus writes nothing


@settings(max_examples=15 * SCALE, **FUZZ)
@given(data=st.one_of(st.binary(max_size=3000), st.text(max_size=3000).map(lambda s: s.encode("utf-8"))))
def test_fuzzed_corpus_files_train_or_fail_in_one_line(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("corpus")
    corpus, out = tmp / "corpus.txt", tmp / "run"
    corpus.write_bytes(data)
    status, err = run_capturing_stderr(["--data", str(corpus), "--out", str(out), *TINY])
    assert status in (0, 1), err
    if status == 1:
        assert one_line_error(err), err
        assert not out.exists()
    else:
        assert len(intact(out)) == 2


def test_a_hundred_million_character_corpus(tmp_path, capsys):
    """10^8 characters (enwik8's size): read, counted, encoded and trained on; held-out parts kept tiny."""
    corpus = tmp_path / "big.txt"
    block = (words(200) + "\n").encode()
    with open(corpus, "wb") as f:
        for _ in range(10**8 // len(block)):
            f.write(block)
        f.write(b"x" * (10**8 % len(block)))
    assert corpus.stat().st_size == 10**8
    out = tmp_path / "run"
    args = ["--data", str(corpus), "--out", str(out), *TINY, "--steps", "2", "--eval-every", "2",
            "--lm.split", "0.99999,0.000005,0.000005", "--sample.num_tokens", "0"]  # fmt: skip
    assert train_cmd.main(args) == 0, capsys.readouterr().err
    state = json.loads((out / "last" / "state.json").read_text())
    assert state["task"]["corpus"]["size"] == 10**8 and state["step"] == 2


# ------------------------------------------------------------------------------------------------
# output folders that refuse writes
def test_read_only_output_folder_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    corpus = tmp_path / "c.txt"
    corpus.write_text(words(600))
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path / "ro" else real(p, mode))
    (tmp_path / "ro").mkdir()
    assert train_cmd.main(["--data", str(corpus), "--out", str(tmp_path / "ro" / "run"), *TINY]) == 1
    err = capsys.readouterr().err
    assert one_line_error(err) and "read-only or not yours" in err and not (tmp_path / "ro" / "run").exists()
    assert train_cmd.main(["--data", str(corpus), "--out", str(corpus), *TINY]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err


ERRORS = [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system"),
          (errno.EACCES, "Permission denied"), (errno.EFBIG, "File too large")]  # fmt: skip


@settings(max_examples=12 * SCALE, **FUZZ)
@given(fail_at=st.integers(1, 40), error=st.sampled_from(ERRORS))
def test_a_write_failing_at_any_point_leaves_a_resumable_run(tmp_path_factory, monkeypatch_session, fail_at, error):
    """The n-th file or folder the run creates fails (as on a full disk or a folder made read-only mid-run):
    one line, every checkpoint left behind verifies, and a resume once the disk is fine finishes the run."""
    import rnnkit.atomic
    import rnnkit.metrics_log

    tmp = tmp_path_factory.mktemp("write")
    corpus, out = tmp / "c.txt", tmp / "run"
    corpus.write_text(words(600))
    count = [0]

    def failing(real):  # noqa: ANN001, ANN202
        def wrapped(*a, **k):  # noqa: ANN002, ANN003, ANN202
            count[0] += 1
            if count[0] == fail_at:
                raise OSError(error[0], error[1])
            return real(*a, **k)

        return wrapped

    # every output is created through rnnkit.atomic._fresh, or opened for appending by the metrics log
    with monkeypatch_session.context() as m:
        m.setattr(rnnkit.atomic, "_fresh", failing(rnnkit.atomic._fresh))
        m.setattr(rnnkit.metrics_log, "open", failing(open), raising=False)
        err = run_capturing_stderr(["--data", str(corpus), "--out", str(out), *TINY])
    status, text = err
    if count[0] < fail_at:
        assert status == 0  # the run made fewer writes than fail_at
        return
    assert status == 1 and one_line_error(text) and error[1] in text, text
    assert "cannot write" in text and "--resume" in text
    intact(out)
    status, text = run_capturing_stderr(["--data", str(corpus), "--out", str(out), *TINY, "--resume"])
    assert status == 0, text
    assert intact(out)[-1] == 6 and sorted(p.name for p in out.iterdir()) == ["best", "last", "metrics.csv",
                                                                                 "metrics.jsonl"]  # fmt: skip


def run_capturing_stderr(argv: list[str]) -> tuple[int, str]:
    import io

    saved, sys.stderr = sys.stderr, io.StringIO()
    try:
        status = train_cmd.main(argv)
        return status, sys.stderr.getvalue()
    finally:
        sys.stderr = saved


@pytest.fixture(scope="module")
def monkeypatch_session():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.mark.parametrize("limit_kb", [1, 20, 30])  # past model.safetensors (2.7 kB), state.json (25), curves.png (40)
def test_a_real_file_size_limit_fails_in_one_line_and_resumes(tmp_path, limit_kb):
    """``ulimit -f``: every write past the limit fails with EFBIG in a child process (Python ignores SIGXFSZ)."""
    corpus, out = tmp_path / "c.txt", tmp_path / "run"
    corpus.write_text(words(600))
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "rnnkit", "train", "--data", str(corpus), "--out", str(out), *TINY, "--plot", "true",
           "--model.engine", "reference"]  # fmt: skip

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_kb * 1024, limit_kb * 1024))

    p = subprocess.run(cmd, capture_output=True, text=True, env=env, preexec_fn=limit, timeout=300)
    assert p.returncode == 1 and one_line_error(p.stderr) and "File too large" in p.stderr, p.stderr[-3000:]
    intact(out)
    p = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert intact(out)[-1] == 6


# ------------------------------------------------------------------------------------------------
# NaN and infinity in the loss
@settings(max_examples=8 * SCALE, **FUZZ)
@given(at=st.integers(1, 6), value=st.sampled_from([float("nan"), float("inf"), float("-inf")]))
def test_non_finite_loss_at_any_step_stops_in_one_line(tmp_path_factory, monkeypatch_session, at, value):
    from rnnkit.tasks.lm import LanguageModelTask

    tmp = tmp_path_factory.mktemp("nan")
    corpus, out = tmp / "c.txt", tmp / "run"
    corpus.write_text(words(600))
    real, calls = LanguageModelTask.loss, [0]

    def poisoned(self, *a):  # noqa: ANN001, ANN202
        loss, state, units = real(self, *a)
        calls[0] += 1
        return (loss * value if calls[0] == at else loss), state, units

    with monkeypatch_session.context() as m:
        m.setattr(LanguageModelTask, "loss", poisoned)
        status, text = run_capturing_stderr(["--data", str(corpus), "--out", str(out), *TINY])
    assert status == 1 and one_line_error(text) and f"by step {at}" in text, text
    steps = intact(out)
    assert all(s < at for s in steps)  # the last good checkpoint, from before the bad step
    assert ("no checkpoint was written" in text) == (not steps)
