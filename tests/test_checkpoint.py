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
    real = ck.sha256_file

    def crash(path):
        real(path)
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(ck, "sha256_file", crash)
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
    with pytest.raises(ValueError, match="is damaged: model.safetensors"):
        ck.load_checkpoint(tmp_path / "c")
    with pytest.raises(TypeError, match="carried state"):
        ck.carry_to_tensors({"h": 1})


def _flip_a_tensor_byte(path):
    """Damage the tensor data (not the header) of a safetensors file: it still parses."""
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header + (len(data) - header) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_state_json_records_sha256_of_each_file(tmp_path):
    ck.save_checkpoint(tmp_path / "c", small(), {"step": 1})
    files = json.loads((tmp_path / "c" / "state.json").read_text())["files"]
    assert set(files) == {"model.safetensors", "train_state.safetensors"}
    import hashlib

    for name, digest in files.items():
        assert hashlib.sha256((tmp_path / "c" / name).read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("damaged", ["model.safetensors", "train_state.safetensors"])
def test_damaged_tensor_bytes_are_refused_in_one_line(tmp_path, damaged):
    ck.save_checkpoint(tmp_path / "c", small(), {"step": 1}, {"x": torch.arange(64.0)})
    _flip_a_tensor_byte(tmp_path / "c" / damaged)
    from safetensors.torch import load_file

    load_file(str(tmp_path / "c" / damaged))  # the damage is invisible to safetensors itself
    with pytest.raises(ValueError, match=rf"is damaged: {damaged} does not match the SHA-256") as e:
        ck.load_checkpoint(tmp_path / "c")
    assert "\n" not in str(e.value)


def test_damaged_checkpoint_falls_back_to_the_other_and_says_so(tmp_path, caplog):
    ck.save_checkpoint(tmp_path / "best", small(), {"step": 6})
    ck.save_checkpoint(tmp_path / "last", small(), {"step": 8}, {"x": torch.arange(64.0)})
    _flip_a_tensor_byte(tmp_path / "best" / "model.safetensors")
    with caplog.at_level("WARNING"):
        assert ck.load_checkpoint(tmp_path, prefer="best").step == 8
    assert "best' is damaged" in caplog.text and "using" in caplog.text and "(step 8) instead" in caplog.text
    assert ck.load_checkpoint(tmp_path, prefer="last").step == 8
    with pytest.raises(ValueError, match=r"best' is damaged.*last' is intact: pass it"):
        ck.load_checkpoint(tmp_path / "best")  # a folder named directly is never silently replaced
    _flip_a_tensor_byte(tmp_path / "last" / "train_state.safetensors")
    with pytest.raises(ValueError, match=r"no intact checkpoint in .*best' is damaged.*last' is damaged"):
        ck.load_checkpoint(tmp_path)


def test_damaged_or_missing_state_json(tmp_path):
    ck.save_checkpoint(tmp_path / "c", small(), {"step": 1})
    state = json.loads((tmp_path / "c" / "state.json").read_text())
    del state["files"]
    (tmp_path / "c" / "state.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match="lists no file checksums"):
        ck.load_checkpoint(tmp_path / "c")
    (tmp_path / "c" / "state.json").write_text('{"step": 1, "form')
    with pytest.raises(ValueError, match="unreadable or corrupt: state.json"):
        ck.load_checkpoint(tmp_path / "c")
    state["format"] = 1  # written before checksums existed: still loads
    (tmp_path / "c" / "state.json").write_text(json.dumps(state))
    assert ck.load_checkpoint(tmp_path / "c").step == 1


def test_recover_run_restores_a_swap_and_removes_leftovers(tmp_path):
    ck.save_checkpoint(tmp_path / "last", small(), {"step": 4})
    os.replace(tmp_path / "last", tmp_path / ".old-last-77")  # killed between the two renames
    (tmp_path / ".tmp-best-abc").mkdir()  # killed while writing best/
    (tmp_path / ".tmp-best-abc" / "model.safetensors").write_bytes(b"half")
    (tmp_path / ".metrics.csv.x1y2.tmp").write_text("step,")
    (tmp_path / "metrics.jsonl").write_text("")
    assert not ck.has_checkpoint(tmp_path / "nothing") and ck.has_checkpoint(tmp_path)
    done = ck.recover_run(tmp_path)
    assert len(done) == 3 and "restored last/" in done[0]
    assert sorted(os.listdir(tmp_path)) == ["last", "metrics.jsonl"]
    assert ck.load_checkpoint(tmp_path / "last").step == 4


def test_outputs_get_ordinary_permissions(tmp_path):
    """Temporary names are private while written, but the finished files follow the umask like open() does."""
    from rnnkit.atomic import write_text

    umask = os.umask(0o022)
    try:
        ck.save_checkpoint(tmp_path / "c", small(), {"step": 1})
        write_text(tmp_path / "r.txt", "x")
    finally:
        os.umask(umask)
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o755
    assert {(p.stat().st_mode & 0o777) for p in (tmp_path / "c").iterdir()} == {0o644}
    assert (tmp_path / "r.txt").stat().st_mode & 0o777 == 0o644
