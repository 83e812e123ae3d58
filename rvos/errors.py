"""Errors a user can cause: one base, RvosError, that every door (CLI, app, API) catches once."""

from __future__ import annotations

__all__ = ["PredictorError"]


class RvosError(Exception):
    """An error a user can cause (a bad video, an unknown model, a missing file, no network):
    its message is one line, fit to show as it is. Each door (the CLI, the app, the HTTP API)
    catches this base once, and shows the message; anything else is a bug and keeps its
    traceback."""


class PredictorError(RvosError, ValueError):
    """Bad input to the predictor; the message says what is wrong and what to do."""
