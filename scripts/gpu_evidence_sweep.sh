#!/usr/bin/env bash
# Many short MSU-Net trainings side by side on one GPU (each a separate process), then one
# evaluation table: a quick way to compare variants, options and seeds on a synthetic package
# before confirming the chosen settings on the CPU.
#
#   scripts/gpu_evidence_sweep.sh PKG [SPEC_FILE]
#
# SPEC_FILE: one run per line, "NAME ARGS..." (extra `python -m lcz_model.train` arguments);
# blank lines and lines starting with # are skipped. Default: scripts/evidence_sweep.txt (the first sweep; scripts/evidence_sweep_psg.txt the second).
# Writes $OUT/sweep.txt (the table), $OUT/sweep.json and $OUT/logs.tar.gz (one log per run).
set -u
PKG=${1:?usage: gpu_evidence_sweep.sh PKG [SPEC_FILE]}
SPEC=${2:-scripts/evidence_sweep.txt}
OUT=${OUT:-var/sweep}; RUNS=${RUNS:-var/sweep-runs}; JOBS=${JOBS:-16}
MAXMIN=${MAXMIN:-6}   # each training stops (evaluated and saved) after this many minutes
PY=${PY:-python3}
mkdir -p "$OUT" "$RUNS/logs"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
COMMON=(--dataset "$PKG" --encoder swin_micro --img-size 128 --device cuda --threads 1
        --no-progress --max-minutes "$MAXMIN")
names=()
while read -r name args; do
  [[ -z "${name:-}" || "$name" == \#* ]] && continue
  names+=("$name")
  # shellcheck disable=SC2086
  $PY -m lcz_model.train "${COMMON[@]}" --out "$RUNS/$name" $args \
    > "$RUNS/logs/$name.log" 2>&1 &
  while (( $(jobs -rp | wc -l) >= JOBS )); do sleep 1; done
done < "$SPEC"
wait
for n in "${names[@]}"; do echo "$n: $(tail -n 2 "$RUNS/logs/$n.log" | head -n 1)"; done
runs=(); for n in "${names[@]}"; do [[ -f "$RUNS/$n/checkpoint.pt" ]] && runs+=("$RUNS/$n"); done
$PY -m lcz_model.evaluate "${runs[@]}" --dataset "$PKG" --baselines --device cuda \
  --json "$OUT/sweep.json" > "$OUT/sweep.txt" 2>&1
cat "$OUT/sweep.txt"
tar -czf "$OUT/logs.tar.gz" -C "$RUNS" logs
