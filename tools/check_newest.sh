#!/usr/bin/env bash
# Install the newest versions that pyproject.toml's ranges allow into a throwaway virtual
# environment and run the whole suite there: what a user who installs from the ranges (not the
# locks) gets. When it passes, refresh the locks with tools/lock.sh; when it fails, fix rvos.
#   bash tools/check_newest.sh [pytest options...]
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
# shellcheck disable=SC1091
source "$tmp/venv/bin/activate"
python - > "$tmp/ranges.txt" <<'PY'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["test"]))
PY
pip install -q --upgrade --upgrade-strategy eager -r "$tmp/ranges.txt"
echo "newest versions the ranges allow:"
pip freeze | grep -i -E '^(torch|transformers|tokenizers|huggingface.hub|gradio|gradio.client|opencv-python-headless|imageio|imageio-ffmpeg|numpy|pillow|safetensors|scipy|tqdm|pytest|hypothesis|jsonschema|playwright|scikit-video|ruff)=='
python -m pytest -q "$@"
