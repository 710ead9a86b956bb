"""`rnnkit sweep`: every grid point trained through rnnkit train's function; the table's numbers are the runs'."""

import csv
import json
import math

import pytest
import torch

from rnnkit.commands.sweep import SweepConfig, main, sweep

TEXT = "the time traveller for so it will be convenient to speak of him was expounding a recondite matter to us " * 12


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(TEXT)
    return path


def test_sweep_table_plot_and_numbers(corpus, tmp_path):
    from rnnkit.tasks.lm import LanguageModelTask, load_language_model

    out = tmp_path / "sweep"
    cfg = SweepConfig(data=str(corpus), hidden_size=(4, 8), num_steps=(5,), lr=(1.0,), num_layers=(1,), steps=3,
                      eval_every=2, out=str(out))  # fmt: skip
    rows = sweep(cfg)
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["run"] for r in table] == ["h4-t5-lr1-l1", "h8-t5-lr1-l1"] == [r["run"] for r in rows]
    md = (out / "results.md").read_text().splitlines()
    assert md[0].startswith("| run | hidden_size") and len(md) == 2 + 2
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for row in rows:
        run = out / "runs" / row["run"]
        model, vocab, _ = load_language_model(run)
        H, V = row["hidden_size"], len(vocab)
        assert vocab.normalize == "d2l" and V == len(set(TEXT.replace(" ", ""))) + 2  # letters, space, <unk>
        assert row["parameters"] == 4 * (H * (V + H) + 2 * H) + H * V + V  # one-hot LSTM + linear head
        assert row["steps"] == 3 and row["best_step"] in (2, 3)
        # val_ppl is exp(best validation loss) of that run's own log
        evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        best_val = min(e["loss"] for e in evals if e["split"] == "val")
        assert row["val_ppl"] == pytest.approx(math.exp(best_val), abs=1e-4)
        # test_ppl is the best checkpoint rescored on the test split
        task = LanguageModelTask(str(corpus), from_run_config(run), vocab=vocab)
        with torch.no_grad():
            assert row["test_ppl"] == pytest.approx(task.score(model, "test")["ppl"], abs=1e-4)


def from_run_config(run):
    from rnnkit.checkpoint import load_checkpoint
    from rnnkit.tasks.lm import LMConfig

    lm = load_checkpoint(run, prefer="best").state["config"]["lm"]
    return LMConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in lm.items()})


def test_existing_sweep_is_not_overwritten(corpus, tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "results.csv").write_text("precious\n")
    assert main(["--data", str(corpus), "--hidden_size", "4", "--out", str(out)]) == 1
    assert "already holds a sweep: pass --overwrite" in capsys.readouterr().err
    assert (out / "results.csv").read_text() == "precious\n"


def test_bad_grid_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--hidden_size", "0,8"])
    assert e.value.code == 2 and "--hidden_size needs positive integers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--lr", "-1"])
