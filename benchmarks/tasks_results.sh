#!/usr/bin/env bash
# The full runs behind docs/results.md "## Forecasting" and "## Sequence classification".
# Usage: benchmarks/tasks_results.sh [RUNS_DIR]   (from the repository root; ~15 minutes on a 2-core CPU)
# Each run prints its report table; report.json, forecast.png / confusion.png land in RUNS_DIR/<name>.
set -euo pipefail
RUNS=${1:-runs/results}
RNNKIT=${RNNKIT:-"python -m rnnkit"}
mkdir -p "$RUNS"
run() {  # progress bars (\r-separated) filtered out; the summary lines and tables kept
  local name=$1; shift; echo "=== $name: rnnkit $*"
  $RNNKIT "$@" --out "$RUNS/$name" --overwrite 2>&1 | tr '\r' '\n' | grep -v '/[0-9]*s \[\|^ *$\|TqdmWarning\|full_bar'
}

# Forecasting: 60 s of training each, best checkpoint by validation loss, test tail scored against baselines
run sunspots-lstm-direct    forecast --preset sunspots --model.cell lstm --model.hidden_size 64 --model.strategy direct --model.relative true
run sunspots-gru-recursive  forecast --preset sunspots
run co2-lstm-direct         forecast --preset co2
run co2-lstm-recursive      forecast --preset co2 --model.strategy recursive
run co2-lstm-direct-levels  forecast --preset co2 --model.relative false

# Sequence classification: digits as glimpse sequences, 60 s of training each
run digits-rows-gru         classify
run digits-columns-trimmed  classify --preset variable
run digits-columns-bi-mean  classify --preset variable --model.bidirectional true --model.readout mean
run digits-pixels-lstm      classify --preset pixels

# Seed spread of the two headline forecasting runs (seed 0 is above)
for seed in 1 2; do
  run "sunspots-gru-recursive-seed$seed" forecast --preset sunspots --seed "$seed" --baselines naive
  run "co2-lstm-direct-seed$seed"      forecast --preset co2 --seed "$seed" --baselines naive
done

# Model settings tried on sunspots (the preset = lowest validation loss), and the ARIMA orders by AIC
for args in "--model.cell lstm --model.hidden_size 16 --model.relative false" \
            "--model.cell lstm --model.hidden_size 16 --model.relative true" \
            "--model.cell gru --model.hidden_size 64 --model.relative false"; do
  run "sunspots-try-$(echo "$args" | tr -d ' -' | tr '.' '_')" forecast --preset sunspots --model.strategy direct $args --baselines naive
done
python benchmarks/arima_aic.py
