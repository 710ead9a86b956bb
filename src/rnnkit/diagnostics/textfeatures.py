"""Simple features of a text, and which units of a network follow them.

Karpathy, Johnson & Fei-Fei ("Visualizing and Understanding Recurrent Networks", 2015) found LSTM cells
that count the position in a line, switch on inside quotes, or follow the indentation of code. Here each
such feature is one number per token, and every unit is scored by the Pearson correlation between its
state and the feature over the text; :func:`top_contexts` finds where a unit is most strongly on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: feature name -> what it measures (shown in the report)
FEATURES = {
    "line position": "characters since the last line break",
    "inside quotes": "1 inside a quotation (\" … \", “ … ”, or ' … ' told from apostrophes by the letters around them)",
    "bracket depth": "how many ( [ { are open",
    "indentation": "leading spaces of the current line (a tab counts 4)",
    "position in text": "the token's index: units that drift over the whole text rank here, and such a unit can "
    "also match any feature spread unevenly over the text (check a unit's r here before trusting another)",
}

_OPEN, _CLOSE = "([{", ")]}"


def text_features(tokens: Sequence[str], seps: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Each feature of :data:`FEATURES` at every token (its value after the token's last character), as (T,)
    float arrays; ``seps`` are what the text has between tokens (word level: spaces), default nothing."""
    pieces = [(seps[t] if seps else "") + tok for t, tok in enumerate(tokens)]
    text = "".join(pieces)
    ends = np.cumsum([len(p) for p in pieces]) - 1  # index of each token's last character
    per_char = {name: np.zeros(len(text)) for name in FEATURES if name != "position in text"}
    column = indent = depth = 0
    quoted = single = False
    at_line_start = True
    for i, ch in enumerate(text):
        if ch == "\n":
            column, indent, at_line_start = 0, 0, True
        else:
            column += 1
            if at_line_start and ch in " \t":
                indent += 4 if ch == "\t" else 1
            else:
                at_line_start = False
        if ch == '"':
            quoted = not quoted
        elif ch in "“”":
            quoted = ch == "“"
        elif ch == "'":
            before = text[i - 1] if i else " "
            after = text[i + 1] if i + 1 < len(text) else " "
            if not before.isalnum() and after.isalnum():
                single = True  # an opening quote: 'Well
            elif not after.isalnum() and before != " " and single:
                single = False  # a closing quote: here.' (an apostrophe sits between letters: it's)
        elif ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth = max(0, depth - 1)  # an unbalanced closer does not make the depth negative
        per_char["line position"][i] = column
        per_char["inside quotes"][i] = quoted or single
        per_char["bracket depth"][i] = depth
        per_char["indentation"][i] = indent
    out = {name: v[ends] if len(text) else np.zeros(0) for name, v in per_char.items()}
    out["position in text"] = np.arange(len(tokens), dtype=np.float64)
    return out


def correlations(states: np.ndarray, feature: np.ndarray) -> np.ndarray | None:
    """Pearson r between each unit's state (``states`` (T, U)) and ``feature`` (T,); None if the feature is
    constant over the text (absent: nothing to track). Units that never change get r = 0."""
    f = feature - feature.mean()
    fn = np.sqrt((f * f).sum())
    if fn == 0:
        return None
    s = states - states.mean(axis=0)
    sn = np.sqrt((s * s).sum(axis=0))
    r = (f @ s) / (fn * np.where(sn > 0, sn, 1.0))
    return np.where(sn > 0, r, 0.0)


def top_contexts(values: np.ndarray, k: int, gap: int) -> np.ndarray:
    """For each unit of ``values`` (T, U), the positions of its ``k`` largest values, at least ``gap`` steps
    apart (so that one long stretch does not fill the list); (U, k) int array, -1 where fewer exist."""
    T, U = values.shape
    out = np.full((U, k), -1, dtype=np.int64)
    if T == 0 or k == 0:
        return out
    m = min(T, max(4 * k * (2 * gap + 1), 64))  # enough candidates to find k well-separated peaks
    cand = np.argpartition(-values, m - 1, axis=0)[:m] if m < T else np.tile(np.arange(T)[:, None], (1, U))
    for u in range(U):
        order = cand[np.argsort(-values[cand[:, u], u], kind="stable"), u]
        picked: list[int] = []
        for p in order:
            if all(abs(int(p) - q) >= gap for q in picked):
                picked.append(int(p))
                if len(picked) == k:
                    break
        out[u, : len(picked)] = picked
    return out
