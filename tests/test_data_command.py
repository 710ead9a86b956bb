"""`rnnkit data`: describe a corpus, list the registry, one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnnkit.data.command import main

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_describe_a_file_as_json(tmp_path, capsys):
    path = tmp_path / "t.txt"
    path.write_text("abracadabra")
    assert main(["--data", str(path), "--json", "--split", "0.6,0.2,0.2"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["tokens"] == 11 and facts["vocab_size"] == 6  # <unk> a b r c d
    assert facts["split"] == [6, 2, 3]
    assert facts["top_tokens"][:2] == [["a", 5], ["b", 2]]
    assert facts["corpus"]["size"] == 11 and facts["corpus"]["name"] == "t.txt"


def test_describe_text_output_word_level(tmp_path, capsys):
    path = tmp_path / "t.txt"
    path.write_text("The cat. The dog! " * 20)
    assert main(["--data", str(path), "--level", "word", "--normalize", "d2l", "--min_freq", "21"]) == 0
    out = capsys.readouterr().out
    assert (
        "tokens 80 (word, normalize=d2l) | vocab 2 | <unk> 40 | split 72 / 4 / 4" in out
    )  # "the" (40) survives min_freq 21


def test_list_shows_every_named_corpus(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("RNNKIT_DATA_DIR", raising=False)
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path))
    assert main(["--list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"stdlib", "timemachine", "tinyshakespeare", "fra-eng"}
    assert rows["stdlib"]["file"] == "embedded" and rows["timemachine"]["file"] is None
    assert "tatoeba.org" in rows["fra-eng"]["licence"]


def test_errors_are_one_line_and_nonzero(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    bad = tmp_path / "bin.dat"
    bad.write_bytes(b"\x00\x01")
    r = subprocess.run(
        [sys.executable, "-m", "rnnkit", "data", "--data", str(bad)], capture_output=True, text=True, env=env
    )
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        f"rnnkit data: error: corpus file {bad} looks binary (it has NUL bytes); pass a UTF-8 text file"
    ]


def test_bad_split_flag_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--split", "0.5,0.1"])
    assert e.value.code == 2 and "--split must be three fractions" in capsys.readouterr().err
