"""rnnkit train / evaluate / generate: end to end on a tiny text, and what bad input gets."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnkit.commands import evaluate as evaluate_cmd
from rnnkit.commands import generate as generate_cmd
from rnnkit.commands import train as train_cmd
from rnnkit.commands.evaluate import EvaluateCommand, evaluate_checkpoint
from rnnkit.commands.train import PRESETS, LMTrainConfig, train_language_model
from rnnkit.config import from_dict, to_dict

SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY = [
    "--model.hidden_size",
    "16",
    "--model.num_layers",
    "1",
    "--model.dropout",
    "0",
    "--lm.batch_size",
    "4",
    "--lm.num_steps",
    "16",
    "--steps",
    "80",
    "--optim.lr",
    "1e-2",
    "--max-time",
    "0",
    "--eval-every",
    "20",
    "--log-every",
    "10",
    "--sample.num_tokens",
    "12",
    "--threads",
    "1",
    "--plot",
    "false",
    "--lm.eval_batch_size",
    "1",
]


def text(n=6000, seed=0):
    g = torch.Generator().manual_seed(seed)
    words = ["the ", "time ", "traveller ", "said ", "and ", "we ", "sat ", "still ", "in ", "silence "]
    return "".join(words[int(i)] for i in torch.randint(0, len(words), (n // 6,), generator=g))[:n]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(text(), encoding="utf-8")
    return path


@pytest.fixture
def run(corpus, tmp_path, capsys):
    """A trained tiny run (in-process main, the CLI's code path); its stdout is in ``run.printed``."""
    out = tmp_path / "run"
    assert train_cmd.main(["--data", str(corpus), "--out", str(out), *TINY]) == 0
    (tmp_path / "printed.txt").write_text(capsys.readouterr().out)
    return out


def unigram_ppl(s):
    counts = torch.tensor([s.count(c) for c in set(s)], dtype=torch.float64)
    p = counts / counts.sum()
    return float(torch.exp(-(p * p.log()).sum()))


def cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "rnnkit", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_train_evaluate_generate_end_to_end(run, corpus, capsys):
    out = (run.parent / "printed.txt").read_text()
    assert "test (" in out and "ppl" in out and "sample (best checkpoint" in out
    assert {p.name for p in run.iterdir()} >= {"best", "last", "metrics.jsonl", "metrics.csv"}
    state = json.loads((run / "last" / "state.json").read_text())
    assert state["step"] == 80 and state["task"]["corpus"]["name"] == "tiny.txt"

    # evaluate reproduces the score printed by train (same split, carried state, one stream)
    printed = float(out.split("| ppl ")[1].split()[0])
    assert evaluate_cmd.main(["--checkpoint", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "test" and round(result["ppl"], 2) == printed
    assert result["ppl"] < 0.7 * unigram_ppl(corpus.read_text())  # better than the best context-free model
    assert evaluate_cmd.main(["--checkpoint", str(run), "--split", "val", "--window", "8"]) == 0
    line = capsys.readouterr().out
    assert line.startswith("loss ") and " | ppl " in line and " | bpc " in line and "8-token windows" in line

    args = ["--checkpoint", str(run), "--prefix", "the time", "--num-tokens", "30", "--seed", "3"]
    assert generate_cmd.main(args) == 0
    first = capsys.readouterr().out
    assert first.startswith("the time") and len(first.rstrip("\n")) == len("the time") + 30
    assert generate_cmd.main(args) == 0
    assert capsys.readouterr().out == first  # seeded
    assert generate_cmd.main(["--checkpoint", str(run), "--sample.strategy", "greedy", "--num-tokens", "5"]) == 0


def test_evaluate_any_file_scores_all_of_it(run, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(text(800, seed=1), encoding="utf-8")
    result = evaluate_checkpoint(EvaluateCommand(checkpoint=str(run), data=str(other)))
    n = len(other.read_text(encoding="utf-8"))
    assert result["split"] == "all" and result["tokens"] == n - 1 and result["unknown_tokens"] == 0


def test_presets_and_cli_defaults():
    default = from_dict(LMTrainConfig, {})
    d2l = from_dict(LMTrainConfig, PRESETS["d2l"])
    assert (d2l.lm.batch_size, d2l.lm.num_steps, d2l.lm.sampling) == (32, 35, "random")
    assert (d2l.model.hidden_size, d2l.model.num_layers, d2l.model.input) == (256, 1, "onehot")
    assert (d2l.optim.name, d2l.optim.lr, d2l.optim.clip_norm, d2l.optim.schedule) == ("sgd", 1.0, 1.0, "constant")
    rec = from_dict(LMTrainConfig, PRESETS["recommended"])
    assert rec.data == default.data == "stdlib" and rec.max_time <= 180
    assert to_dict(rec) != to_dict(d2l)


def test_help_lists_every_field_and_required_flags():
    r = cli("train", "--help")
    assert r.returncode == 0
    for flag in ("--data", "--max-time", "--out", "--resume", "--overwrite", "--preset", "--config",
                 "--model.hidden_size", "--optim.clip_norm", "--lm.sampling", "--sample.temperature"):  # fmt: skip
        assert flag in r.stdout
    r = cli("train", "--model.cell", "transformer")
    assert r.returncode == 2 and "invalid choice" in r.stderr and "Traceback" not in r.stderr


def test_resume_via_cli_continues_and_refuses_changes(run, corpus, capsys, caplog):
    before = (run / "metrics.jsonl").read_bytes()
    args = ["--data", str(corpus), "--out", str(run), *TINY]
    assert train_cmd.main(args) == 1  # exists, no --resume
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "metrics.jsonl").read_bytes() == before
    assert train_cmd.main([*args, "--model.hidden_size", "24", "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.hidden_size" in err and "16 -> 24" in err
    with caplog.at_level("WARNING"):
        assert train_cmd.main([*args, "--steps", "90", "--resume"]) == 0
    assert json.loads((run / "last" / "state.json").read_text())["step"] == 90
    # the recommended preset's tuples (optim.betas, lm.split) read back as lists: only the real change shows
    assert "resuming with changed settings: steps: 80 -> 90" in caplog.text and "betas" not in caplog.text


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_text(""), "empty"),
        (lambda p: p.write_bytes(bytes(range(256)) * 20), "UTF-8"),
        (lambda p: p.write_text("abc " * 15), "too short"),
    ],
    ids=["missing", "empty", "binary", "short"],
)
def test_bad_data_one_line_and_nonzero(tmp_path, capsys, setup, message):
    path = tmp_path / "bad.txt"
    setup(path)
    assert train_cmd.main(["--data", str(path), "--out", str(tmp_path / "out"), *TINY]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rnnkit train: error:") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_unknown_corpus_name(tmp_path, capsys):
    assert train_cmd.main(["--data", "shakespeare_complete_works", "--out", str(tmp_path / "o"), *TINY]) == 1
    assert capsys.readouterr().err.startswith("rnnkit train: error:")


def test_generate_and_evaluate_bad_input(run, tmp_path, capsys):
    assert generate_cmd.main(["--checkpoint", str(run), "--prefix", "ZEBRA?"]) == 1
    err = capsys.readouterr().err
    assert "rnnkit generate: error:" in err and "'Z'" in err and err.count("\n") == 1
    assert evaluate_cmd.main(["--checkpoint", str(tmp_path / "none")]) == 1
    assert "does not exist" in capsys.readouterr().err

    # a checkpoint of another model (the training loop on a non-LM task)
    sys.path.insert(0, str(Path(__file__).parent))
    from _toy import ToyTask
    from rnnkit.models import LanguageModel
    from rnnkit.train import TrainConfig, train

    train(LanguageModel(6, hidden_size=4), ToyTask(), TrainConfig(steps=2, eval_every=2, plot=False),
          out_dir=tmp_path / "toy")  # fmt: skip
    for main in (evaluate_cmd.main, generate_cmd.main):
        assert main(["--checkpoint", str(tmp_path / "toy")]) == 1
        assert "not a language model" in capsys.readouterr().err


def test_non_finite_loss_stops_with_one_line(corpus, tmp_path, capsys):
    out = tmp_path / "nan"
    args = ["--data", str(corpus), "--out", str(out), *TINY, "--optim.name", "sgd", "--optim.lr", "1e30",
            "--optim.clip_norm", "0", "--log-every", "1"]  # fmt: skip
    assert train_cmd.main(args) == 1
    err = capsys.readouterr().err
    assert "training loss became" in err and err.count("\n") == 1


def test_python_api_matches_cli(corpus, tmp_path):
    cfg = from_dict(LMTrainConfig, {**PRESETS["d2l"], "data": str(corpus), "out": str(tmp_path / "api"),
                                    "steps": 6, "max_time": 0, "eval_every": 3, "plot": False, "threads": 1,
                                    "lm": {**PRESETS["d2l"]["lm"], "normalize": "none", "batch_size": 4},
                                    "model": {**PRESETS["d2l"]["model"], "hidden_size": 8},
                                    "sample": {"num_tokens": 0}})  # fmt: skip
    summary = train_language_model(cfg)
    assert summary["steps"] == 6 and summary["split"] == "test" and summary["ppl"] > 1


def test_generate_checks_the_prefix_before_echoing_it(run, capsys):
    assert generate_cmd.main(["--checkpoint", str(run), "--prefix", "the ZEBRA"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("rnnkit generate: error: the prefix holds 5 token")


def test_generate_seeds_differ_by_default_and_repeat_when_given(run, capsys, caplog):
    """Without --seed every call draws (and logs) a fresh seed, so different prompts do not share one random
    stream; giving that seed back repeats the sample exactly."""
    args = ["--checkpoint", str(run), "--prefix", "the ", "--num-tokens", "40", "--temperature", "1.5"]
    samples, seeds = set(), []
    for _ in range(3):
        with caplog.at_level("INFO"):
            assert generate_cmd.main(args) == 0
        samples.add(capsys.readouterr().out)
        seeds.append(int(caplog.text.rsplit("sampling seed ", 1)[1].split()[0]))
    assert len(samples) == 3 and len(set(seeds)) == 3
    assert generate_cmd.main([*args, "--seed", str(seeds[-1])]) == 0
    assert capsys.readouterr().out in samples


def test_every_named_corpus_is_offered_alike():
    """--help and the unknown-corpus error name the same corpora: the embedded one and every named download."""
    from rnnkit.config import field_docs
    from rnnkit.data.corpora import CORPORA, resolve_corpus_path

    help_text = field_docs(LMTrainConfig)["data"]
    with pytest.raises(ValueError) as e:
        resolve_corpus_path("no-such-corpus")
    for name in ["stdlib", *CORPORA]:
        assert name in help_text and name in str(e.value)


def test_evaluate_says_when_the_loss_is_not_finite(run, monkeypatch, caplog):
    """A state that grows without bound over a carried stream (an IndRNN with |u| > 1) scores NaN: one line says why."""
    import rnnkit.tasks.lm as lm

    def exploding(*args, **kwargs):
        return {"loss": float("nan"), "ppl": float("nan"), "bpc": float("nan"), "tokens": 10}

    monkeypatch.setattr(lm, "score", exploding)
    with caplog.at_level("WARNING", logger="rnnkit.evaluate"):
        result = evaluate_checkpoint(EvaluateCommand(checkpoint=str(run)))
    assert result["loss"] != result["loss"]  # NaN, reported as it is
    assert "the loss is not finite: the state grew without bound over the carried stream" in caplog.text
    assert "--window" in caplog.text
