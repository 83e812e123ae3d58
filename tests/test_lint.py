"""The code base stays clean under the ruff rules configured in pyproject.toml."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff")
    cmd = [ruff] if ruff else [sys.executable, "-m", "ruff"]
    try:
        done = subprocess.run([*cmd, "check", "--no-cache", "."], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
    except FileNotFoundError:
        pytest.skip("ruff is not installed (pip install -r requirements-test.txt)")
    assert done.returncode == 0, done.stdout + done.stderr
