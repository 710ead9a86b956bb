#!/usr/bin/env bash
# The GPU check of the "triton" engine, in one go (about 5 minutes on one H100/H200): the whole test suite with
# a GPU present (tests/test_triton.py then runs every cell's Triton kernels on CUDA against the reference
# engine, plus torch.compile, opcheck and the stepper on CUDA), then the GPU benchmark against cuDNN and the
# comparison of the two launch modes (docs/engines.md, "GPU"). Run from the repository root:
#   bash benchmarks/gpu_check.sh [OUT_DIR]          (default OUT_DIR: $OUT if set, else runs/gpu)
# It uses the machine's own python3 with CUDA torch and Triton (PYTHON=... to choose another) and rnnkit from
# src/ (nothing is installed: such machines are often offline). Corpora: $RNNKIT_DATA_DIR, else a shared/data
# folder in the repository (copy them there); without them the tests that need a corpus skip. PYTEST_ARGS adds
# pytest options (-n 8).
# Files written (each step's output also goes to the terminal): env.txt, tests.log, bench.txt, bench.json,
# bench_large.txt, bench_large.json, launch_sequence.txt, launch_step.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-runs/gpu}}
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
for d in "${RNNKIT_DATA_DIR:-}" "$PWD/shared/data"; do
  if [ -n "$d" ] && [ -d "$d" ]; then export RNNKIT_DATA_DIR="$d"; break; fi
done
unset TRITON_INTERPRET  # compiled kernels on the GPU, never the interpreter

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  "$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn',
torch.backends.cudnn.version(), 'triton', triton.__version__, 'gpu', torch.cuda.get_device_name())"
  lscpu | grep 'Model name' || true
  date -u '+%Y-%m-%d %H:%M UTC'
  git log -1 --format='commit %h %s' 2>/dev/null || true
} 2>&1 | tee "$OUT_DIR/env.txt"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this script is for a GPU')" \
  || exit 1

status=0
echo "== tests"
# shellcheck disable=SC2086
"$PY" -m pytest -q -ra ${PYTEST_ARGS:-} 2>&1 | tee "$OUT_DIR/tests.log" || status=1

echo "== benchmark against cuDNN (torch.nn)"
"$PY" -m rnnkit bench --device cuda --workloads d2l,latency --engines torch,triton --scratch false \
  --repeats 5 --json "$OUT_DIR/bench.json" 2>&1 | tee "$OUT_DIR/bench.txt" || status=1
echo "== large, at the issue's batch 256 (hidden 1024, 100 steps)"
"$PY" -m rnnkit bench --device cuda --workloads large --batch 256 --engines torch,triton --scratch false \
  --repeats 5 --json "$OUT_DIR/bench_large.json" 2>&1 | tee "$OUT_DIR/bench_large.txt" || status=1

for mode in sequence step; do  # the launch-mode threshold (SEQUENCE_MAX_TILES) is a guess until this runs
  echo "== launch mode: $mode"
  RNNKIT_TRITON_LAUNCH=$mode "$PY" -m rnnkit bench --device cuda --workloads d2l,large --cells lstm,gru,peephole,jordan \
    --engines triton --scratch false --memory false --repeats 5 2>&1 | tee "$OUT_DIR/launch_$mode.txt" || status=1
done
exit $status
