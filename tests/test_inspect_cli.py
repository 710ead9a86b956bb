"""rnnkit inspect: the command end to end on a tiny trained model, its LSTMVis export read back, and bad input."""

import json
import os
import re
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from rnnkit.commands import inspect as inspect_cmd
from rnnkit.commands import train as train_cmd
from rnnkit.diagnostics.lstmvis import dict_token
from rnnkit.diagnostics.report import read_text
from rnnkit.tasks.lm import load_language_model

LINE = 'Said he, "I (the Time Traveller) shall go."\n    And then: [he went].\n'
TRAIN = ("--model.cell lstm --model.hidden_size 16 --model.num_layers 2 --model.input embedding --model.embed_size 8 "
         "--lm.batch_size 4 --lm.num_steps 32 --steps 30 --max-time 0 --eval-every 30 --threads 1 --plot false "
         "--sample.num_tokens 4 --epochs 0").split()  # fmt: skip


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A 2-layer LSTM language model trained for a few steps on a text with quotes, brackets and indentation."""
    root = tmp_path_factory.mktemp("inspect")
    (root / "train.txt").write_text(LINE * 60, encoding="utf-8")
    assert train_cmd.main(["--data", str(root / "train.txt"), "--out", str(root / "run"), *TRAIN]) == 0
    return root / "run"


def page_data(path: Path) -> dict:
    page = path.read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="rnnkit-data">(.*?)</script>', page, re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def readonly_folder(tmp_path: Path) -> Path:
    """A folder no file can be created in: permission bits for a user; for root (whom they do not stop), sysfs."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    try:
        fd, probe = tempfile.mkstemp(dir="/sys")
    except OSError:
        return Path("/sys")
    os.close(fd)
    os.unlink(probe)
    pytest.skip("no folder here refuses new files to root")


def test_report_end_to_end(ckpt, tmp_path, capsys):
    text = tmp_path / "story.txt"
    text.write_text(LINE * 3 + "Zebra.", encoding="utf-8")  # 'Z' and 'b' were never seen in training
    out = tmp_path / "report.html"
    assert inspect_cmd.main([str(ckpt), "--text", str(text), "--out", str(out), "--top-k", "2"]) == 0
    captured = capsys.readouterr()
    n = 3 * len(LINE) + 6
    assert re.match(rf"wrote .*report\.html \(\d\.\d\d MB\): {n} tokens in [\d.]+ s\n$", captured.out)
    assert captured.err == ("rnnkit inspect: warning: 2 token(s) of the text are outside the model's vocabulary "
                            "('Zb'): read as <unk>, marked in the report\n")  # fmt: skip
    d = page_data(out)
    assert "".join(d["tokens"]) == text.read_text() and d["oov"] == [3 * len(LINE), 3 * len(LINE) + 2]
    assert d["meta"]["model"] == "LSTM 2 × 16, embedding 8, 30 char tokens"
    assert d["meta"]["checkpoint"].endswith("trained on train.txt") and d["meta"]["text"] == str(text)
    assert d["title"] == "rnnkit inspect: story.txt" and len(d["gradflow"]) == 2 and len(d["gradflow"][0]) == 100
    assert all(len(u) == 2 for b in d["blocks"] for s in b["states"] for u in s["top"])
    assert all(d["present"].values())
    assert sorted(os.listdir(tmp_path)) == ["report.html", "story.txt"]  # no temporary file left behind


def test_a_string_default_out_max_tokens_and_no_gradflow(ckpt, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [str(ckpt), "--text", "Said he, (then) he went.", "--max-tokens", "10", "--gradflow-steps", "0"]
    assert inspect_cmd.main(args) == 0
    d = page_data(tmp_path / "report.html")
    assert d["tokens"] == list("Said he, (") and d["gradflow"] is None and d["title"] == "rnnkit inspect: a string"
    assert d["meta"]["text"] == "the 24-character string given; the first 10 of its 24 tokens"
    assert capsys.readouterr().err == ""


def test_lstmvis_files_read_back(ckpt, tmp_path, capsys):
    text = LINE * 2 + "\tZ"
    folder = tmp_path / "vis"
    assert inspect_cmd.main([str(ckpt), "--text", text, "--lstmvis", str(folder)]) == 0
    assert sorted(os.listdir(tmp_path)) == ["vis"]  # LSTMVis only: no report.html
    assert sorted(os.listdir(folder)) == ["lstm.yml", "states.h5", "train.h5", "words.dict"]
    config = yaml.safe_load((folder / "lstm.yml").read_text(encoding="utf-8"))
    assert config["files"] == {"states": "states.h5", "train": "train.h5", "words": "words.dict"}
    assert config["word_sequence"] == {"file": "train", "path": "word_ids", "dict_file": "words"}
    assert config["name"] == "rnnkit lstm on a string" and config["states"]["file"] == "states"
    types = config["states"]["types"]
    assert [(t["type"], t["layer"], t["path"]) for t in types] == [
        ("state", 1, "c1"), ("output", 1, "h1"), ("state", 2, "c2"), ("output", 2, "h2")]  # fmt: skip
    assert [t.get("transform") for t in types if t["path"].startswith("h")] == ["none", "none"]  # h is in [-1, 1]
    # the dictionary, split on whitespace as LSTMVis does: one token and its id per line
    lines = (folder / "words.dict").read_text(encoding="utf-8").splitlines()
    pairs = [line.split() for line in lines]
    assert all(len(p) == 2 for p in pairs)
    words = {int(i): w for w, i in pairs}
    model, vocab, _ = load_language_model(ckpt)
    assert [words[i] for i in range(len(vocab))] == [dict_token(t) for t in vocab.idx_to_token]
    reading = read_text(model, vocab, text)
    sequence = config["word_sequence"]
    with h5py.File(folder / config["files"][sequence["file"]], "r") as f:
        ids = f[sequence["path"]][()]
    assert "".join(words[i] for i in ids) == "".join(dict_token(t) if t in vocab else "<unk>" for t in text)
    assert ids[-2:].tolist() == [0, 0]  # the tab and the Z: <unk>
    # every state matrix, found the way LSTMVis finds it: type entry -> file reference -> HDF5 path
    paths = iter(types)
    with h5py.File(folder / config["files"][config["states"]["file"]], "r") as f:
        for block in reading.blocks:
            for values in block.states.values():
                stored = f[next(paths)["path"]][()]
                assert stored.shape == (len(text), 16) and stored.dtype == np.float32
                np.testing.assert_allclose(stored, values, rtol=0, atol=1e-6)
    # a second export replaces the first; a folder holding anything else is refused and left alone
    assert inspect_cmd.main([str(ckpt), "--text", "ab", "--lstmvis", str(folder)]) == 0
    with h5py.File(folder / "train.h5", "r") as f:
        assert len(f["word_ids"]) == 2
    (folder / "notes.txt").write_text("mine")
    assert inspect_cmd.main([str(ckpt), "--text", "ab", "--lstmvis", str(folder)]) == 1
    assert "holds other files (notes.txt)" in capsys.readouterr().err and (folder / "notes.txt").exists()


def test_dict_token_keeps_lines_two_fields():
    assert [dict_token(t) for t in [" ", "\n", "\t", "\r", "\u00a0", "a b", "<unk>"]] == [
        "␣", "↵", "⇥", "␍", "<U+00A0>", "a␣b", "<unk>"]  # fmt: skip


def _toy_checkpoint(path: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from _toy import ToyTask
    from rnnkit.models import LanguageModel
    from rnnkit.train import TrainConfig, train

    train(LanguageModel(6, hidden_size=4), ToyTask(), TrainConfig(steps=2, eval_every=2, plot=False), out_dir=path)
    return path


@pytest.mark.parametrize(
    "case",
    ["not-lm", "no-checkpoint", "empty-string", "empty-file", "missing-file", "text-folder", "missing-out-folder",
     "read-only-out-folder", "out-is-folder", "missing-lstmvis-parent", "one-token"],
)  # fmt: skip
def test_bad_input_one_line_nonzero_nothing_written(case, ckpt, tmp_path, capsys):
    good = tmp_path / "good.txt"
    good.write_text(LINE, encoding="utf-8")
    out = tmp_path / "out" / "report.html"
    out.parent.mkdir()
    out.write_text("an earlier report")
    args = {
        "not-lm": [str(_toy_checkpoint(tmp_path / "toy")), "--text", str(good)],
        "no-checkpoint": [str(tmp_path / "nothing"), "--text", str(good)],
        "empty-string": [str(ckpt), "--text", ""],
        "empty-file": [str(ckpt), "--text", str(tmp_path / "empty.txt")],
        "missing-file": [str(ckpt), "--text", str(tmp_path / "story.txt")],
        "text-folder": [str(ckpt), "--text", str(tmp_path)],
        "missing-out-folder": [str(ckpt), "--text", str(good), "--out", str(tmp_path / "no" / "r.html")],
        "read-only-out-folder": [str(ckpt), "--text", str(good), "--out", str(readonly_folder(tmp_path) / "r.html")],
        "out-is-folder": [str(ckpt), "--text", str(good), "--out", str(out.parent)],
        "missing-lstmvis-parent": [str(ckpt), "--text", str(good), "--lstmvis", str(tmp_path / "no" / "vis")],
        "one-token": [str(ckpt), "--text", "S"],
    }[case]
    (tmp_path / "empty.txt").write_text("")
    if "--out" not in args and "--lstmvis" not in args:
        args += ["--out", str(out)]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "toy" not in p.parts)
    assert inspect_cmd.main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("rnnkit inspect: error: ") and err.count("\n") == 1, err
    expected = {
        "not-lm": "not a language model", "no-checkpoint": "does not exist", "empty-string": "--text is empty",
        "empty-file": "is empty", "missing-file": "looks like a file name but there is no such file",
        "text-folder": "is a folder", "missing-out-folder": "does not exist: create it first",
        "read-only-out-folder": "cannot write in output folder", "out-is-folder": "is a folder",
        "missing-lstmvis-parent": "does not exist: create it first", "one-token": "at least 2",
    }[case]  # fmt: skip
    assert expected in err
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "toy" not in p.parts)
    assert after == before and out.read_text() == "an earlier report"  # nothing written, nothing destroyed


def test_listed_in_rnnkit_help(capsys):
    from rnnkit.cli import main

    assert main(["--help"]) == 0
    assert "inspect" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        inspect_cmd.main(["--help"])
    assert "--lstmvis" in capsys.readouterr().out
