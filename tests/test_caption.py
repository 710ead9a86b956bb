import pytest
import torch

from rnnkit.tasks.caption import (
    ALPHABET,
    BOS,
    EOS,
    NAMES,
    PAD,
    CaptionData,
    Captioner,
    CaptionModel,
    CaptionTask,
    caption_targets,
    decode_name,
    encode_name,
    load_split,
)


def test_alphabet_and_spelling_round_trip():
    assert ALPHABET[:3] == ("<pad>", "<bos>", "<eos>")
    for name in NAMES:
        assert decode_name(encode_name(name)) == name
    with pytest.raises(ValueError, match="alphabet"):
        encode_name("eleven!")


def test_caption_targets_are_shifted_and_padded():
    tgt_in, tgt_out = caption_targets(torch.tensor([1, 7]))  # "one", "seven"
    assert tgt_in.shape == tgt_out.shape == (2, 6)
    assert tgt_in[0].tolist() == [BOS, *encode_name("one"), PAD, PAD]
    assert tgt_out[0].tolist() == [*encode_name("one"), EOS, PAD, PAD]
    assert tgt_out[1].tolist() == [*encode_name("seven"), EOS]
    assert (tgt_in[:, 1:][tgt_in[:, 1:] != PAD] == tgt_out[:, :-1][tgt_in[:, 1:] != PAD]).all()


def test_split_is_stratified_and_disjoint():
    splits = load_split(CaptionData(val_fraction=0.2, test_fraction=0.2))
    total = sum(len(y) for _, y in splits.values())
    assert total == 1797
    for name in ("val", "test"):
        counts = torch.bincount(splits[name][1], minlength=10)
        assert counts.min() >= 34 and counts.max() <= 38  # ~20 % of each digit's ~180 images
    # the splits partition the images: their digit counts add up to the whole set's
    everything = torch.cat([y for _, y in splits.values()])
    from sklearn.datasets import load_digits

    assert torch.bincount(everything).tolist() == torch.bincount(torch.tensor(load_digits().target)).tolist()
    assert splits["train"][0].max() <= 1.0 and splits["train"][0].min() >= 0.0


@pytest.mark.parametrize("cell,layers", [("gru", 1), ("lstm", 2)])
def test_initial_state_comes_from_the_image(cell, layers):
    torch.manual_seed(0)
    model = Captioner(cfg=CaptionModel(cell=cell, hidden_size=8, embed_size=4, num_layers=layers)).double()
    images = torch.rand(3, 64, dtype=torch.float64)
    state = model.initial_state(images)
    states = (state,) if cell == "gru" else state
    for s in states:
        assert s.shape == (layers, 3, 8)
    # the same characters after different images give different predictions: the image conditions the decoder
    tgt_in, _ = caption_targets(torch.tensor([3, 3, 3]))
    logits = model(images, tgt_in)
    assert not torch.allclose(logits[0], logits[1])
    # teacher forcing with the greedy prefix reproduces greedy's choices
    words = model.greedy(images, max_len=6)
    for i, w in enumerate(words):
        prefix = torch.tensor([[BOS, *encode_name(w)]])
        choice = model(images[i : i + 1], prefix).argmax(-1)[0].tolist()
        assert choice[: len(w)] == encode_name(w)


def test_learns_to_caption_better_than_chance_and_close_to_a_classifier(tmp_path):
    """Short training with the one loop (CPU seconds): exact-match accuracy far above chance (10 %)."""
    from rnnkit.train import OptimConfig, TrainConfig, train

    torch.manual_seed(0)
    task = CaptionTask(CaptionData(batch_size=64))
    model = Captioner(cfg=CaptionModel(hidden_size=48))
    before = task.evaluate(model, "test")
    cfg = TrainConfig(steps=150, eval_every=150, log_every=50, plot=False, optim=OptimConfig(lr=1e-2))
    train(model, task, cfg, out_dir=tmp_path)
    after = task.evaluate(model, "test")
    base = task.baselines()
    assert before["exact_match"] < 0.2
    assert after["exact_match"] > 0.8 > 5 * base["chance"] > 0.4
    assert after["loss"] < before["loss"] / 10
    assert base["logistic_regression"] > 0.9


def test_bad_config():
    with pytest.raises(ValueError, match="fraction"):
        CaptionData(val_fraction=0.0)
    with pytest.raises(ValueError, match="hidden_size"):
        CaptionModel(hidden_size=0)


def test_cli_train_and_eval(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "rnnkit", "caption", *args], capture_output=True, text=True,
                              env=env, timeout=600)  # fmt: skip

    out = tmp_path / "run"
    r = cli("train", "--out", str(out), "--steps", "120", "--eval-every", "60", "--optim.lr", "0.01", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "exact match" in r.stdout and "logistic regression" in r.stdout
    r = cli("eval", "--checkpoint", str(out), "--show", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("(truth '") == 2
    r = cli("eval", "--checkpoint", str(tmp_path / "missing"))
    assert r.returncode == 1 and r.stderr.startswith("rnnkit caption: error:") and "Traceback" not in r.stderr
    r = cli("train", "--data.val_fraction", "0")
    assert r.returncode == 2 and "fraction" in r.stderr


def test_example_beats_its_baselines():
    """examples/caption_digits.py asserts its own result against chance and the majority digit."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, str(root / "examples" / "caption_digits.py")], env=env, capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "test exact match" in r.stdout
