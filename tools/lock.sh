#!/usr/bin/env bash
# Compile the locks from the ranges in pyproject.toml with pip-tools' pip-compile:
# requirements.txt (the app) and requirements-test.txt (the app + the test suite), every
# package pinned exactly, transitive ones included. Run it after changing a range, or after
# tools/check_newest.sh passed, to move the locks to the newest versions the ranges allow.
#   bash tools/lock.sh            (uses pip-compile from PATH, or installs pip-tools in a temp venv)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v pip-compile >/dev/null 2>&1; then
    venv=$(mktemp -d)/venv
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "pip-tools>=7.4,<8"
    PATH="$venv/bin:$PATH"
fi

header='# Locked by tools/lock.sh (pip-compile) from the ranges in pyproject.toml; do not edit by hand.'
compile() {  # compile OUT [pip-compile options...]
    local out=$1; shift
    pip-compile -q --upgrade --strip-extras --no-emit-index-url --no-emit-find-links \
        --no-header --annotation-style line -o "$out" "$@" pyproject.toml
    # The project's machines resolve torch to its local CPU build (2.13.0+cpu); the lock names
    # the public version so that pip picks the CPU build here and any build elsewhere.
    sed -i -E 's/^(torch==[0-9.]+)\+cpu/\1/' "$out"
    { echo "$header"; cat "$out"; } > "$out.tmp" && mv "$out.tmp" "$out"
}
compile requirements.txt
compile requirements-test.txt --extra test -c requirements.txt
