import math

import pytest

from rnnkit.tasks.bleu import corpus_bleu, d2l_bleu, mean_d2l_bleu


def test_d2l_examples_exact_translations_score_one():
    # d2l's attention chapter prints these four translations with bleu 1.000
    for pred in ("va !", "j'ai perdu .", "il est calme .", "je suis chez moi ."):
        assert d2l_bleu(pred, pred, k=2) == 1.0


def test_d2l_bleu_golden_same_length():
    # pred "il est bon ." vs label "il est calme .": equal lengths -> brevity penalty 1;
    # unigram precision 3/4 (il, est, .), bigram precision 1/3 (only "il est") -> (3/4)^(1/2) (1/3)^(1/4)
    assert d2l_bleu("il est bon .", "il est calme .", k=2) == pytest.approx(0.658037, abs=1e-6)


def test_d2l_bleu_golden_brevity_penalty():
    # pred "il court ." (3 words) vs label "il est calme ." (4 words): penalty exp(1 - 4/3);
    # unigrams 2/3 (il, .), bigrams 0/2 -> the whole score is 0 (no smoothing, as in d2l)
    assert d2l_bleu("il court .", "il est calme .", k=2) == 0.0
    # pred "il est ." vs the same label: penalty exp(-1/3), p1 = 3/3, p2 = 1/2 ("il est")
    assert d2l_bleu("il est .", "il est calme .", k=2) == pytest.approx(math.exp(-1 / 3) * 0.5**0.25, rel=1e-12)
    assert d2l_bleu("il est .", "il est calme .", k=2) == pytest.approx(0.6025286, abs=1e-7)


def test_d2l_bleu_clips_repeated_ngrams_and_longer_prediction():
    # "la la la" vs "la mer": each label word can be matched once -> p1 = 1/3; p2 = 0 -> 0
    assert d2l_bleu("la la la", "la mer", k=1) == pytest.approx(1 / 3 ** (1 / 2))
    # a prediction longer than its label gets no brevity penalty (min(0, ·))
    assert d2l_bleu("je suis chez moi .", "je suis chez moi", k=1) == pytest.approx((4 / 5) ** 0.5)


def test_d2l_bleu_edge_cases():
    assert d2l_bleu("", "va !") == 0.0
    with pytest.raises(ValueError, match="k"):
        d2l_bleu("a", "a", k=0)


def test_mean_d2l_bleu_takes_best_reference():
    assert mean_d2l_bleu(["va !", "cours !"], [["allez !", "va !"], ["courez !"]], k=2) == pytest.approx(
        (1.0 + d2l_bleu("cours !", "courez !")) / 2
    )
    with pytest.raises(ValueError, match="predictions"):
        mean_d2l_bleu(["a"], [])


def test_corpus_bleu_golden():
    assert corpus_bleu(["je suis chez moi ."] * 3, [["je suis chez moi ."]] * 3) == pytest.approx(100.0)
    # one sentence, 5 words, last one wrong: p1..p4 = 4/5, 3/4, 2/3, 1/2, equal length ->
    # BLEU = (4/5 * 3/4 * 2/3 * 1/2)^(1/4) = 0.2^(1/4)
    assert corpus_bleu(["a b c d e"], [["a b c d f"]]) == pytest.approx(100 * 0.2**0.25, abs=1e-6)
    # a second reference that matches fully makes it perfect: multi-reference BLEU
    assert corpus_bleu(["a b c d e"], [["a b c d f", "a b c d e"]]) == pytest.approx(100.0)
    # sentences may have different numbers of references
    assert corpus_bleu(["a b c d", "x y z w"], [["a b c d"], ["q", "x y z w"]]) == pytest.approx(100.0)


def test_corpus_bleu_bad_input():
    with pytest.raises(ValueError, match="reference"):
        corpus_bleu(["a"], [[]])
    with pytest.raises(ValueError, match="predictions"):
        corpus_bleu(["a", "b"], [["a"]])
