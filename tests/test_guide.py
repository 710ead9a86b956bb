"""docs/guide.md quotes code lines beside the tutorials' equations: every quoted line must exist verbatim."""

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


def test_published_text_cites_sources_not_local_paths():
    """Docs, examples and code name tutorials by public title and author, never a development machine's paths
    or the private numbering of the documents rnnkit was started from."""
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "src").rglob("*.py"),
             *(ROOT / "examples").glob("*.py"), *(ROOT / "benchmarks").glob("*")]  # fmt: skip
    bad = re.compile(r"\.\./shared|/work/|/tmp/|\bseeds? ?0\d\d\b|seed ?00\d|SEED ?00\d", re.IGNORECASE)
    found = [f"{p.relative_to(ROOT)}: {m.group()}" for p in files if p.is_file()
             for m in bad.finditer(p.read_text(encoding="utf-8"))]  # fmt: skip
    assert not found, found
