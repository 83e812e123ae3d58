"""Where rvos keeps files of its own (below every layer: the download cache and the int8
calibrations of models that are not packaged both live there)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The download cache: `override`, ``$RVOS_CACHE``, ``$XDG_CACHE_HOME/rvos`` or
    ``~/.cache/rvos``, in that order. The folder is not created here."""
    if override:
        return Path(override).expanduser()
    if os.environ.get("RVOS_CACHE"):
        return Path(os.environ["RVOS_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "rvos"
    return Path.home() / ".cache" / "rvos"
