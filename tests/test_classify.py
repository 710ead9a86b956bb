"""Sequence classification: glimpse sequences, lengths= without sorting, readouts, split, confusion matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnkit.tasks.classify import (
    ClassifyDataConfig,
    ClassifyModelConfig,
    ClassifyTask,
    SequenceClassifier,
    confusion_matrix,
    format_confusion,
    images_to_sequences,
    load_digits_sequences,
    stratified_split,
)


def test_reading_orders_and_trimming():
    img = np.zeros((1, 3, 4))
    img[0, 1, 1:3] = 1.0  # ink in row 1, columns 1 and 2
    x, L = images_to_sequences(img, "rows")
    assert x.shape == (1, 3, 4) and L.tolist() == [3]
    x, L = images_to_sequences(img, "columns", trim=True)
    assert L.tolist() == [2]  # columns 1..2
    np.testing.assert_array_equal(x[0, :2], [[0, 1, 0], [0, 1, 0]])  # moved to step 0
    np.testing.assert_array_equal(x[0, 2:], 0)  # zero padding after the length
    x, L = images_to_sequences(img, "pixels", trim=True)
    assert x.shape == (1, 12, 1) and L.tolist() == [2]


def test_digits_by_columns_have_variable_lengths():
    d = load_digits_sequences("columns", trim=True)
    assert d.x.shape == (1797, 8, 8) and len(d.classes) == 10
    assert d.lengths.min() <= 4 and d.lengths.max() == 8 and len(np.unique(d.lengths)) >= 4
    assert d.x.min() >= 0 and d.x.max() <= 1


def test_stratified_split_is_disjoint_seeded_and_balanced():
    y = np.repeat(np.arange(4), 50)
    s = stratified_split(y, 0.2, 0.2, seed=3)
    all_idx = np.concatenate(list(s.values()))
    assert len(all_idx) == 200 and len(np.unique(all_idx)) == 200
    assert np.bincount(y[s["test"]]).tolist() == [10, 10, 10, 10]
    assert all(np.array_equal(s[k], stratified_split(y, 0.2, 0.2, seed=3)[k]) for k in s)


@pytest.mark.parametrize("readout", ["last", "mean", "max"])
@pytest.mark.parametrize("cell,bidirectional", [("gru", False), ("lstm", True), ("jordan", False)])
def test_padded_batch_equals_each_sequence_alone(readout, cell, bidirectional):
    """lengths= in any order, garbage in the padding: logits equal those of each unpadded sequence."""
    torch.manual_seed(0)
    m = SequenceClassifier(3, 4, cell=cell, hidden_size=5, bidirectional=bidirectional, readout=readout).double()
    lengths = torch.tensor([2, 5, 3])  # not sorted
    x = torch.randn(3, 5, 3, dtype=torch.float64)
    for i, n in enumerate(lengths.tolist()):
        x[i, n:] = 7.0  # anything past the length must be ignored
    batched = m(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = m(x[i : i + 1, :n])
        torch.testing.assert_close(batched[i : i + 1], alone)


def test_confusion_matrix_golden():
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert format_confusion(cm, ["a", "b", "c"]).splitlines()[1].split() == ["a", "1", "1", "0"]


def test_task_loss_evaluate_report():
    task = ClassifyTask.from_config(ClassifyDataConfig(read="columns", trim=True), batch_size=16, dtype=torch.float64)
    m = task.build_model(ClassifyModelConfig(hidden_size=8))
    batch = next(task.train_batches(torch.Generator().manual_seed(0)))
    x, lengths, y = batch
    assert x.shape[1] == int(lengths.max())  # padding trimmed to the batch's longest
    loss, state, n = task.loss(m, batch, None)
    assert state is None and n == 16 and loss.item() == pytest.approx(np.log(10), abs=0.3)
    ev = task.evaluate(m)
    assert set(ev) == {"loss", "accuracy"}
    r = task.report(m)
    assert r["confusion"].sum() == r["test_size"] == 360
    assert r["baselines"]["majority class"] == pytest.approx(0.1, abs=0.01)
    assert r["baselines"]["logistic regression"] > 0.85
    assert task.metadata()["split_sizes"] == {"train": 1167, "val": 270, "test": 360}


def test_bad_config():
    with pytest.raises(ValueError, match="val_frac and test_frac"):
        ClassifyDataConfig(val_frac=0.6, test_frac=0.5)
    with pytest.raises(ValueError, match="unknown cell"):
        ClassifyModelConfig(cell="transformer")  # type: ignore[arg-type]


# --- end to end through the one training loop, and the command line ---------------------------------
@pytest.mark.parametrize("preset,model", [("variable", {"bidirectional": True, "readout": "mean"}), (None, {})])
def test_tiny_run_far_above_chance(tmp_path, preset, model):
    from rnnkit.commands.classify import PRESETS, ClassifyRunConfig, run_classify
    from rnnkit.config import from_dict

    cfg = {"out": str(tmp_path / "run"), "steps": 300, "max_time": 0.0, "eval_every": 100, "log_every": 100,
           "plot": False, "model": {"hidden_size": 16, **model}, "data": {}}  # fmt: skip
    if preset:
        cfg["data"].update(PRESETS[preset]["data"])
    s = run_classify(from_dict(ClassifyRunConfig, cfg))
    assert s["accuracy"] > 0.7 and s["accuracy"] > 5 * s["baselines"]["majority class"]
    assert sum(map(sum, s["confusion"])) == 360 and (tmp_path / "run" / "confusion.png").is_file()


def test_cli_bad_flag_and_existing_run(tmp_path, capsys):
    from rnnkit.commands.classify import main

    for args, message in ((["--data.read", "diagonal"], "invalid choice: 'diagonal'"),
                          (["--data.val_frac", "0.9"], "rnnkit classify: error: val_frac and test_frac")):  # fmt: skip
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2 and message in capsys.readouterr().err.strip().splitlines()[-1]
    out = tmp_path / "run"
    (out / "last").mkdir(parents=True)
    (out / "last" / "keep.txt").write_text("mine")
    assert main(["--out", str(out), "--steps", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run" in err[0] and (out / "last" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["classify_digits.py", "classify_variable_length.py"])
def test_examples_run_and_beat_their_baseline(name):
    """The examples assert their own result (far above the majority class); run them in-process."""
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "examples" / name), run_name="__main__")


def test_metadata_survives_json_so_resume_can_compare_it():
    import json

    task = ClassifyTask.from_config(ClassifyDataConfig(read="columns", trim=True))
    assert json.loads(json.dumps(task.metadata())) == task.metadata()
