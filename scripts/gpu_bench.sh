#!/usr/bin/env bash
# The GPU figures of experiments.bench (issue: Model, "Speed"), as one short script for a lent
# accelerator machine: eager and torch.compile, bf16 autocast + channels_last, swin_tiny at 256 px.
# Writes logs and JSON to $OUT (or ./var/gpu-bench).
set -u
OUT=${OUT:-var/gpu-bench}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)" | tee -a "$OUT/gpu.txt"
timeout 200 python3 -m experiments.bench --encoder swin_tiny --device cuda --infer-batch 128 \
  --json "$OUT/eager.json" 2>&1 | tee "$OUT/eager.log"
timeout 300 python3 -m experiments.bench --encoder swin_tiny --device cuda --infer-batch 128 --compile \
  --json "$OUT/compiled.json" 2>&1 | tee "$OUT/compiled.log"
