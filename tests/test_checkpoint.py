import json
import os

import pytest
import torch

import rnnkit.checkpoint as ck
from rnnkit.models import LanguageModel


def small(tied=False, hidden=6):
    return LanguageModel(5, "lstm", hidden, input="embedding", tie_weights=tied)


def test_round_trip_weights_optimizer_rng_and_carry(tmp_path):
    torch.manual_seed(0)
    model = small(tied=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.9))
    model(torch.randint(0, 5, (2, 4)))[0].sum().backward()
    opt.step()
    opt_js, opt_t = ck.optimizer_to_json(opt)
    carry = (torch.randn(1, 2, 6), torch.randn(1, 2, 6))
    layout, carry_t = ck.carry_to_tensors(carry)
    rng_js, rng_t = ck.rng_state()
    ck.save_checkpoint(tmp_path / "c", model, {"optimizer": opt_js, "rng": rng_js, "carry": layout, "step": 3},
                       {**opt_t, **rng_t, **carry_t})  # fmt: skip
    expected = torch.rand(3)  # what the RNG gives after the saved state

    loaded = ck.load_checkpoint(tmp_path / "c")
    assert loaded.step == 3
    other = small(tied=True)
    ck.load_model_weights(other, loaded)
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert other.head.weight is other.embedding.weight  # still tied after loading
    opt2 = torch.optim.AdamW(other.parameters(), lr=1.0)
    ck.optimizer_from_json(opt2, loaded.state["optimizer"], loaded.tensors)
    assert opt2.param_groups[0]["betas"] == (0.8, 0.9)
    for p, q in zip(model.parameters(), other.parameters()):
        assert torch.equal(opt.state[p]["exp_avg_sq"], opt2.state[q]["exp_avg_sq"])
    ck.set_rng_state(loaded.state["rng"], loaded.tensors)
    assert torch.equal(torch.rand(3), expected)
    back = ck.carry_from_tensors(loaded.state["carry"], loaded.tensors)
    assert all(torch.equal(a, b) for a, b in zip(back, carry))


def test_files_are_safetensors_and_json_only(tmp_path):
    ck.save_checkpoint(tmp_path / "c", small(), {"step": 1})
    assert sorted(os.listdir(tmp_path / "c")) == ["model.safetensors", "state.json", "train_state.safetensors"]
    assert json.loads((tmp_path / "c" / "state.json").read_text())["format"] == ck.FORMAT
    assert sorted(os.listdir(tmp_path)) == ["c"]  # no temporary left behind


def test_crash_mid_write_leaves_old_checkpoint_intact(tmp_path, monkeypatch):
    ck.save_checkpoint(tmp_path / "last", small(), {"step": 1})
    real = ck._write_json

    def crash(path, obj):
        real(path, obj)
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(ck, "_write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(tmp_path / "last", small(hidden=9), {"step": 2})
    monkeypatch.undo()
    assert ck.load_checkpoint(tmp_path / "last").step == 1
    assert sorted(os.listdir(tmp_path)) == ["last"]


def test_crash_between_renames_falls_back_to_the_old_folder(tmp_path):
    ck.save_checkpoint(tmp_path / "run" / "last", small(), {"step": 4})
    os.replace(tmp_path / "run" / "last", tmp_path / "run" / ".old-last-123")  # the instant between renames
    assert ck.load_checkpoint(tmp_path / "run", prefer="last").step == 4


def test_run_directory_resolves_best_then_last(tmp_path):
    ck.save_checkpoint(tmp_path / "last", small(), {"step": 8})
    assert ck.load_checkpoint(tmp_path).step == 8
    ck.save_checkpoint(tmp_path / "best", small(), {"step": 6})
    assert ck.load_checkpoint(tmp_path).step == 6
    assert ck.load_checkpoint(tmp_path, prefer="last").step == 8


def test_errors_are_one_clear_line(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ck.load_checkpoint(tmp_path / "nope")
    with pytest.raises(ValueError, match="holds no checkpoint"):
        ck.load_checkpoint(tmp_path)
    ck.save_checkpoint(tmp_path / "c", small(), {"step": 1})
    with pytest.raises(ValueError, match=r"does not fit this model: .*shape"):
        ck.load_model_weights(small(hidden=7), ck.load_checkpoint(tmp_path / "c"))
    (tmp_path / "c" / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="unreadable or corrupt"):
        ck.load_checkpoint(tmp_path / "c")
    with pytest.raises(TypeError, match="carried state"):
        ck.carry_to_tensors({"h": 1})
