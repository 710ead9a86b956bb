"""Markdown table of benchmarks/lm_results.sh's output.

python benchmarks/lm_table.py runs/results/results.jsonl
"""

import json
import sys
from collections import defaultdict

runs: dict[str, dict] = defaultdict(dict)
for line in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(line)
    if r.get("summary"):
        runs[r["run"]].update(r)
    else:
        runs[r["run"]][r["split"]] = r
commands = any("command" in r for r in runs.values())  # lm_results.sh records each run's train arguments
HEAD = "run | steps | train s | median tokens/s | best step | val loss | val ppl | test loss | test ppl | bits"
print(f"| {HEAD}{' | rnnkit train …' if commands else ''} |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" + (" --- |" if commands else ""))
for name, r in runs.items():
    val, test = r.get("val", {}), r.get("test", {})
    bits = next((k for k in ("bpc", "bits_per_word") if k in test or k in val), "bpc")
    cells = [
        name,
        r.get("steps", ""),
        f"{r['train_time']:.0f}" if "train_time" in r else "",
        f"{r['median_tokens_per_s']:,.0f}" if "median_tokens_per_s" in r else "",
        r.get("best_step", ""),
        *(f"{d[k]:.3f}" if k in d else "" for d, k in ((val, "loss"), (val, "ppl"))),
        *(f"{d[k]:.3f}" if k in d else "" for d, k in ((test, "loss"), (test, "ppl"))),
        f"{(test or val)[bits]:.3f}" if bits in (test or val) else "",  # bits per token: test, else val
        *([f"`{r.get('command', '')}`"] if commands else []),
    ]
    print("| " + " | ".join(map(str, cells)) + " |")
