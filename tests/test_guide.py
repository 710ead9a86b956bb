"""docs/guide.md quotes code lines beside the seeds' equations: every quoted line must exist verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\|[^|]*\| `(src/[^`]+)` \| `(.+)` \|$")


def test_every_quoted_code_line_exists():
    rows = [ROW.match(line) for line in (ROOT / "docs" / "guide.md").read_text(encoding="utf-8").splitlines()]
    rows = [m for m in rows if m]
    assert len(rows) >= 20
    for m in rows:
        path, code = m.groups()
        source = (ROOT / path).read_text(encoding="utf-8")
        assert code in source, f"docs/guide.md quotes a line that is not in {path}: {code}"
