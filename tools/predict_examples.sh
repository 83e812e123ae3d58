#!/usr/bin/env bash
# `rvos predict` (built-in model) on every example clip of CHECKOUT into OUT, one folder per
# clip. With tools/compare_outputs.py, checks that a refactor changes no output:
#   bash tools/predict_examples.sh OLD_CHECKOUT /tmp/before
#   bash tools/predict_examples.sh . /tmp/after
#   python tools/compare_outputs.py /tmp/before /tmp/after     # last line: IDENTICAL
set -euo pipefail
co=$1
out=$(realpath -m "$2")
mkdir -p "$out"
cd "$co"
python - "$out" <<'PY'
import json, subprocess, sys
out = sys.argv[1]
ex = json.load(open("examples/examples.json"))
items = [(e["video"], e["expressions"]) for e in ex["synthetic"] + ex.get("real", [])]
for video, texts in items:
    cmd = [sys.executable, "-m", "rvos", "predict", f"examples/{video}", "--out", f"{out}/{video}"]
    for t in texts:
        cmd += ["--text", t]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print("done", video)
PY
