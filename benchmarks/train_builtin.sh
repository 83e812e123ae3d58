#!/usr/bin/env bash
# Reproduce the shipped built-in model (rvos/weights/builtin) from scratch, in six stages, then
# plot the loss and score the synthetic test split (last line "J&F: <percent>").
#
#   benchmarks/train_builtin.sh [RUN_DIR]          (default runs/builtin)
#
# Stage 1 needs a CUDA GPU: 239 steps of 48 eight-frame clips took 4.4 min on one H100
# (~43 clips/s). Stage 2 runs on the CPU: it continues from stage 1 with the class loss weight
# raised from 2 to 10, 9,525 steps of 2 five-frame clips (2.75 h on this project's 2-core
# CPU). The shipped weights came from the same stage 2 run in three pieces (an interrupted
# 6,000-step schedule resumed twice with longer ones, see the README); here it runs in one.
# Stages 3 and 4 go back to the GPU with eight-frame clips, the length of the val and test
# clips (stage 2's five-frame clips move objects 1.75x as far per frame): 545 steps of 32 clips
# at lr 2e-4 (7.3 min on one H100, ~40 clips/s), then 312 steps at lr 1e-4 (4.1 min). Those
# were run with --max-minutes, which fitted these step counts; here they are fixed.
# Stages 5 and 6 run on the CPU with eight-frame clips drawn from fresh seeds (5, 6): stage 5
# switches the input projections' GroupNorm from 32 groups of 2 channels to 8 groups of 8 (the
# motion probe in the README showed the 2-channel groups losing the backbone's motion) and trains
# 3,765 steps of 2 clips at lr 1e-4 (84.5 min); stage 6 continues 4,951 steps at lr 7e-5
# (94.5 min). Both were also fitted with --max-minutes and are fixed here.
# Stages 1-4 draw synthetic clips from seed 0 and stages 5 and 6 from seeds 5 and 6, so the data
# are the same on any machine.
set -euo pipefail
RUN=${1:-runs/builtin}
export PYTHONUNBUFFERED=1

python -m rvos train --out "$RUN/gpu" --device cuda --batch-size 48 --frames 8 --size 128 \
  --lr 5e-4 --warmup 200 --steps 239 --val-every 239 --val-clips 40 --ckpt-every 100 \
  --log-every 20 --export "$RUN/gpu/export"

python -m rvos train --out "$RUN/cpu" --init "$RUN/gpu/export" --cls-weight 10 --device cpu \
  --batch-size 2 --frames 5 --size 128 --lr 2e-4 --warmup 50 --steps 9525 \
  --val-every 1000 --val-clips 40 --ckpt-every 100 --log-every 20 --export "$RUN/cpu/export"

python -m rvos train --out "$RUN/gpu8" --init "$RUN/cpu/export" --cls-weight 10 --device cuda \
  --batch-size 32 --frames 8 --size 128 --lr 2e-4 --warmup 30 --steps 545 --val-every 545 \
  --val-clips 40 --ckpt-every 50 --log-every 20 --export "$RUN/gpu8/export"

python -m rvos train --out "$RUN/gpu8b" --init "$RUN/gpu8/export" --cls-weight 10 --device cuda \
  --batch-size 32 --frames 8 --size 128 --lr 1e-4 --warmup 20 --steps 312 --val-every 312 \
  --val-clips 40 --ckpt-every 50 --log-every 20 --export "$RUN/gpu8b/export"

python -m rvos train --out "$RUN/cpu8" --init "$RUN/gpu8b/export" --cls-weight 10 --device cpu \
  --model-overrides '{"proj_norm_groups": 8}' --batch-size 2 --frames 8 --size 128 --lr 1e-4 \
  --warmup 30 --steps 3765 --seed 5 --val-every 0 --ckpt-every 100 --log-every 20 \
  --export "$RUN/cpu8/export"

python -m rvos train --out "$RUN/cpu8b" --init "$RUN/cpu8/export" --cls-weight 10 --device cpu \
  --batch-size 2 --frames 8 --size 128 --lr 7e-5 --warmup 20 --steps 4951 --seed 6 \
  --val-every 0 --ckpt-every 500 --log-every 20 --export "$RUN/export"

python benchmarks/train_plot.py "$RUN/loss.png" "$RUN/gpu/log.jsonl" "$RUN/cpu/log.jsonl" \
  "$RUN/gpu8/log.jsonl" "$RUN/gpu8b/log.jsonl" "$RUN/cpu8/log.jsonl" "$RUN/cpu8b/log.jsonl" \
  --smooth 15
python -m rvos synth --split test --count 100 --out "$RUN/synth_test" --overwrite
python -m rvos eval "$RUN/synth_test" --checkpoint "$RUN/export"
