import json
import os
from pathlib import Path

import pytest
import torch

from rnnkit.tasks.translate import (
    SPECIALS,
    TranslateData,
    TranslationTask,
    Vocab,
    make_batch,
    pad_batch,
    padding_mask,
    prepare,
    preprocess,
    read_pairs,
    tokenize,
)

DATA_DIR = Path(os.environ.get("RNNKIT_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
FRA_ENG = DATA_DIR / "fra-eng.txt"
needs_corpus = pytest.mark.skipif(not FRA_ENG.is_file(), reason="fra-eng.txt not found (set RNNKIT_DATA_DIR)")

PAIRS = [
    ("Go.", "Va !"),
    ("I lost.", "J'ai perdu."),
    ("He's calm.", "Il est calme."),
    ("I'm home.", "Je suis chez moi."),
    ("I'm home.", "Je suis à la maison."),
    ("Go away!", "Va-t'en !"),
    ("I'm calm.", "Je suis calme."),
    ("He lost.", "Il a perdu."),
    ("Hello, Tom.", "Bonjour, Tom."),
    ("Stop!", "Arrête !"),
]


def write_pairs(path: Path, pairs=PAIRS) -> Path:
    path.write_text("".join(f"{en}\t{fr}\n" for en, fr in pairs), encoding="utf-8")
    return path


def test_preprocess_follows_d2l():
    assert preprocess("Go.") == "go ."
    assert preprocess("Run!") == "run !"
    assert preprocess("Cours\u202f!") == "cours !"  # narrow no-break space (as in the corpus)
    assert preprocess("Quoi\xa0?") == "quoi ?"  # ordinary no-break space
    assert preprocess("Hello,Tom.") == "hello ,tom ."
    assert preprocess("I'm home.") == "i'm home ."
    assert preprocess("Wait !") == "wait !"  # already spaced: no double space
    assert tokenize(preprocess("He's calm.")) == ["he's", "calm", "."]


@needs_corpus
def test_real_corpus_first_pairs():
    pairs = read_pairs(FRA_ENG, max_pairs=3)
    assert [(preprocess(e), preprocess(f)) for e, f in pairs] == [
        ("go .", "va !"),
        ("hi .", "salut !"),
        ("run !", "cours !"),
    ]


def test_read_pairs_bad_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_pairs(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no sentence pairs"):
        read_pairs(tmp_path / "empty.txt")
    (tmp_path / "one.txt").write_text("Go.\tVa !\nHello there\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"one.txt:2: .*got 1 column"):
        read_pairs(tmp_path / "one.txt")
    (tmp_path / "four.txt").write_text("a\tb\tc\td\n", encoding="utf-8")
    with pytest.raises(ValueError, match="got 4 column"):
        read_pairs(tmp_path / "four.txt")
    # the newer manythings.org format has a third, attribution column: accepted and ignored
    (tmp_path / "three.txt").write_text("Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272\n")
    assert read_pairs(tmp_path / "three.txt") == [("Go.", "Va !")]


def test_vocab_specials_min_freq_unknown():
    v = Vocab.build([["a", "b", "a"], ["c", "a", "b"]], min_freq=2)
    assert v.itos[:4] == list(SPECIALS) and (v.pad, v.bos, v.eos, v.unk) == (0, 1, 2, 3)
    assert v.itos[4:] == ["a", "b"]  # by frequency; "c" (seen once) is dropped
    assert v.encode(["a", "c", "b"]) == [4, 3, 5]
    assert v.unknown(["a", "zz"]) == ["zz"]
    assert v.decode([4, 5]) == ["a", "b"]
    assert Vocab(v.itos).itos == v.itos  # rebuilt from metadata
    with pytest.raises(ValueError, match="start with"):
        Vocab(["a", "b", "c", "d"])


def test_padding_and_masks():
    padded, lengths = pad_batch([[5, 6, 7], [8]])
    assert padded.tolist() == [[5, 6, 7], [8, 0, 0]] and lengths.tolist() == [3, 1]
    assert padding_mask(lengths).tolist() == [[True, True, True], [True, False, False]]
    src_v = Vocab.build([["go", "."]])
    tgt_v = Vocab.build([["va", "!"]])
    b = make_batch([(["go", "."], ["va", "!"]), (["go"], ["va"])], src_v, tgt_v)
    va, bang = tgt_v.stoi["va"], tgt_v.stoi["!"]
    assert b["tgt_in"].tolist() == [[1, va, bang], [1, va, 0]]  # <bos> + target
    assert b["tgt_out"].tolist() == [[va, bang, 2], [va, 2, 0]]  # target + <eos>
    assert b["src_len"].tolist() == [2, 1]


def test_split_by_source_sentence_without_leakage(tmp_path):
    pairs = [(f"Sentence {i}.", f"Phrase {i} {j}.") for i in range(60) for j in range(i % 3 + 1)]
    cfg = TranslateData(path=str(write_pairs(tmp_path / "p.txt", pairs)), val_fraction=0.2, test_fraction=0.2)
    train, val, test = prepare(cfg)
    seen = {tuple(s) for s, _ in train.pairs}
    for split in (val, test):
        assert not seen & {tuple(s) for s in split.sources}
        for s, refs in zip(split.sources, split.references):
            i = int(s[1])
            assert sorted(refs) == sorted(f"phrase {i} {j} ." for j in range(i % 3 + 1))  # all references kept
    assert len(train.pairs) + len(val.pairs) + len(test.pairs) == len(pairs)
    assert (len(val.sources), len(test.sources)) == (12, 12)


def test_length_filter_and_truncation(tmp_path):
    pairs = [("a b c d e f.", "x."), *[(f"w{i}.", f"v{i}.") for i in range(20)]]
    path = str(write_pairs(tmp_path / "p.txt", pairs))
    train, val, test = prepare(TranslateData(path=path, max_len=4, val_fraction=0.1, test_fraction=0.1))
    everything = train.pairs + val.pairs + test.pairs
    assert len(everything) == 20 and max(len(s) for s, _ in everything) == 2
    train, val, test = prepare(
        TranslateData(path=path, max_len=4, long_pairs="truncate", val_fraction=0.1, test_fraction=0.1)
    )
    everything = train.pairs + val.pairs + test.pairs
    assert len(everything) == 21 and ["a", "b", "c", "d"] in [s for s, _ in everything]
    with pytest.raises(ValueError, match="max_len"):
        TranslateData(max_len=0)
    with pytest.raises(ValueError, match="fraction"):
        TranslateData(val_fraction=0.6, test_fraction=0.5)


def fit(task, model, steps, out_dir, lr=1e-2):
    """The one training loop, briefly (evaluation only at the end)."""
    from rnnkit.train import OptimConfig, TrainConfig, train

    cfg = TrainConfig(steps=steps, eval_every=steps, log_every=steps, plot=False, optim=OptimConfig(lr=lr))
    return train(model, task, cfg, out_dir=out_dir)


def test_tiny_end_to_end_overfit(tmp_path):
    """A small attention model memorises ten pairs: greedy and beam outputs equal the references."""
    from rnnkit.tasks.seq2seq import Seq2Seq

    torch.manual_seed(0)
    path = str(write_pairs(tmp_path / "p.txt", PAIRS * 3))
    cfg = TranslateData(path=path, min_freq=1, batch_size=10, val_fraction=0.1, test_fraction=0.1)
    train, val, test = prepare(cfg)
    # train on everything (the point is memorisation, not generalisation)
    everything = type(train)(train.pairs + val.pairs + test.pairs, train.sources + val.sources + test.sources,
                             train.references + val.references + test.references)  # fmt: skip
    task = TranslationTask(cfg, (everything, val, test))
    model = Seq2Seq(len(task.src_vocab), len(task.tgt_vocab), embed_size=16, hidden_size=32, num_layers=1, dropout=0.0)
    before = task.evaluate(model, split="train", max_sentences=0)
    result = fit(task, model, steps=150, out_dir=tmp_path / "run")
    assert result.step == 150
    after = task.evaluate(model, split="train", max_sentences=0)
    assert after["loss"] < 0.1 * before["loss"]
    assert after["bleu"] > 90 and before["bleu"] < 10
    hyps = task.translate_tokens(
        model, [tokenize(preprocess(e)) for e in ("Go.", "I lost.", "He's calm.")], beam_size=3
    )
    assert hyps == ["va !", "j'ai perdu .", "il est calme ."]


# ------------------------------------------------------------------------------------------------
# the command line
def rnnkit_cli(*args, stdin=None):
    import subprocess
    import sys

    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "rnnkit", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=600)  # fmt: skip


def test_cli_train_eval_predict_and_bad_input(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.txt", PAIRS * 3)
    out = tmp_path / "run"
    tiny = ["--data.path", str(pairs), "--data.min_freq", "1", "--data.batch_size", "10", "--data.val_fraction",
            "0.1", "--data.test_fraction", "0.1", "--model.hidden_size", "16", "--model.embed_size", "8",
            "--model.num_layers", "1", "--steps", "60", "--eval-every", "60", "--threads", "1"]  # fmt: skip
    r = rnnkit_cli("translate", "train", "--out", str(out), *tiny)
    assert r.returncode == 0, r.stderr
    assert "tatoeba.org" in r.stderr + r.stdout  # the CC BY attribution is shown
    assert "corpus BLEU greedy" in r.stdout and "go . =>" in r.stdout
    report = json.loads((out / "test.json").read_text())
    assert report["steps"] == 60 and 0 <= report["bleu_greedy"] <= 100 and len(report["examples"]) == 4

    r = rnnkit_cli("translate", "predict", "--checkpoint", str(out), "--decode.beam_size", "1", "Go.", "Zebra!")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 2  # one line per sentence (a tiny model may translate one as nothing)
    assert "zebra" in r.stderr and "<unk>" in r.stderr  # unknown word: warned about, translated as <unk>
    r = rnnkit_cli("translate", "predict", "--checkpoint", str(out), stdin="I lost.\n\nHe's calm.\n")
    assert r.returncode == 0 and len(r.stdout.strip().splitlines()) == 2
    r = rnnkit_cli("translate", "predict", "--checkpoint", str(out), "--show_attention", "true", "He's calm.")
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.strip().splitlines()[1:]
    assert header.split("|")[1].split() == ["he's", "calm", "."] and rows[-1].split("|")[0].strip() == "<eos>"
    for row in rows:  # each output word's attention over the source words, in %, sums to 100
        assert abs(sum(int(v) for v in row.split("|")[1].split()) - 100) <= 2
    r = rnnkit_cli("translate", "predict", "--checkpoint", str(out), "--strict", "true", "Zebra!")
    assert r.returncode == 1 and "zebra" in r.stderr and "Traceback" not in r.stderr

    # bad input: one clear line, non-zero exit, the existing run untouched
    bad = tmp_path / "bad.txt"
    bad.write_text("Go.\tVa !\nno tab here\n", encoding="utf-8")
    before = sorted(p.name for p in out.iterdir())
    r = rnnkit_cli("translate", "train", "--out", str(out), "--data.path", str(bad), "--overwrite")
    assert r.returncode == 1 and "bad.txt:2" in r.stderr and "column" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == before
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    r = rnnkit_cli("translate", "train", "--out", str(tmp_path / "e"), "--data.path", str(empty))
    assert r.returncode == 1 and "no sentence pairs" in r.stderr
    r = rnnkit_cli("translate", "eval", "--checkpoint", str(tmp_path / "nowhere"))
    assert r.returncode == 1 and "does not exist" in r.stderr
    r = rnnkit_cli("translate", "train", "--model.cell", "rnn")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_cli_eval_in_process(tmp_path, capsys):
    """eval rebuilds the split from the run's settings and the vocabulary from the checkpoint."""
    from rnnkit.commands.translate import TranslateTrainConfig, main, train_translator
    from rnnkit.tasks.seq2seq import Seq2SeqConfig

    pairs = write_pairs(tmp_path / "pairs.txt", PAIRS * 3)
    cfg = TranslateTrainConfig(
        steps=80, eval_every=80, out=str(tmp_path / "run"), plot=False,
        data=TranslateData(path=str(pairs), min_freq=1, batch_size=10, val_fraction=0.1, test_fraction=0.1),
        model=Seq2SeqConfig(embed_size=8, hidden_size=16, num_layers=1, dropout=0.0, attention=False),
    )  # fmt: skip
    report = train_translator(cfg)
    assert main(["eval", "--checkpoint", cfg.out, "--json", "--decode.beam_size", "2"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["bleu_greedy"] == pytest.approx(report["bleu_greedy"])
    assert scores["loss"] == pytest.approx(report["loss"])


@needs_corpus
def test_example_beats_its_baseline():
    """examples/translate_tiny.py asserts held-out BLEU above the constant-translation baseline."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "RNNKIT_DATA_DIR": str(DATA_DIR)}  # fmt: skip
    r = subprocess.run([sys.executable, str(root / "examples" / "translate_tiny.py")], env=env, capture_output=True,
                       text=True, timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "held-out corpus BLEU" in r.stdout


def test_stop_and_resume_is_exact(tmp_path):
    """translate train with stop_at, then --resume, ends where one uninterrupted run ends."""
    from dataclasses import replace

    from rnnkit.commands.translate import TranslateTrainConfig, train_translator
    from rnnkit.tasks.seq2seq import Seq2SeqConfig

    pairs = write_pairs(tmp_path / "pairs.txt", PAIRS * 3)
    cfg = TranslateTrainConfig(
        steps=24, eval_every=12, out=str(tmp_path / "whole"), plot=False, eval_sentences=0,
        data=TranslateData(path=str(pairs), min_freq=1, batch_size=8, val_fraction=0.1, test_fraction=0.1),
        model=Seq2SeqConfig(embed_size=8, hidden_size=16, num_layers=2, dropout=0.1),
    )  # fmt: skip
    whole = train_translator(cfg)
    parts = replace(cfg, out=str(tmp_path / "parts"), stop_at=12)
    assert train_translator(parts)["steps"] == 12
    resumed = train_translator(replace(parts, stop_at=0), resume=True)
    assert resumed["steps"] == 24
    assert resumed["loss"] == pytest.approx(whole["loss"], rel=1e-5)
    assert resumed["bleu_greedy"] == pytest.approx(whole["bleu_greedy"])
