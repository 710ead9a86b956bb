"""The one runner of the training commands: shared settings, set-up -> train -> best checkpoint -> report."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _toy import ToyTask  # noqa: E402
from rnnkit.models import LanguageModel  # noqa: E402
from rnnkit.runner import RunConfig, Setup, check_writable, resolve_device, run, torch_threads  # noqa: E402


def toy_setup(cfg, device, dtype):  # noqa: ANN001, ANN201
    model = LanguageModel(6, "gru", 8, input="embedding", embed_size=4, device=device, dtype=dtype)
    return Setup(model, ToyTask(), "toy: 6 tokens, one 8-unit GRU")


def toy_report(cfg, s, best, result):  # noqa: ANN001, ANN201
    return {"val_loss": float(s.task.evaluate(s.model)["loss"]), "grad": torch.is_grad_enabled(),
            "training": s.model.training}  # fmt: skip


def test_settings_are_checked():
    with pytest.raises(ValueError, match="threads must be >= 0"):
        RunConfig(threads=-1)
    with pytest.raises(ValueError, match="device must be cpu, cuda, cuda:N or auto"):
        RunConfig(device="tpu")
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto") == "cpu"
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda:0")


def test_threads_are_restored_after_the_block():
    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with pytest.raises(KeyError), torch_threads(before + 2):
        raise KeyError
    assert torch.get_num_threads() == before


def test_out_is_checked_without_creating_it(tmp_path):
    check_writable(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        check_writable(tmp_path / "f")


def test_run_trains_reloads_the_best_checkpoint_and_reports(tmp_path, caplog):
    cfg = RunConfig(out=str(tmp_path / "run"), steps=6, eval_every=3, log_every=3, plot=False, threads=2,
                    dtype="float64")  # fmt: skip
    threads = torch.get_num_threads()
    with caplog.at_level("INFO"):
        summary = run(cfg, toy_setup, toy_report)
    assert torch.get_num_threads() == threads  # a Python caller's process is left as it was
    assert "toy: 6 tokens, one 8-unit GRU" in caplog.text
    assert summary["steps"] == 6 and summary["unit"] == "units" and summary["best_step"] in (3, 6)
    assert summary["val_loss"] == pytest.approx(summary["best_val"]["loss"], rel=1e-12)  # the best weights
    assert summary["grad"] is False and summary["training"] is False  # reports run in eval mode, no grad
    finished = run(cfg, toy_setup, toy_report, resume=True)  # budget spent: said at once, nothing scored
    assert finished["finished"] is True and "val_loss" not in finished and finished["steps"] == 6
