"""Dataclass configs -> flags: one-line mistakes with a suggestion, help text from field docstrings."""

import pytest

from rnnkit.commands.train import LMTrainConfig
from rnnkit.config import from_dict, parse_config, to_dict


def error_of(argv, capsys):  # noqa: ANN001, ANN201
    with pytest.raises(SystemExit) as e:
        parse_config(LMTrainConfig, argv, prog="rnnkit train")
    assert e.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--model.hidden_size", "big"], "invalid int value: 'big'"),
        (["--model.cell", "transformer"], "invalid choice: 'transformer'"),
        (["--optim.lr", "-1"], "optim.lr must be a positive number"),
        (["--model.hiden_size", "8"], "did you mean --model.hidden_size?"),
        (["--config", "missing.json"], "config file 'missing.json' does not exist"),
    ],
)
def test_every_mistake_is_one_line(argv, says, capsys):
    err = error_of(argv, capsys)
    assert err.count("\n") == 1 and err.startswith("rnnkit train: error:") and says in err
    assert err.rstrip().endswith("see rnnkit train --help)")


def test_help_text_comes_from_the_field_docstrings(capsys):
    with pytest.raises(SystemExit):
        parse_config(LMTrainConfig, ["--help"], prog="rnnkit train")
    out = capsys.readouterr().out
    assert "training-time budget in seconds" in out and "peak learning rate" in out


def test_flags_files_and_round_trip(tmp_path):
    (tmp_path / "c.json").write_text('{"model": {"hidden_size": 12}, "optim": {"betas": [0.8, 0.9]}}')
    cfg, _ = parse_config(LMTrainConfig, ["--config", str(tmp_path / "c.json"), "--max-time", "5",
                                          "--optim.lr", "0.1"], prog="x")  # fmt: skip
    assert (cfg.model.hidden_size, cfg.optim.betas, cfg.max_time, cfg.optim.lr) == (12, (0.8, 0.9), 5.0, 0.1)
    assert from_dict(LMTrainConfig, to_dict(cfg)) == cfg
