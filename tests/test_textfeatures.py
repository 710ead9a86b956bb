"""Text features and the unit scores built on them (rnnkit.diagnostics.textfeatures)."""

import numpy as np

from rnnkit.diagnostics.textfeatures import FEATURES, correlations, text_features, top_contexts


def test_features_golden():
    text = "He said 'it's (a) \"b\"'\n\t x"
    f = text_features(list(text))
    assert set(f) == set(FEATURES)
    row = lambda name: "".join(str(int(v)) for v in f[name])  # noqa: E731
    assert row("line position")[:10] == "1234567891"  # columns count up, 10 -> "1" shown as its last digit
    assert f["line position"][text.index("\n")] == 0 and f["line position"][-1] == 3
    #                               He said 'it's (a) "b"'⏎⇥ x
    assert row("inside quotes") == "00000000111111111111100000"  # the apostrophe of it's does not close it
    assert row("bracket depth") == "00000000000000110000000000"
    assert row("indentation") == "00000000000000000000000455"  # a tab counts 4, the space one more
    np.testing.assert_array_equal(f["position in text"], np.arange(len(text)))


def test_features_at_word_level_use_the_separators():
    tokens, seps = ["(", "a", ")", "b", '"', "c", '"'], ["", "", "", " ", " ", "", ""]
    f = text_features(tokens, seps)
    np.testing.assert_array_equal(f["bracket depth"], [1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(f["inside quotes"], [0, 0, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(f["line position"], [1, 2, 3, 5, 7, 8, 9])
    assert all(len(v) == 0 for v in text_features([]).values())


def test_correlations_are_pearson_r():
    rng = np.random.default_rng(0)
    feature = rng.normal(size=200)
    states = np.stack([feature * 3 + 1, -feature, rng.normal(size=200), np.full(200, 0.5)], axis=1)
    r = correlations(states, feature)
    np.testing.assert_allclose(r[:3], [1, -1, np.corrcoef(states[:, 2], feature)[0, 1]], atol=1e-12)
    assert r[3] == 0  # a unit that never changes tracks nothing
    assert correlations(states, np.ones(200)) is None  # a feature absent from the text


def test_top_contexts_are_the_largest_values_kept_apart():
    values = np.zeros((100, 2))
    values[[10, 11, 12, 50, 90], 0] = [5, 4.9, 4.8, 3, 2]  # one stretch (10-12) and two lone peaks
    values[:, 1] = -np.arange(100)  # decreasing: the largest values are at the start
    top = top_contexts(values, 3, gap=5)
    assert top[0].tolist() == [10, 50, 90]  # 11 and 12 are too close to 10
    assert top[1].tolist() == [0, 5, 10]
    assert top_contexts(values[:3], 3, gap=5)[0].tolist() == [0, -1, -1]  # fewer than k far enough apart
