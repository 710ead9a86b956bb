#!/usr/bin/env bash
# Language-model results for docs/results.md: every number there comes from this script.
#   RNNKIT_DATA_DIR=/path/to/shared/data bash benchmarks/lm_results.sh [OUT_DIR] [GROUP...]
# GROUP: core (recommended GRU + d2l LSTM on the Time Machine, shakespeare 75 s), word, cells (the other cells
# with both presets), shakespeare-long (180 s, 600 s), quickstart (default: all, in this order), regularised (the
# regularised preset on the Time Machine, then shakespeare 180 s and 600 s unregularised and 600 s regularised),
# ablation (each regulariser on the recommended GRU and each cell without regularisers, both corpora, on a step
# budget of ABLATION_STEPS, default 3000, so that the scores do not depend on the machine's speed or load).
# THREADS (default 0 = torch's default, 2 here): torch threads; use 1 on a machine shared with other jobs.
# One run at a time; each run's scores (best checkpoint by validation loss) go to OUT_DIR/results.jsonl.
set -uo pipefail
OUT=${1:-runs/results}; shift || true
GROUPS_=${*:-"core word cells shakespeare-long quickstart"}
RNNKIT=(python -m rnnkit)
mkdir -p "$OUT"

run() {  # NAME EVAL_ARGS -- TRAIN_ARGS...
  local name=$1 evalargs=$2; shift 2
  echo "== $name: rnnkit train $* --out $OUT/$name" | tee -a "$OUT/log.txt"
  "${RNNKIT[@]}" train "$@" --threads "${THREADS:-0}" --out "$OUT/$name" --overwrite --sample.num_tokens 0 2>>"$OUT/$name.stderr" | tee -a "$OUT/log.txt"
  for split in val test; do
    # shellcheck disable=SC2086
    "${RNNKIT[@]}" evaluate --checkpoint "$OUT/$name" --split $split $evalargs --json \
      | python -c "import json,sys; r=json.load(sys.stdin); r['run']='$name'; print(json.dumps(r))" >> "$OUT/results.jsonl" || true
  done
  python - "$OUT/$name" "$name" "$*" >> "$OUT/results.jsonl" <<'PY'
import json, sys
state = json.load(open(sys.argv[1] + "/last/state.json"))
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
speed = [r["units_per_s"] for r in rows if r["split"] == "train"]
speed = sorted(speed)[len(speed) // 2] if speed else 0
print(json.dumps({"run": sys.argv[2], "summary": True, "steps": state["step"], "train_time": state["train_time"],
                  "best_step": state["best"].get("step"), "median_tokens_per_s": speed, "command": sys.argv[3]}))
PY
}

TM=(--data timemachine --lm.normalize d2l --lm.split 0.9,0.05,0.05 --max-time 180 --eval-every 50)
shakespeare() {  # SECONDS [ARGS]: nanoGPT's shakespeare_char split, scored over the whole val part in 64-token windows
  local t=$1; shift
  run "shakespeare-${PRESET:-rec}-${t}s" "--window 64" --preset "${PRESET_NAME:-recommended}" --data tinyshakespeare \
    --lm.split 0.9,0.1,0 --lm.eval_window 64 --eval-every 200 --max-time "$t" "$@"
}

for g in $GROUPS_; do case $g in
  core)
    run tm-rec-gru "" --preset recommended "${TM[@]}"
    run tm-d2l-lstm "" --preset d2l "${TM[@]}" --model.cell lstm
    shakespeare 75 ;;
  cells)
    for cell in lstm rnn peephole; do run "tm-rec-$cell" "" --preset recommended "${TM[@]}" --model.cell $cell; done
    for cell in gru rnn peephole; do run "tm-d2l-$cell" "" --preset d2l "${TM[@]}" --model.cell $cell; done ;;
  shakespeare-long)  # without the 10-epoch cap, which would end both runs at ~150 s
    shakespeare 180 --epochs 0; shakespeare 600 --epochs 0 ;;
  word)  # word-level Time Machine (d2l normalisation), words seen fewer than 3 times -> <unk>
    run "tm-word-gru" "" --preset recommended "${TM[@]}" --lm.level word --lm.min_freq 3 --lm.num_steps 32 \
      --model.embed_size 128 --model.hidden_size 256 ;;
  regularised)  # the regularised preset (zoneout, DropConnect) against the recommended one, back to back
    run tm-reg-gru "" --preset regularised "${TM[@]}"
    shakespeare 180 --epochs 0; shakespeare 600 --epochs 0
    PRESET=reg PRESET_NAME=regularised shakespeare 600 --epochs 0 ;;
  ablation)  # one change at a time from the recommended preset (2 × 256 GRU), no epoch cap, same steps everywhere
    steps=${ABLATION_STEPS:-3000}
    variants=("none" "dropout --model.dropout 0.2" "input_dropout --model.input_dropout 0.2"
      "recurrent_dropout --model.recurrent_dropout 0.2" "zoneout --model.zoneout 0.1"
      "weight_dropout --model.weight_dropout 0.3" "lstm+zoneout_cell --model.cell lstm --model.zoneout_cell 0.1")
    for cell in lstm lnlstm lngru mgu indrnn mingru minlstm peephole; do variants+=("$cell --model.cell $cell"); done
    for v in "${variants[@]}"; do
      read -r tag args <<< "$v"
      # ABLATION_ONLY="tag …" / ABLATION_CORPORA="tm shakespeare": a subset (to split the runs between processes)
      [[ -z "${ABLATION_ONLY:-}" || " $ABLATION_ONLY " == *" $tag "* ]] || continue
      if [[ " ${ABLATION_CORPORA:-tm shakespeare} " == *" tm "* ]]; then
        # shellcheck disable=SC2086
        run "ablation-tm-$tag" "" --preset recommended "${TM[@]}" --max-time 0 --epochs 0 --steps "$steps" $args
      fi
      if [[ " ${ABLATION_CORPORA:-tm shakespeare} " == *" shakespeare "* ]]; then
        # shellcheck disable=SC2086
        run "ablation-shakespeare-$tag" "--window 64" --preset recommended --data tinyshakespeare \
          --lm.split 0.9,0.1,0 --lm.eval_window 64 --eval-every 200 --max-time 0 --epochs 0 --steps "$steps" $args
      fi
    done ;;
  quickstart)  # README's `rnnkit train` with no arguments (embedded stdlib corpus, recommended preset)
    run "quickstart" "" ;;
esac; done
