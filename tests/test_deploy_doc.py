"""docs/deploy.md: every Python block runs as it stands, in order, in a fresh folder (so the page cannot rot)."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_deploy_snippets_run(tmp_path):
    blocks = BLOCK.findall((ROOT / "docs" / "deploy.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 3
    script = tmp_path / "snippets.py"
    script.write_text("\n\n".join(blocks), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "KERAS_BACKEND": "torch"}
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "lstm.onnx").is_file() and (tmp_path / "lm.pt2").is_file()
