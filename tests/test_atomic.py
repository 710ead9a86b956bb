"""Atomic outputs: a file or folder appears complete or not at all; leftovers of a kill are recovered."""

import os

import pytest

from rnnkit.atomic import atomic_file, atomic_folder, recover, write_json, write_text


def test_a_failed_write_keeps_the_old_content_and_leaves_nothing(tmp_path):
    write_text(tmp_path / "a.txt", "old")
    with pytest.raises(KeyboardInterrupt), atomic_file(tmp_path / "a.txt") as f:
        f.write("new, half")
        raise KeyboardInterrupt
    assert (tmp_path / "a.txt").read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]
    write_json(tmp_path / "b.json", {"x": (1, 2)})
    assert (tmp_path / "b.json").read_text().replace(" ", "").replace("\n", "") == '{"x":[1,2]}'
    with pytest.raises(ValueError, match="mode must be"):
        atomic_file(tmp_path / "c", "a").__enter__()


def test_a_folder_swap_and_its_recovery(tmp_path):
    with atomic_folder(tmp_path / "ck") as tmp:
        (tmp / "done").write_text("1")
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "ck") as tmp:
        (tmp / "done").write_text("2")
        raise RuntimeError("disk full")
    assert (tmp_path / "ck" / "done").read_text() == "1" and os.listdir(tmp_path) == ["ck"]
    os.replace(tmp_path / "ck", tmp_path / ".old-ck-42")  # killed between the two renames
    (tmp_path / ".x.txt.ab12.tmp").write_text("half")
    (tmp_path / ".old-gone-7").mkdir()  # an incomplete old folder is not put back
    done = recover(tmp_path, complete="done")
    assert done[0] == "restored ck/ from an interrupted checkpoint swap" and len(done) == 3
    assert sorted(os.listdir(tmp_path)) == ["ck"] and (tmp_path / "ck" / "done").read_text() == "1"
    assert recover(tmp_path / "missing") == []
