"""The app on Hugging Face ZeroGPU hardware: each model call inside ``spaces.GPU``.

On a ZeroGPU Space a GPU is attached only while a function decorated with
``spaces.GPU(duration=...)`` runs; the duration is what the Space asks the scheduler for (a
visitor's quota must cover it; the time actually used is what is charged). The app
therefore:

* loads its model on the CPU at start-up (ZeroGPU has no GPU then: `start_up_device`);
* runs each model call (Segment, Compare, word importance) through `on_gpu`, with a duration
  from rvos's own estimate (`rvos.predictor.estimate`): the model's speed on the GPU as
  recorded from the Space's earlier runs (`record_run`; the main process has no GPU to measure
  one on), times `MARGIN`, plus `LOAD_S` for moving the weights onto the GPU, within
  [`MIN_S`, `max_seconds`]; `DEFAULT_S` before any run was recorded.

Elsewhere (`zero_gpu` false: the ``spaces`` package is not installed, or ``SPACES_ZERO_GPU``
is not set, as on every machine but a ZeroGPU Space) `on_gpu` returns the function itself and
nothing changes; ``spaces`` is imported only on ZeroGPU.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from collections.abc import Callable
from typing import Any, TypeVar

from rvos.app.inputs import check_video, check_work
from rvos.modeling.processing import model_short_side, resized_size
from rvos.predictor.estimate import Estimate, estimate

__all__ = ["DEFAULT_S", "duration_s", "estimate_on_record", "max_seconds", "on_gpu",
           "record_run", "recorded_estimate", "run_duration", "start_up_device", "zero_gpu"]

log = logging.getLogger("rvos.app")

ENV = "SPACES_ZERO_GPU"
# What ``spaces.GPU`` asks for without a duration; used before any run was recorded.
DEFAULT_S = 60
# The estimate is of the model and the video's reading and writing; a Space's GPU is shared and
# its first call of a size picks kernels, hence the margin.
MARGIN = 1.5
# Moving the weights from the CPU onto the attached GPU (a ResNet-50 ReferFormer: 0.7 GB).
LOAD_S = 10
MIN_S = 15
# ZeroGPU refuses longer requests (the exact limit depends on the account);
# ``RVOS_ZEROGPU_MAX_S`` overrides it.
MAX_S = 120

F = TypeVar("F", bound=Callable[..., Any])


def zero_gpu() -> bool:
    """Whether this app runs on ZeroGPU hardware: ``SPACES_ZERO_GPU`` set (not 0 / false) and
    the ``spaces`` package importable."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    return importlib.util.find_spec("spaces") is not None


def start_up_device(device: str) -> str:
    """Where the app builds its model at start-up: the CPU on ZeroGPU (no GPU is attached
    outside a ``spaces.GPU`` call), ``device`` elsewhere."""
    return "cpu" if zero_gpu() else device


def max_seconds() -> int:
    try:
        return max(MIN_S, int(os.environ.get("RVOS_ZEROGPU_MAX_S", MAX_S)))
    except ValueError:
        return MAX_S


def duration_s(est: Estimate | None) -> int:
    """Seconds to ask ZeroGPU for a run with this estimate (None: `DEFAULT_S`)."""
    if est is None or not math.isfinite(est.seconds):
        return min(DEFAULT_S, max_seconds())
    return int(min(max(math.ceil(MARGIN * est.seconds + LOAD_S), MIN_S), max_seconds()))


def on_gpu(fn: F, duration: Callable[..., int]) -> F:
    """``fn`` inside ``spaces.GPU(duration=duration)`` on ZeroGPU (``duration`` is called with
    ``fn``'s own arguments and returns seconds), ``fn`` itself elsewhere."""
    if not zero_gpu():
        return fn
    import spaces  # only on ZeroGPU: elsewhere the package is not needed

    return spaces.GPU(duration=duration)(fn)


def estimate_on_record(models: Any, key: str, info: Any, expressions: int, settings: Any,
                       model_short_side: int | None) -> Estimate | None:
    """The run's `Estimate` from the speed on record for (model, device, precision) — recorded
    by `record_run` — or None when none is (ZeroGPU's main process cannot measure one).

    ``info``: the video's `rvos.media.probe.VideoInfo`; ``settings``: checked `RunSettings`;
    ``model_short_side``: the model's own input short side (`model_short_side`)."""
    side = settings.short_side or model_short_side
    h, w = (info.height, info.width) if side is None else resized_size(info.height, info.width,
                                                                       side)
    speed = models.speeds.get(key, settings.device, settings.precision, h * w)
    if speed is None:
        return None

    def frames_at(fps: float | None) -> int:
        return min(info.sampled_num_frames(fps), settings.max_frames)

    return estimate(speed, h * w, expressions, settings.device.split(":")[0],
                    frames_at=frames_at, fps=settings.fps, window=settings.window,
                    source_fps=info.fps, io=models.speeds.io(),
                    source_size=(info.height, info.width))


def record_run(models: Any, key: str, settings: Any, input_size: tuple[int, int],
               frames: int, expressions: int, model_s: float) -> None:
    """On ZeroGPU, keep a finished run's speed in the main process's book (the run itself
    recorded it in the GPU worker, whose memory is gone), so the next duration is estimated;
    elsewhere the run already recorded it and this does nothing."""
    if not zero_gpu():
        return
    h, w = input_size
    models.speeds.record(key, settings.device, settings.precision, h * w, frames,
                         expressions, model_s)


def recorded_estimate(models: Any, limits: Any, model: str | None, video: str | None,
                      expressions: int, settings: Any) -> Estimate | None:
    """The `Estimate` of a run of ``expressions`` sentences on ``video`` with ``model`` and the
    page's ``settings`` (`RunSettings`) from the speed on record, without running the model
    (on ZeroGPU the page's estimate must not spend a visitor's GPU quota); None when there is
    none yet or the input is wrong (the run itself then says what)."""
    try:
        settings = settings.checked(limits)
        key = models.choice(model).key
        info = check_video(video, limits)
        settings = check_work(info, settings, limits)
        # The model is on the CPU of this process (`start_up_device`) once it has been used.
        net = models.get(key, "cpu") if models.is_loaded(key, "cpu") else None
        return estimate_on_record(models, key, info, max(expressions, 1), settings,
                                  model_short_side(net))
    except Exception:  # no estimate is not an error
        log.info("no estimate from the speeds on record", exc_info=True)
        return None


def run_duration(models: Any, limits: Any, model: str | None, video: str | None,
                 expressions: int, settings: Any) -> int:
    """`duration_s` of a run (`recorded_estimate`); `DEFAULT_S` when it cannot be estimated."""
    return duration_s(recorded_estimate(models, limits, model, video, expressions, settings))
