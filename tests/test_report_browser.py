"""The inspect report in a real browser: Debian's chromium, driven headless through chromium-driver by Selenium.

Checks that the page loads with no console error and no network request, draws its plots, and recolours
the text when a unit is picked by a dot, from the list or from a ranking; saves screenshots under
``test-artifacts/`` (or ``$RNNKIT_TEST_ARTIFACTS``). Skipped where chromium or chromium-driver is missing,
unless ``RNNKIT_REQUIRE_BROWSER=1`` (``.ci/run`` sets it after installing them) turns the skip into a failure.
"""

import os
from pathlib import Path

import pytest
import torch

from rnnkit import GRU
from rnnkit.data import Vocab
from rnnkit.diagnostics.report import inspect_layer, inspect_model
from rnnkit.models import LanguageModel

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("RNNKIT_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
TEXT = 'He said, "we (all of us) went."\n    Then [the end] came.\n' * 8


@pytest.fixture(scope="module")
def browser():
    missing = [str(p) for p in (CHROMIUM, DRIVER) if not p.exists()]
    if missing:
        why = f"{' and '.join(missing)} missing: apt-get install chromium chromium-driver"
        if os.environ.get("RNNKIT_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,1600")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)  # a given driver: nothing downloaded
    yield driver
    driver.quit()


def open_page(driver, path: Path) -> list[dict]:
    """Load ``path``; returns the console entries of severity error."""
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(path.as_uri())
    assert driver.execute_script("return document.getElementById('app').dataset.ready") == "1"
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0  # nothing fetched
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def text_classes(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('#text span')].map(s => s.className)")


def screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1280, min(height + 40, 6000))
    driver.execute_script("window.scrollTo(0, 0)")
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000
    driver.set_window_size(1280, 1600)
    return path


@pytest.fixture(scope="module")
def lm_page(tmp_path_factory):
    vocab = Vocab.from_text(TEXT)
    model = LanguageModel(len(vocab), "lstm", 12, 2)
    with torch.no_grad():  # spread layer 2's forget gates from always shut to always open: dots all over the scatter
        model.rnn.bias_ih_l1[12:24] = torch.linspace(-8, 8, 12)
    path = tmp_path_factory.mktemp("browser") / "report.html"
    inspect_model(model, vocab, TEXT + "Zq", gradflow_steps=30).save(path)
    return path


def test_report_loads_draws_and_recolours_on_click(browser, lm_page):
    from selenium.webdriver.common.by import By

    assert open_page(browser, lm_page) == []
    q = browser.execute_script
    assert q("return document.querySelectorAll('svg.scatter').length") == 2 * 4  # layers x (i, f, g, o)
    assert q("return document.querySelectorAll('svg.scatter circle').length") == 2 * 4 * 12  # one dot per unit
    assert q("return document.querySelectorAll('svg.hist rect.bar').length") == 2 * 5 * 40  # ... and c
    assert q("return document.querySelector('#loss-plot polyline').getAttribute('points').split(' ').length") > 10
    assert q("return document.querySelectorAll('#gradflow-plot polyline').length") == 2  # one line per layer
    assert q("return document.querySelectorAll('#text span.oov').length") == 2  # Z and q: outside the vocabulary
    before = text_classes(browser)
    assert all(c.split()[-1].startswith("q") for c in before)  # coloured by the initial unit
    # click a dot of layer 2's forget-gate scatter: one on top where it is drawn (untrained units overlap), of
    # another unit than the one shown
    dot = q("""
        const shown = document.getElementById('unit').value;
        for (const c of document.querySelectorAll('svg.scatter')[5].querySelectorAll('circle')) {
          c.scrollIntoView({block: 'center'});
          const r = c.getBoundingClientRect();
          const top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
          if (top === c && String(c._u) !== shown) return c;
        }""")
    unit = q("return arguments[0]._u", dot)
    target = f"1:{q('return arguments[0]._kind', dot)}:{unit}"
    dot.click()
    assert q("return document.getElementById('app').dataset.coloured") == f"state:{target}"
    after = text_classes(browser)
    assert after != before and q("return document.getElementById('unit').value") == str(unit)
    assert "sel" in dot.get_attribute("class")
    screenshot(browser, "inspect_lstm.png")
    # the unit list, a ranking row and the loss mode recolour it too
    q("const s = document.getElementById('unit'); s.value = '2'; s.dispatchEvent(new Event('change'))")
    assert text_classes(browser) != after
    row = browser.find_element(By.CSS_SELECTOR, "#features tr.pick")
    q("arguments[0].scrollIntoView({block: 'center'})", row)
    row.click()
    first = q("""const d = JSON.parse(document.getElementById('rnnkit-data').textContent);
                 return d.ranking[Object.keys(d.features).find((f) => d.ranking[f].length)][0];""")
    assert q("return document.getElementById('app').dataset.coloured") == f"state:{first[0]}:{first[1]}:{first[2]}"
    q("const s = document.getElementById('mode'); s.value = 'loss'; s.dispatchEvent(new Event('change'))")
    assert all(c.split()[-1].startswith("l") for c in text_classes(browser)[1:])  # token 0 has no loss
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_other_reports_and_the_jupyter_frame(browser, tmp_path):
    """A bidirectional layer's report, a word-level model's, and the frame Jupyter shows."""
    bi = inspect_layer(GRU(3, 6, num_layers=2, bidirectional=True), torch.randn(60, 3))
    bi.save(tmp_path / "bi.html")
    assert open_page(browser, tmp_path / "bi.html") == []
    assert browser.execute_script("return document.querySelectorAll('svg.scatter').length") == 4 * 3  # blocks x r, z, n
    screenshot(browser, "inspect_bidirectional_gru.png")
    words = Vocab.from_text(TEXT, level="word")
    wm = LanguageModel(len(words), "gru", 8, 1)
    inspect_model(wm, words, TEXT, gradflow_steps=10).save(tmp_path / "words.html")
    assert open_page(browser, tmp_path / "words.html") == []
    assert browser.execute_script("return document.getElementById('text').textContent").startswith('He said, "')
    frame = tmp_path / "notebook.html"
    frame.write_text(f"<!doctype html><html><body><h1>notebook</h1>{bi._repr_html_()}</body></html>", encoding="utf-8")
    browser.get_log("browser")
    browser.get(frame.as_uri())
    browser.switch_to.frame(0)
    try:
        assert browser.execute_script("return document.getElementById('app').dataset.ready") == "1"
        assert browser.execute_script("return document.querySelectorAll('svg.scatter circle').length") == 12 * 6
    finally:
        browser.switch_to.default_content()
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
