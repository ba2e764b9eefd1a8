#!/usr/bin/env bash
# The model's evidence (issue #15), from nothing: every table and figure of docs/model-evidence.md.
#
#   scripts/model_evidence.sh                 # all phases
#   PHASES="packages ablation" scripts/model_evidence.sh
#   JOBS=2 SEEDS="0 1 2 3 4" EPOCHS=10 IMG=64 scripts/model_evidence.sh   # the defaults
#
# Phases (each resumable: a finished training run or result is kept and skipped):
#   packages  two SYNTHETIC packages of BLOCKS blocks (~300 m blocks, chips of CHIP px, train /
#             val / test): "std" (the generator's default mixtures) and "hard" (3-5 classes per
#             mixed block, shares down to 2 %, 15 % pure, district colour shifts and noise)
#   ablation  baseline, +PSG, +PSG+LSG, full x SEEDS on both packages (JOBS trainings at a time,
#             1 torch thread each); epochs selected on val only; scored once on the untouched test
#             split; mean and 95 % t-interval over seeds, paired differences per module
#   prelabel  pre-label effort (L1 per-mille and workspace keys, model vs empty split) and the
#             calibration of MC-dropout uncertainty (reliability curve, Spearman rho), full runs, std
#   al        active learning with whole-model warm starts (init_from), AL_SEEDS seeds, per-seed
#             curves and the label fraction at which each strategy reaches random's final MAE
#   extra     the two further budgets of docs/model-evidence.md: the std ablation and its pre-labels
#             at 20 epochs (TAG=e20), and the full model with DCAF's gate opened (TAG=gate1)
#   speed     inference blocks/s (eager, torch.compile) and training ms/block, bf16 where the device
#             has it; one end-to-end epoch of train_msunet's loader+network on a SPEED_BLOCKS
#             package vs the network alone (on CPU when no GPU: said so in the output)
# Outputs: $OUT (default docs/figures): ablation*.md/.png/-*.json/-*.txt, prelabel*.md/.json/.png,
#   al-summary.txt, al-curve.png, al-results.csv, speed.txt, speed.json.
# Run time on the 2-core CPU of the development machine: see docs/model-evidence.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-docs/figures}
VAR=${VAR:-var/evidence}
PHASES=${PHASES:-packages ablation prelabel al speed extra}
BLOCKS=${BLOCKS:-300}
CHIP=${CHIP:-96}
IMG=${IMG:-64}
EPOCHS=${EPOCHS:-10}
LR=${LR:-3e-3}
BATCH=${BATCH:-10}
SEEDS=${SEEDS:-0 1 2 3 4}
VARIANTS=${VARIANTS:-baseline psg psg_lsg full}
PACKAGES=${PACKAGES:-std hard}          # which packages the ablation trains on
TAG=${TAG:-}                            # a second ablation beside the first: runs-$TAG, ablation$TAG-*
TRAIN_ARGS=${TRAIN_ARGS:-}              # more lcz_model.train options, e.g. "--model local_gate_init=1.0"
JOBS=${JOBS:-2}
DEVICE=${DEVICE:-cpu}
AL_SEEDS=${AL_SEEDS:-0 1 2 3 4}
AL_ARGS=${AL_ARGS:---strategies bald,entropy,random --seed-labels 30 --batch 20 --rounds 4 --epochs 6 --mc-samples 6}
SPEED_BLOCKS=${SPEED_BLOCKS:-3400}
SPEED_ARGS=${SPEED_ARGS:---encoder swin_micro --both --threads 2 --batch 20 --infer-batch 16 --steps 5}
mkdir -p "$OUT" "$VAR"
has() { [[ " $PHASES " == *" $1 "* ]]; }
pkg() { echo "$VAR/packages/$1"; }

if has packages; then
  for name in std hard; do
    p=$(pkg "$name")
    if [[ ! -f "$p/SHA256SUMS" ]]; then
      extra=(); [[ $name == hard ]] && extra=(--hard)
      $PY -m fixtures.synthetic_package --blocks "$BLOCKS" --size "$CHIP" --mean-block-size 300 \
        --val-fraction 0.15 --out "$p" "${extra[@]}" 2>/dev/null
    fi
  done
fi

RUNS="$VAR/runs${TAG:+-$TAG}"
train_one() {   # package variant seed
  local run="$RUNS/$1/$2-s$3"
  if [[ -f "$run/model_card.json" ]] && grep -q '"finished": true' "$run/model_card.json"; then return 0; fi
  local resume=(); [[ -f "$run/checkpoint.pt" ]] && resume=(--resume)
  local t0=$SECONDS
  $PY -m lcz_model.train --dataset "$(pkg "$1")" --out "$run" --variant "$2" --encoder swin_micro \
    --img-size "$IMG" --epochs "$EPOCHS" --lr "$LR" --batch-size "$BATCH" --seed "$3" \
    --device "$DEVICE" --threads 1 --eval-every 2 --no-progress "${resume[@]}" $TRAIN_ARGS > "$run.log" 2>&1
  echo "$1 $2-s$3: $((SECONDS - t0)) s"
}
export -f train_one pkg
export PY VAR RUNS IMG EPOCHS LR BATCH DEVICE TRAIN_ARGS

if has ablation; then
  t0=$SECONDS
  jsons=(); names=()
  for name in $PACKAGES; do mkdir -p "$RUNS/$name"; done
  for name in $PACKAGES; do for s in $SEEDS; do for v in $VARIANTS; do echo "$name $v $s"; done; done; done \
    | xargs -P "$JOBS" -L 1 bash -c 'train_one "$0" "$1" "$2"'
  echo "ablation trainings: $((SECONDS - t0)) s wall with $JOBS at a time"
  for name in $PACKAGES; do
    runs=(); for v in $VARIANTS; do for s in $SEEDS; do runs+=("$RUNS/$name/$v-s$s"); done; done
    $PY -m lcz_model.evaluate "${runs[@]}" --dataset "$(pkg "$name")" --baselines \
      --json "$OUT/ablation$TAG-$name.json" > "$OUT/ablation$TAG-$name.txt"
    jsons+=("$OUT/ablation$TAG-$name.json"); names+=("$name")
  done
  $PY scripts/evidence_summary.py "${jsons[@]}" --names "$(IFS=,; echo "${names[*]}")" \
    --png "$OUT/ablation$TAG.png" --md "$OUT/ablation$TAG.md" \
    --title "test splits, swin_micro $IMG px, $EPOCHS epochs (selected on val), CPU; mean and 95 % interval over seeds"
fi

if has prelabel; then
  runs=(); for s in $SEEDS; do runs+=("$RUNS/std/full-s$s"); done
  $PY -m experiments.prelabel_effort "${runs[@]}" --dataset "$(pkg std)" --out "$OUT" --device "$DEVICE" \
    --prefix "prelabel$TAG"
fi

if has al; then
  dirs=(); mkdir -p "$VAR/al"
  for s in $AL_SEEDS; do
    d="$VAR/al/s$s"; dirs+=("$d")
    # shellcheck disable=SC2086
    $PY -m experiments.al_sim --package "$(pkg std)" --img-size "$IMG" --seed "$s" --out "$d" \
      --device "$DEVICE" $AL_ARGS > "$d.log" 2>&1 || { cat "$d.log"; exit 1; }
  done
  $PY -m experiments.al_sim --combine "$(IFS=,; echo "${dirs[*]}")" --out "$VAR/al/combined" > "$OUT/al-summary.txt"
  cp "$VAR/al/combined/al_curve.png" "$OUT/al-curve.png"
  cp "$VAR/al/combined/results_all.csv" "$OUT/al-results.csv"
fi

if has speed; then
  p=$(pkg "speed$SPEED_BLOCKS")
  if [[ ! -f "$p/SHA256SUMS" ]]; then
    $PY -m fixtures.synthetic_package --blocks "$SPEED_BLOCKS" --size "$CHIP" --out "$p" 2>/dev/null
  fi
  # shellcheck disable=SC2086
  $PY -m experiments.bench --package "$p" --img-size "$IMG" --device "$DEVICE" --json "$OUT/speed.json" \
    $SPEED_ARGS | tee "$OUT/speed.txt"
fi

if has extra; then
  PHASES="ablation prelabel" PACKAGES=std EPOCHS=$((2 * EPOCHS)) TAG=e20 "$0"
  PHASES=ablation PACKAGES=std VARIANTS=full TAG=gate1 TRAIN_ARGS="--model local_gate_init=1.0" "$0"
fi
