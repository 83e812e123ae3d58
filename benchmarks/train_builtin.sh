#!/usr/bin/env bash
# Reproduce the shipped built-in model (rvos/weights/builtin) in two stages.
#
#   benchmarks/train_builtin.sh [RUN_DIR]          (default runs/builtin)
#
# Stage 1 needs a CUDA GPU: 239 steps of 48 eight-frame clips took 4.4 min on one H100
# (43 clips/s). Stage 2 runs on the CPU: it continues from stage 1 with the class loss weight
# raised to 10 and fits its step count into 110 minutes (6000 steps of 2 five-frame clips on
# a 2-core CPU with nothing else running; fewer on a busy machine). Both stages draw fresh
# synthetic clips with seed 0, so the data are the same on any machine.
# Then the test split is generated and scored; the last line is "J&F: <percent>".
set -euo pipefail
RUN=${1:-runs/builtin}
export PYTHONUNBUFFERED=1

python -m rvos train --out "$RUN/gpu" --device cuda --batch-size 48 --frames 8 --size 128 \
  --lr 5e-4 --warmup 200 --steps 239 --val-every 239 --val-clips 40 --ckpt-every 300 \
  --log-every 20 --export "$RUN/gpu/export"

python -m rvos train --out "$RUN/cpu" --init "$RUN/gpu/export" --cls-weight 10 --device cpu \
  --batch-size 2 --frames 5 --size 128 --lr 2e-4 --warmup 50 --steps 6000 --max-minutes 110 \
  --val-every 1000 --val-clips 40 --ckpt-every 100 --log-every 20 --export "$RUN/export"

python benchmarks/train_plot.py "$RUN/loss.png" "$RUN/gpu/log.jsonl" "$RUN/cpu/log.jsonl"
python -m rvos synth --split test --count 100 --out "$RUN/synth_test" --overwrite
python -m rvos eval "$RUN/synth_test" --checkpoint "$RUN/export"
