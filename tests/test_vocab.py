"""Tokenisation and Vocab: d2l's 28-token vocabulary, ordering, min_freq, round trips."""

import json
import os
from pathlib import Path

import pytest

from rnnkit.data import UNK, Vocab, normalize_text, tokenize

DATA_DIR = os.environ.get("RNNKIT_DATA_DIR")
TIMEMACHINE = Path(DATA_DIR or "/nonexistent") / "timemachine.txt"


def test_tokenize_char_and_word():
    assert tokenize("ab c", "char") == ["a", "b", " ", "c"]
    assert tokenize("It's 4 o'clock!", "word") == ["It's", "4", "o'clock", "!"]
    assert tokenize("It's 4 o'clock!", "word", "d2l") == ["it", "s", "o", "clock"]


def test_d2l_normalisation_collapses_non_letter_runs():
    assert normalize_text("The  Time-Machine, 1895!\nBy H.G.", "d2l") == "the time machine by h g "
    assert tokenize("A1b", "char", "d2l") == ["a", " ", "b"]


def test_bad_level_and_normalize():
    with pytest.raises(ValueError, match="unknown level='byte'"):
        tokenize("x", "byte")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown normalize='nfkc'"):
        tokenize("x", "char", "nfkc")  # type: ignore[arg-type]


def test_order_unk_reserved_then_frequency_ties_by_codepoint():
    v = Vocab(list("bbbaacdd"), reserved=["<pad>", "<eos>"])
    # b:3, then a and d tie at 2 (a < d), then c:1
    assert v.idx_to_token == [UNK, "<pad>", "<eos>", "b", "a", "d", "c"]
    assert v.unk == 0 and v["zzz"] == 0 and v["b"] == 3
    assert v.token_freqs == [("b", 3), ("a", 2), ("d", 2), ("c", 1)]
    # the order does not depend on the order tokens arrive in
    assert Vocab(list("ddcaabbb"), reserved=["<pad>", "<eos>"]).idx_to_token == v.idx_to_token


def test_min_freq_maps_rare_tokens_to_unk():
    v = Vocab("the cat the dog the cat".split(), min_freq=2)
    assert v.idx_to_token == [UNK, "the", "cat"]
    assert v.encode(["the", "dog", "cat"]) == [1, 0, 2]
    assert v.unknown(["the", "dog", "bird", "dog"]) == ["dog", "bird"]
    assert "dog" not in v and "cat" in v


def test_nested_token_lists_are_flattened_like_d2l():
    assert Vocab([["a", "b"], ["b"]]).idx_to_token == [UNK, "b", "a"]


def test_encode_decode_round_trip_char_and_word():
    text = "hello world, hello rnn"
    cv = Vocab.from_text(text, "char")
    assert cv.level == "char" and cv.decode(cv.encode(text)) == text
    wv = Vocab.from_text(text, "word")
    assert wv.level == "word"
    assert wv.decode(wv.encode(text)) == text  # no space before closing punctuation
    pv = Vocab.from_text("f(x) = [a, b]; done! (yes)", "word")
    assert pv.decode(pv.encode("f(x) = [a, b]; done! (yes)")) == "f (x) = [a, b]; done! (yes)"
    assert wv.to_tokens(wv.encode("rnn")) == ["rnn"]


def test_level_is_inferred():
    assert Vocab(list("abc")).level == "char"
    assert Vocab(["ab", "c"]).level == "word"


def test_to_dict_from_dict_exact_round_trip_through_json():
    v = Vocab.from_text(
        "The Time Traveller, for so it will be convenient", "char", "d2l", min_freq=2, reserved=["<bos>"]
    )
    w = Vocab.from_dict(json.loads(json.dumps(v.to_dict())))
    assert w == v
    assert w.idx_to_token == v.idx_to_token and w.token_to_idx == v.token_to_idx
    assert w.token_freqs == v.token_freqs and (w.level, w.normalize, w.min_freq) == ("char", "d2l", 2)
    assert w.tokenize("AB") == ["a", "b"]


def test_from_dict_rejects_corrupt_input():
    with pytest.raises(ValueError, match="lacks"):
        Vocab.from_dict({"idx_to_token": ["a"]})
    d = Vocab(list("ab")).to_dict()
    d["idx_to_token"] = ["a", UNK]
    with pytest.raises(ValueError, match="must start with '<unk>'"):
        Vocab.from_dict(d)


def test_bad_min_freq():
    with pytest.raises(ValueError, match="min_freq must be >= 0"):
        Vocab(["a"], min_freq=-1)


@pytest.mark.skipif(not TIMEMACHINE.is_file(), reason="RNNKIT_DATA_DIR with timemachine.txt not available")
def test_d2l_time_machine_char_vocab_has_28_tokens():
    text = TIMEMACHINE.read_text(encoding="utf-8")
    v = Vocab.from_text(text, "char", "d2l")
    assert len(v) == 28
    assert set(v.idx_to_token) == {UNK, " ", *"abcdefghijklmnopqrstuvwxyz"}
    # d2l's most frequent characters: space, e, t, a
    assert v.idx_to_token[1:5] == [" ", "e", "t", "a"]
    counts = dict(v.token_freqs)
    normalised = normalize_text(text, "d2l")
    assert counts[" "] == normalised.count(" ") and sum(counts.values()) == len(normalised)
    assert len(normalised) == 173_428  # d2l prints (173428, 28) for len(corpus), len(vocab)
    # word level with d2l's normalisation: d2l reports 4580 entries including <unk>
    assert len(Vocab.from_text(text, "word", "d2l")) == 4580


@pytest.mark.parametrize("text", ["abracadabra", "héllo wörld ✓ 𝄞 emoji 😀 and\ttabs\n", "x", "aAbB" * 50])
@pytest.mark.parametrize("min_freq", [0, 2])
def test_char_codes_path_equals_the_list_path(text, min_freq):
    """The NumPy path for large character corpora builds the same vocabulary and ids as list(text)."""
    from rnnkit.data.vocab import char_codes

    slow = Vocab(list(text), min_freq, level="char")
    fast = Vocab.from_char_codes(char_codes(text), min_freq)
    assert fast == slow
    assert fast.encode_char_codes(char_codes(text)).tolist() == slow.encode(list(text))
    assert slow.encode_char_codes(char_codes("zzz" + text)).tolist() == slow.encode(list("zzz" + text))
