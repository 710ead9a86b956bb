"""Markdown table of benchmarks/lm_results.sh's output.

python benchmarks/lm_table.py runs/results/results.jsonl            # a row per run
python benchmarks/lm_table.py runs/results/results.jsonl --ablation # the ablation group: a row per variant
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


def flags(command: str) -> str:
    """The flags an ablation run adds to its corpus' common ones (those after ``--steps N``)."""
    words = command.split()
    return " ".join(words[words.index("--steps") + 2 :]) if "--steps" in words else command


if "--ablation" in sys.argv:  # ablation-{tm,shakespeare}-{variant}: Time Machine test, shakespeare val, side by side
    variants = dict.fromkeys(n.split("-", 2)[2] for n in runs if n.startswith("ablation-"))
    print(
        "| variant (flags added to the recommended preset) | Time Machine test ppl (best step) | tokens/s "
        "| tiny-shakespeare val loss (best step) | tokens/s |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for v in variants:
        tm, sh = runs.get(f"ablation-tm-{v}", {}), runs.get(f"ablation-shakespeare-{v}", {})
        cells = [f"{v}: `{flags((tm or sh).get('command', '')) or '(none)'}`"]
        for r, split, key in ((tm, "test", "ppl"), (sh, "val", "loss")):
            score = r.get(split, {}).get(key)
            cells += [f"{score:.3f} ({r.get('best_step')})" if score is not None else "–",
                      f"{r['median_tokens_per_s']:,.0f}" if "median_tokens_per_s" in r else "–"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    sys.exit(0)
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
