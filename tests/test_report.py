"""rnnkit.diagnostics.report: the numbers in an inspect report, its size, and how it is written."""

import base64
import html
import json
import re

import numpy as np
import pytest
import torch

from rnnkit import GRU
from rnnkit.data import Vocab
from rnnkit.diagnostics import report as report_mod
from rnnkit.diagnostics.report import Report, check_output_folder, inspect_layer, inspect_model, read_text
from rnnkit.diagnostics.textfeatures import correlations, text_features
from rnnkit.models import LanguageModel
from rnnkit.tasks.lm import score

TEXT = 'The Time Traveller (for so it will be convenient to speak of him)\n  was "expounding" a matter.\n' * 6


@pytest.fixture
def lm():
    vocab = Vocab.from_text(TEXT)
    return LanguageModel(len(vocab), "lstm", 8, 2), vocab


def page_data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="rnnkit-data">(.*?)</script>', page, re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def decode(state: dict, coloured: int) -> np.ndarray:
    """The 4-bit levels of one state as (units, coloured), as report.js decodes them."""
    raw = np.frombuffer(base64.b64decode(state["levels"]), np.uint8).reshape(state["units"], -1)
    q = np.stack([raw >> 4, raw & 15], axis=2).reshape(state["units"], -1)
    return q[:, :coloured]


def test_model_report_numbers(lm):
    model, vocab = lm
    text = TEXT + "Zß"  # two characters the vocabulary lacks
    r = read_text(model, vocab, text)
    rep = inspect_model(model, vocab, r, gradflow_steps=20, top_k=3)
    d = rep.data
    T = len(text)
    assert d["tokens"] == list(text) and d["oov"] == [T - 2, T - 1] and d["coloured"] == T
    # the per-token loss is the model's own: its mean equals rnnkit evaluate's score of the same ids
    with torch.no_grad():
        ref = score(model, r.ids, batch_size=1, num_steps=64)
    assert d["loss"][0] is None and len(d["loss"]) == T
    assert d["loss_mean"] == pytest.approx(ref["loss"], rel=1e-5)
    assert len(d["gradflow"]) == 2 and len(d["gradflow"][0]) == 20
    feats = text_features(r.tokens)
    for b, block in enumerate(r.blocks):
        out = d["blocks"][b]
        assert out["name"] == f"layer {b + 1}" and [s["kind"] for s in out["states"]] == ["c", "h"]
        for g in out["gates"]:  # saturation: fractions of steps below 10 % / above 90 % of the range
            values = block.gates[g["name"]]
            if g["name"] == "c":
                assert g["range"] is None and g["left"] is None and g["hist"]["clipped"]
                continue
            lo, hi = g["range"]
            np.testing.assert_allclose(g["left"], (values < lo + 0.1 * (hi - lo)).mean(0), atol=1e-4)
            np.testing.assert_allclose(g["right"], (values > lo + 0.9 * (hi - lo)).mean(0), atol=1e-4)
            assert sum(g["hist"]["fraction"]) == pytest.approx(1, abs=1e-3)
        for s in out["states"]:
            values = block.states[s["kind"]]
            levels = decode(s, T)  # each level is within one level width of the value it stands for
            centre = ((levels.T + 0.5) / 16 * 2 - 1) * np.array(s["scale"])
            assert np.abs(centre - values).max() <= np.max(s["scale"]) / 16 + 1e-4
            r_line = correlations(values, feats["line position"])
            np.testing.assert_allclose(s["feature_r"]["line position"], r_line, atol=1e-3)
            assert s["feature_r"]["indentation"] is not None and s["feature_r"]["inside quotes"] is not None
            for u, positions in enumerate(s["top"]):  # the first context is the unit's maximum
                assert values[positions[0], u] == values[:, u].max()
                assert values[s["bottom"][u][0], u] == values[:, u].min()
    ranked = d["ranking"]["line position"]
    assert [abs(x[3]) for x in ranked] == sorted((abs(x[3]) for x in ranked), reverse=True)
    best = max((v[0] for f, v in d["ranking"].items() if f != "position in text"), key=lambda x: abs(x[3]))
    assert d["initial"] == dict(zip(("block", "kind", "unit"), best[:3]))
    assert all(d["present"].values()) and len(d["present"]) == 5


def test_page_is_self_contained_and_renders_in_jupyter(lm, tmp_path):
    model, vocab = lm
    rep = inspect_model(model, vocab, TEXT[:150] + "</script><b>", gradflow_steps=0)
    page = rep.html()
    assert page_data(page) == json.loads(json.dumps(rep.data))  # the data survives the page, </script> too
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)  # nothing fetched
    assert "report.js" not in page and "function recolour" in page and ".q15{" in page
    frame = rep._repr_html_()
    assert frame.startswith("<iframe srcdoc=") and 'sandbox="allow-scripts"' in frame
    assert html.unescape(re.search(r'srcdoc="(.*?)" sandbox', frame, re.S).group(1)) == page
    path = rep.save(tmp_path / "r.html")
    assert path.read_text(encoding="utf-8") == page and [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_any_layer_bidirectional(tmp_path):
    layer = GRU(3, 5, num_layers=2, bidirectional=True)
    rep = inspect_layer(layer, torch.randn(40, 3), [chr(97 + i % 26) for i in range(40)])
    d = rep.data
    assert [b["name"] for b in d["blocks"]] == ["layer 1", "layer 1 reverse", "layer 2", "layer 2 reverse"]
    assert [g["name"] for g in d["blocks"][1]["gates"]] == ["r", "z", "n"]
    assert d["loss"] is None and d["gradflow"] is None and d["seps"] is None
    # "abc…": one long line, so only the position varies
    assert [f for f, on in d["present"].items() if on] == ["line position", "position in text"]
    assert d["initial"]["kind"] == "h"
    with pytest.raises(ValueError, match="one label per step"):
        inspect_layer(layer, torch.randn(40, 3), ["a"])


def test_state_budget_drops_second_states_then_cuts_the_colouring(lm, monkeypatch):
    model, vocab = lm
    r = read_text(model, vocab, TEXT)
    T = len(TEXT)
    full = inspect_model(model, vocab, r, gradflow_steps=0).data
    assert all("levels" in s for b in full["blocks"] for s in b["states"])
    monkeypatch.setattr(report_mod, "STATE_BYTES", 2 * 8 * (T // 2 + 1))  # room for c of both layers only
    part = inspect_model(model, vocab, r, gradflow_steps=0).data
    assert [[("levels" in s) for s in b["states"]] for b in part["blocks"]] == [[True, False]] * 2
    assert part["coloured"] == T
    monkeypatch.setattr(report_mod, "STATE_BYTES", 2 * 8 * 50)
    cut = inspect_model(model, vocab, r, gradflow_steps=0).data
    assert cut["coloured"] == 100 and decode(cut["blocks"][0]["states"][0], 100).shape == (8, 100)
    assert len(cut["loss"]) == T  # statistics still cover every token


def test_size_target_two_layers_of_256_over_10000_characters():
    """The issue's target: a 2-layer, 256-unit model over 10,000 characters fits in 5 MB, fully coloured."""
    text = (TEXT * 200)[:10_000]
    vocab = Vocab.from_text(text)
    model = LanguageModel(len(vocab), "lstm", 256, 2)
    rep = inspect_model(model, vocab, text, gradflow_steps=0)
    size = len(rep.html().encode("utf-8"))
    assert size <= 5_000_000 and rep.data["coloured"] == 10_000


def test_short_text_and_output_folder_errors(lm, tmp_path):
    model, vocab = lm
    with pytest.raises(ValueError, match="at least 2"):
        read_text(model, vocab, "T")
    rep = Report({"title": "t"})
    with pytest.raises(ValueError, match="does not exist: create it first"):
        rep.save(tmp_path / "missing" / "r.html")
    (tmp_path / "d").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        rep.save(tmp_path / "d")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        check_output_folder(tmp_path / "f")


def test_a_failed_write_keeps_the_old_report(lm, tmp_path, monkeypatch):
    model, vocab = lm
    path = tmp_path / "r.html"
    path.write_text("old report")
    rep = inspect_model(model, vocab, TEXT[:50], gradflow_steps=0)

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_mod.os, "replace", full_disk)  # fails after the new page is written
    with pytest.raises(OSError):
        rep.save(path)
    monkeypatch.undo()
    assert path.read_text() == "old report" and [p.name for p in tmp_path.iterdir()] == ["r.html"]


@pytest.mark.parametrize("cell", ["lstm", "gru", "jordan"])
def test_gradient_flow_from_the_recorded_states_equals_the_plain_pass(cell):
    vocab = Vocab.from_text(TEXT)
    model = LanguageModel(len(vocab), cell, 6, 2)
    rep = inspect_model(model, vocab, TEXT, gradflow_steps=12)
    from rnnkit.diagnostics.gradflow import lm_gradient_norms

    ref = lm_gradient_norms(model, torch.tensor(vocab.encode(TEXT)), steps=12)  # its own pass over the text
    np.testing.assert_allclose(np.array(rep.data["gradflow"]), ref, rtol=1e-4)


@pytest.mark.parametrize(
    "cell, gates, kinds, scatters",
    [("lstm", "ifgoc", ["c", "h"], "ifgo"), ("peephole", "ifgoc", ["c", "h"], "ifgo"), ("gru", "rzn", ["h"], "rzn"),
     ("rnn", "h", ["h"], "h"), ("jordan", "hy", ["y", "h"], "h"), ("mgu", "fn", ["h"], "fn"),
     ("indrnn", "h", ["h"], ""), ("mingru", "zn", ["h"], "z"), ("minlstm", "fin", ["h"], "fi")],
)  # fmt: skip
def test_every_cell(cell, gates, kinds, scatters):
    """Gate names come from the cell; a scatter for each bounded gate; the states each cell has."""
    vocab = Vocab.from_text(TEXT)
    d = inspect_model(LanguageModel(len(vocab), cell, 6, 2), vocab, TEXT[:80], gradflow_steps=8).data
    for block in d["blocks"]:
        assert [g["name"] for g in block["gates"]] == list(gates)
        assert [g["name"] for g in block["gates"] if g["left"] is not None] == list(scatters)
        assert [s["kind"] for s in block["states"]] == kinds and all("levels" in s for s in block["states"])
    assert len(d["gradflow"]) == 2 and np.all(np.array(d["gradflow"]) > 0)
