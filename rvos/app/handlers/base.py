"""What every part of the page shares: the status line's error text, API errors, guarded
controls, and `Handlers`, the base of the callbacks that need the demo's models, limits, device
and work folder."""

from __future__ import annotations

import inspect
import logging
import types
from pathlib import Path

import gradio as gr

from rvos.app.inputs import RUN_ERRORS, Limits
from rvos.app.models import ModelCache
from rvos.app.runs import download_before_run
from rvos.app.text import escape_markdown, public_message
from rvos.app.zerogpu import record_run, zero_gpu

log = logging.getLogger("rvos.app")


def error_text(err: BaseException) -> str:
    """The status line's Markdown for a failed action: the message, escaped and without server
    paths or operator advice; the log keeps the full message (and, for a bug, the traceback).
    Call it inside the ``except`` block."""
    if isinstance(err, gr.Error):
        text = err.message
    elif isinstance(err, RUN_ERRORS):
        text = str(err)
    else:
        log.exception("an action failed")
        text = "something went wrong on the server; try again, or with other settings"
    log.info("shown to the visitor: %s", text)
    return f"**Error:** {escape_markdown(public_message(text))}"


def to_gr_error(err: BaseException) -> gr.Error:
    """``err`` for an API client: its message without server paths (the log keeps them)."""
    log.info("run failed: %s", err)
    return gr.Error(public_message(err), print_exception=False)


def try_or(fallback, make, *args):
    """``make(*args)``, or ``fallback`` (logged) when it fails: a control update that cannot be
    built must not stop the views from filling."""
    try:
        return make(*args)
    except Exception:
        log.exception("an explorer control failed")
        return fallback


class PerDemo:
    """A parameter default that each demo sets (`Handlers` puts the demo's value in its
    place): the default model, the frame limit or the device."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<the demo's {self.name}>"


DEFAULT_MODEL, MAX_FRAMES, DEVICE = PerDemo("model"), PerDemo("max_frames"), PerDemo("device")


class Handlers:
    """The callbacks of one part of the page, for one demo.

    Two things about Gradio shape this class. It reads a callback's defaults from its signature
    (the API shows them and callers rely on them), and some defaults are the demo's (`PerDemo`),
    which a method's defaults, fixed when its class is defined, cannot be: each instance gets
    copies of those methods with the demo's values in their signatures. And an event's default
    concurrency group is ``str(id(fn))`` (gradio.block_function.BlockFunction), so that events
    wired to one plain function share one group: every public method is bound once here, and
    each use of ``handlers.callback`` is the same object (a bound method made anew on each
    access would get a group of its own)."""

    def __init__(self, models: ModelCache, limits: Limits, device: str, work_dir: Path) -> None:
        self.models, self.limits, self.device, self.work_dir = models, limits, device, work_dir
        per_demo = {DEFAULT_MODEL: models.default.key, MAX_FRAMES: limits.max_frames,
                    DEVICE: device}
        for name, fn in inspect.getmembers(type(self), inspect.isfunction):
            if not name.startswith("_"):
                setattr(self, name, types.MethodType(_with_defaults(fn, per_demo), self))

    def _before_the_slot(self, place, keys, video, expressions, settings, progress):
        """Check the inputs and download what `keys` need, then wait for the one-run slot
        (``place``, of `RunSlot`), yielding a status text as it goes; the caller releases
        the place. Segment and Compare run outside Gradio's one-at-a-time limit: this slot is
        what keeps runs one at a time, and a download does not hold it."""
        for step in download_before_run(self.models, keys, video, expressions, settings,
                                        self.limits):
            progress(step.fraction, desc=step.text)
            yield step.text
        for ahead in place.wait():
            text = (f"waiting for {ahead} run{'s' if ahead > 1 else ''} ahead of yours "
                    "to finish")
            progress(None, desc=text)
            yield text

    def _recorded(self, key, settings, result) -> None:
        """On ZeroGPU, the main process keeps the run's speed (`rvos.app.zerogpu.record_run`)."""
        if not zero_gpu():
            return
        h, w = result.settings["input_size"]
        record_run(self.models, self.models.choice(key).key, settings.checked(self.limits),
                   (h, w), sum(end - start for start, end in result.windows), len(result),
                   result.timings["model_s"])


def _with_defaults(fn, per_demo: dict[PerDemo, object]):
    """``fn`` itself, or a copy of it (the same code, name, docstring and annotations) whose
    `PerDemo` defaults are the values ``per_demo`` gives."""
    if not any(isinstance(d, PerDemo) for d in fn.__defaults__ or ()):
        return fn
    defaults = tuple(per_demo[d] if isinstance(d, PerDemo) else d for d in fn.__defaults__)
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, defaults,
                              fn.__closure__)
    copy.__kwdefaults__, copy.__doc__ = fn.__kwdefaults__, fn.__doc__
    copy.__qualname__, copy.__module__ = fn.__qualname__, fn.__module__
    copy.__annotations__ = fn.__annotations__
    return copy
