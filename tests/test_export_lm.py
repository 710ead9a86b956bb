"""rnnkit export: trained language models as one-token ONNX and torch.export files that generate what rnnkit does."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from _readonly import read_only, writable
from rnnkit.commands import export as export_cmd
from rnnkit.commands import generate as generate_cmd
from rnnkit.commands import train as train_cmd
from rnnkit.data import Vocab
from rnnkit.export.lm import export_language_model, read_metadata
from rnnkit.models import LanguageModel

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "onnx_generate.py"
SENTENCES = [
    "the time traveller said , which was a very odd thing to say !",
    "and we sat still in silence ; the lamp was burning low .",
    "he lifted the glass ( it was green ) and looked at us .",
]


def corpus_text(n=400, seed=0):
    """Sentences in random order: a greedy continuation recites one of them, so it is far from constant."""
    g = torch.Generator().manual_seed(seed)
    return " ".join(SENTENCES[int(i)] for i in torch.randint(0, len(SENTENCES), (n,), generator=g))


def train(tmp, name, *flags):
    data = tmp / "corpus.txt"
    data.write_text(corpus_text(), encoding="utf-8")
    out = tmp / name
    args = [
        "--data",
        str(data),
        "--out",
        str(out),
        "--lm.batch_size",
        "8",
        "--lm.num_steps",
        "24",
        "--steps",
        "150",
        "--max-time",
        "0",
        "--eval-every",
        "150",
        "--plot",
        "false",
        "--threads",
        "1",
        "--sample.num_tokens",
        "0",
        "--optim.lr",
        "1e-2",
        "--lm.eval_batch_size",
        "1",
        *flags,
    ]
    assert train_cmd.main(args) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export_lm")
    return {
        "char-lstm": train(tmp, "char", "--model.cell", "lstm", "--model.hidden_size", "32", "--model.num_layers", "2"),
        "word-gru": train(
            tmp,
            "word",
            "--lm.level",
            "word",
            "--model.cell",
            "gru",
            "--model.hidden_size",
            "24",
            "--model.input",
            "embedding",
            "--model.embed_size",
            "12",
        ),
    }


def rnnkit_greedy(run, prefix, n, capsys):
    capsys.readouterr()
    args = ["--checkpoint", str(run), "--prefix", prefix, "--num-tokens", str(n), "--sample.strategy", "greedy"]
    assert generate_cmd.main(args) == 0
    return capsys.readouterr().out


def run_example(model_path, prefix, n):
    """The example script with torch (and so rnnkit) made unimportable: it must need numpy and onnxruntime only."""
    code = (
        "import sys, runpy; sys.modules['torch'] = None; "
        f"sys.argv = ['onnx_generate.py', {str(model_path)!r}, '--prefix', {prefix!r}, '--num-tokens', '{n}']; "
        f"runpy.run_path({str(EXAMPLE)!r}, run_name='__main__')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize(("kind", "prefix"), [("char-lstm", "the time "), ("word-gru", "he lifted")])
def test_onnx_example_generates_what_rnnkit_generates(runs, kind, prefix, capsys):
    run = runs[kind]
    assert export_cmd.main([str(run)]) == 0
    path = run.with_name(run.name + ".onnx")
    assert f"wrote {path} (onnx" in capsys.readouterr().out
    n = 60 if kind == "char-lstm" else 25
    want = rnnkit_greedy(run, prefix, n, capsys)
    assert run_example(path, prefix, n) == want
    assert len(set(want[len(prefix) :].split() if kind == "word-gru" else want[len(prefix) :])) > 5  # not constant


def test_float64_run_exports_as_float32(tmp_path, capsys):
    run = train(tmp_path, "f64", "--model.cell", "rnn", "--model.hidden_size", "8", "--dtype", "float64")
    capsys.readouterr()
    assert export_cmd.main([str(run), "--out", str(tmp_path / "f.onnx")]) == 0
    assert "converted from torch.float64" in capsys.readouterr().out
    assert (tmp_path / "f.onnx").is_file()


def test_torch_export_program_steps_like_the_model(runs, tmp_path, capsys):
    run = runs["char-lstm"]
    out = tmp_path / "lm.pt2"
    assert export_cmd.main([str(run), "--format", "torch-export", "--out", str(out)]) == 0
    meta = read_metadata(out)
    program = torch.export.load(str(out)).module()
    ids = {t: i for i, t in enumerate(meta["vocab"]["idx_to_token"])}
    state = [torch.zeros(s["shape"][0], 1, s["shape"][2]) for s in meta["state"]]
    prefix, n = "the time ", 40
    text = ""
    with torch.no_grad():
        for t in prefix:
            logits, *state = program(torch.tensor([ids[t]]), *state)
        for _ in range(n):
            logits[0, meta["unk"]] = -float("inf")
            nxt = int(logits[0].argmax())
            text += meta["vocab"]["idx_to_token"][nxt]
            logits, *state = program(torch.tensor([nxt]), *state)
    assert prefix + text + "\n" == rnnkit_greedy(run, prefix, n, capsys)


def run_python(code):
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_torch_export_files_load_in_a_fresh_process(tmp_path):
    """The reference engine's program needs torch only; the fused engine's calls rnnkit::sequence, which
    load_program imports before loading (recorded in the file), in a process that never ran rnnkit."""
    vocab = Vocab(list("abcdef"))
    model = LanguageModel(len(vocab), "lstm", hidden_size=8, num_layers=2).eval()
    token, state = torch.tensor([2, 4]), (torch.randn(2, 2, 8), torch.randn(2, 2, 8))
    with torch.no_grad():
        want = model.step(token, state)[0]
    for engine in ("reference", "fused"):
        path = export_language_model(model, vocab, tmp_path / f"{engine}.pt2", "torch-export", engine=engine)
        torch.save({"token": token, "state": state, "want": want}, tmp_path / "io.pt")
        blocker = "import sys; sys.modules['rnnkit'] = None; " if engine == "reference" else ""
        loader = (
            f"program = torch.export.load({str(path)!r}).module()"
            if engine == "reference"
            else f"from rnnkit.export.lm import load_program; program = load_program({str(path)!r})"
        )
        out = run_python(
            f"{blocker}import torch; {loader}; io = torch.load({str(tmp_path / 'io.pt')!r}); "
            "logits, *_ = program(io['token'], *io['state']); print(float((logits - io['want']).abs().max()))"
        )
        assert float(out) < 1e-5
        assert read_metadata(path)["engine"] == engine
    assert read_metadata(tmp_path / "reference.pt2")["imports"] == []
    assert read_metadata(tmp_path / "fused.pt2")["imports"] == ["rnnkit.engines.fused.ops"]


CELLS = [("lstm", "onehot"), ("gru", "embedding"), ("rnn", "onehot"), ("peephole", "embedding"), ("jordan", "onehot"),
         ("mgu", "embedding"), ("indrnn", "onehot"), ("mingru", "onehot"), ("minlstm", "embedding")]  # fmt: skip


@pytest.mark.parametrize(("cell", "input_kind"), CELLS)
def test_every_cell_exports_and_runs(cell, input_kind, tmp_path):
    """Every cell in both formats (the writer checks each file against LanguageModel.step before writing it);
    here the ONNX file is also run over a 12-token stream at batch 2."""
    vocab = Vocab(list("abcdefgh"))
    model = LanguageModel(len(vocab), cell, hidden_size=7, num_layers=2, input=input_kind, embed_size=5).eval()
    path = export_language_model(model, vocab, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["rnnkit"])
    assert meta["vocab"]["idx_to_token"] == vocab.idx_to_token
    tokens = torch.randint(0, len(vocab), (2, 12))
    with torch.no_grad():
        want, _ = model(tokens)
    feeds = {s["input"]: np.zeros((s["shape"][0], 2, s["shape"][2]), np.float32) for s in meta["state"]}
    for t in range(12):
        logits, *states = session.run(None, {"token": tokens[:, t].numpy(), **feeds})
        feeds = dict(zip(feeds, states))
        np.testing.assert_allclose(logits, want[:, t].numpy(), rtol=1e-5, atol=1e-5)
    if cell in ("lstm", "jordan", "indrnn", "mingru"):
        assert export_language_model(model, vocab, tmp_path / "m.pt2", "torch-export").is_file()


def test_export_bad_input(runs, tmp_path, capsys):
    run = runs["word-gru"]
    assert export_cmd.main([str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "rnnkit export: error: checkpoint" in err and "does not exist" in err and err.count("\n") == 1
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert export_cmd.main([str(run), "--out", str(blocker / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert "cannot write into" in err and err.count("\n") == 1
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only(locked)
    try:
        assert export_cmd.main([str(run), "--out", str(locked / "m.onnx")]) == 1
        err = capsys.readouterr().err
        assert f"cannot write into '{locked}'" in err and err.count("\n") == 1
        assert not list(locked.iterdir())
    finally:
        writable(locked)
    locked.rmdir()
    with pytest.raises(SystemExit) as e:
        export_cmd.main([str(run), "--format", "tflite"])
    assert e.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
    assert (
        export_cmd.main([str(run), "--format", "torch-export", "--engine", "warp", "--out", str(tmp_path / "x")]) == 1
    )
    assert "unknown engine 'warp'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]

    sys.path.insert(0, str(Path(__file__).parent))
    from _toy import ToyTask
    from rnnkit.train import TrainConfig
    from rnnkit.train import train as train_loop

    train_loop(
        LanguageModel(6, hidden_size=4),
        ToyTask(),
        TrainConfig(steps=2, eval_every=2, plot=False),
        out_dir=tmp_path / "toy",
    )
    assert export_cmd.main([str(tmp_path / "toy")]) == 1
    assert "not a language model" in capsys.readouterr().err
    with pytest.raises(ValueError, match="bidirectional language model"):
        model = LanguageModel(4, "gru", 3)
        model.rnn = type(model.rnn)(4, 3, bidirectional=True, batch_first=True)
        export_language_model(model, Vocab(list("abc")), tmp_path / "bi.onnx")
