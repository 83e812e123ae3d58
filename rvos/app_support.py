"""What the Gradio app (``app.py``) does that is not UI: models, input checks, runs, rendering.

``app.py`` only wires components to the functions here, so everything the demo computes can be
used and tested without a browser:

* `model_choices` / `ModelCache`: the model menu (the built-in model, every released checkpoint
  rvos can load, each marked as on this machine or downloading on first use, a ``--checkpoint``
  file or folder, an ``hf://`` model) and models built once per (model, device), the first time
  they are asked for; a missing official checkpoint is downloaded first, once however many
  sessions ask (`ModelCache.fetch_steps` reports the download's progress for the page).
* `parse_expressions`, `check_video`, `RunSettings.checked`: bad input becomes an `AppInputError`
  whose message says what is wrong and what to do (the app shows it as a ``gr.Error``).
* `prepare_run` → `Run`: a `rvos.predictor.Predictor` run that reports progress per window and
  `Run.finish` → `Session`: the outputs on disk plus what the frame explorer needs.
* `Session`: renders the explorer's views (queries, the decoder layer by layer, every query's
  mask, word attention, scores over time) from the stored result at any frame, expression,
  word, level or threshold, and writes the slide exports (`Session.export_slides`): never the
  model again.
* `prepare_compare` → `CompareRun` → `Comparison`: the same clip and expressions through two
  models, their overlays side by side in one video (frame-synchronised by construction) and
  both score plots.

Source frames for the explorer. Rendering needs the frame under the drawing. Re-decoding frame k
from the file costs decoding k frames (ffmpeg cannot seek exactly to a frame index of a
subsampled variable-rate stream), seconds for a late frame of a long clip; holding raw frames
costs ``T × H × W × 3`` bytes (300 frames of 1080p: 1.9 GB). The session therefore keeps each
processed frame once as a JPEG (quality 90) no larger than `DISPLAY_MAX_SIDE`: 10-20 kB for a
256-pixel example frame, ~120 kB for a 960×540 one (measured on Big Buck Bunny), decoded in a few
milliseconds, where the raw 960×540 frame would take 1.5 MB. Frames larger than that are scaled
back to the source size before drawing, because boxes, points and masks are in source pixels,
and the drawing is scaled down again for the browser. The predictor streams frames and keeps
none, so `Run.finish` reads them once more from the source (same fps and frame limit).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from rvos.estimate import Estimate, SpeedBook, estimate
from rvos.modeling.roberta import CaptionTooLongError
from rvos.predictor import ATTENTION_STRIDES, Predictor, PredictorError, Progress
from rvos.result import VideoResult, encode_rle, rle_area, write_outputs
from rvos.video import VideoError

__all__ = [
    "BUILTIN_NOTE",
    "DISPLAY_MAX_SIDE",
    "MAX_EXPRESSIONS",
    "RUN_ERRORS",
    "AppInputError",
    "CompareRun",
    "Comparison",
    "FrameStore",
    "Limits",
    "ModelCache",
    "ModelChoice",
    "Run",
    "RunSettings",
    "Session",
    "available_devices",
    "check_video",
    "check_work",
    "escape_markdown",
    "first_frame",
    "estimate_run",
    "head_maps_fit",
    "level_label",
    "model_choices",
    "parse_expressions",
    "precision_choices",
    "prepare_compare",
    "prepare_run",
    "plural",
    "progress_text",
    "public_message",
    "query_masks_fit",
    "safe_view",
    "with_threshold",
]

log = logging.getLogger("rvos.app")

MAX_EXPRESSIONS = 4
# A run keeps every attention head's maps (the explorer's "Attention head" menu) when they are
# estimated to fit in this much memory; otherwise only their mean, as the original returns.
HEAD_MAPS_BUDGET_MB = 256
WORDS_ESTIMATE = 12  # words per expression, for that estimate
# A run keeps every query's low-resolution mask (the decoder view's masks of all queries) when
# they fit in this much memory before compression (int8: Q × h/4 × w/4 bytes per frame and
# expression; zlib typically divides it by 5-20); otherwise only the chosen query's.
QUERY_MASKS_BUDGET_MB = 128
# Long side of the frames kept for the explorer and of the images sent to the browser.
DISPLAY_MAX_SIDE = 960
JPEG_QUALITY = 90

BUILTIN_NOTE = (
    "The built-in model knows only synthetic coloured shapes; for real footage choose an "
    "official model (e.g. ytvos-r50): it downloads on first use."
)


class AppInputError(ValueError):
    """Input the app cannot run on; the message says what is wrong and what to do."""


# What a run can fail with because of its input: the app shows the message and keeps serving.
RUN_ERRORS: tuple[type[Exception], ...] = (AppInputError, PredictorError, VideoError,
                                           CaptionTooLongError)


# ------------------------------------------------------------------------ text for people

# Characters that Markdown or HTML give a meaning: each is shown as itself after escaping.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]()!#|~])")
# What GFM turns into a link without any markup: "scheme://" and "www.".
_AUTOLINK = re.compile(r"(?i)(://|\bwww\.)")
_LINE_START = re.compile(r"^(\d*)([.)\-+])")
_HTML_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}
# An absolute path (POSIX or Windows) inside a message: a visitor sees only its last part.
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.\\])(?:[A-Za-z]:\\|/)"  # not inside a URL
                            r"(?:[^\s'\"/\\:,;()]+[/\\])+([^\s'\"/\\:,;()]*)")


def escape_markdown(text: object) -> str:
    """``text`` for a Markdown component, shown literally: HTML tags and entities, links,
    images, emphasis, code, headings, list markers and table pipes all stay characters.

    HTML's ``& < > "`` become entities (a backslash does not stop every HTML parser), the
    punctuation that Markdown reads (``\\ ` * _ [ ] ( ) ! # | ~``) gets a backslash, as do
    the autolinks ``://`` and ``www.`` and a leading list marker (CommonMark shows each as the
    character), and line breaks become spaces (a line of its own could start a heading or end
    a table row)."""
    one_line = " ".join(str(text).split())
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", one_line)
    escaped = _AUTOLINK.sub(lambda m: "\\://" if m.group(1) == "://" else m.group(1)[:3] + "\\.",
                           escaped)
    # At the start of a line, "1." / "1)" / "-" / "+" would make a list (or a rule).
    escaped = _LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), escaped)
    return "".join(_HTML_ENTITIES.get(c, c) for c in escaped)


def public_message(error: BaseException | str) -> str:
    """What a visitor may read of ``error``: its message with every absolute path cut to its
    last part (an upload's name, not the server's folders). The log keeps the full message."""
    text = error if isinstance(error, str) else (getattr(error, "message", None) or str(error))
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "(a folder)", str(text))


def safe_view(name: str, draw: Callable[..., np.ndarray], *args: Any, **kwargs: Any
              ) -> np.ndarray:
    """``draw(*args, **kwargs)``, or, when it fails, a one-line notice in its place: a view
    that cannot be drawn must not empty the others. The traceback goes to the log."""
    from rvos import visualize

    try:
        return draw(*args, **kwargs)
    except Exception as err:
        log.exception("the %s view failed", name)
        text = f"The {name} view could not be drawn here ({type(err).__name__}: " \
               f"{public_message(err)})"
        return visualize.notice(640, text[:200] + ("…)" if len(text) > 200 else ""))


def first_frame(path: str | None) -> np.ndarray | None:
    """uint8 ``[H, W, 3]``: the first frame of ``path`` no larger than `DISPLAY_MAX_SIDE` (the
    page's preview of an upload, whatever its format), or None when it cannot be read (a run
    says why)."""
    from rvos.video import iter_frames

    if not path:
        return None
    try:
        with contextlib.closing(iter_frames(path)) as frames:
            return _fit(next(iter(frames)))
    except Exception:
        log.info("no preview of %s", path, exc_info=True)
        return None


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 frame"``, ``"2 frames"``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


# ----------------------------------------------------------------------------------- limits


# What a run may ask for, whoever asks (the page's controls are built from these, and
# `RunSettings.checked` enforces them for the page and the API alike).
WINDOW_RANGE = (1, 512)  # frames per model call
SHORT_SIDE_RANGE = (32, 2160)  # model input short side in pixels (0: the model's own)
SHORT_SIDE_STEP = 8


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (the app's ``--max-*`` options).

    The limit is on the work, not on the file: a run processes at most ``max_frames`` frames
    (after the processing fps), and no more than ``max_duration_s`` seconds' worth of the
    source's own frames (``max_duration_s × source fps``), whichever is smaller. A video of any
    length is accepted; a run covers its first frames up to that limit (`check_work`).

    Attributes:
        max_duration_s: seconds' worth of source frames a run may process.
        max_frames: most frames processed per run (frames after the processing fps).
        max_upload_mb: largest accepted upload (enforced by Gradio).
    """

    max_duration_s: float = 120.0
    max_frames: int = 300
    max_upload_mb: int = 200

    def __post_init__(self) -> None:
        if not self.max_duration_s > 0 or self.max_frames < 1 or self.max_upload_mb < 1:
            raise ValueError(f"limits must be positive, got {self}")

    def frame_limit(self, source_fps: float) -> int:
        """Most frames one run may process of a video at ``source_fps``."""
        by_duration = math.floor(self.max_duration_s * source_fps + 1e-6) if source_fps > 0 \
            else self.max_frames
        return max(1, min(self.max_frames, by_duration))


def parse_expressions(text: str | None, max_expressions: int = MAX_EXPRESSIONS) -> list[str]:
    """One referring expression per non-empty line of ``text`` (white space collapsed)."""
    lines = [" ".join(line.split()) for line in (text or "").splitlines()]
    exprs = [line for line in lines if line]
    if not exprs:
        raise AppInputError("no expression: type what to segment, e.g. 'the red circle' "
                            "(one expression per line)")
    if len(exprs) > max_expressions:
        raise AppInputError(f"{len(exprs)} expressions given; at most {max_expressions} are "
                            "allowed per run (one per line)")
    return exprs


def check_video(path: str | None, limits: Limits):
    """`rvos.video.VideoInfo` of ``path``, or `AppInputError` for a missing or unreadable
    video. The page, the API and the CLI accept the same files: `rvos.video.check_video_file`
    decides (a GIF is a video; a still image, an audio-only or a subtitle-only file is refused).
    Its length is not refused here: the limit is on the frames a run processes (`check_work`).
    The message names the file by its own name, never by the server's folder; the log keeps
    the full reason."""
    from rvos.video import VideoError, check_video_file

    if not path:
        raise AppInputError("no video: upload a video file or pick one of the examples")
    try:
        info = check_video_file(path)
    except VideoError as err:
        log.info("cannot read %s: %s", path, err)
        raise AppInputError(public_message(err)) from None
    return info


def check_work(info: Any, settings: RunSettings, limits: Limits) -> RunSettings:
    """``settings`` with Max frames lowered to what this app processes per run of the video
    ``info`` (`Limits.frame_limit`). Max frames is a cap, not a demand: a run is never refused
    for the video's length; it covers the video's start, and its summary says so and what to
    change on the page (`Run.notes`)."""
    allowed = limits.frame_limit(info.fps)
    if settings.max_frames <= allowed:
        return settings
    return dataclasses.replace(settings, max_frames=allowed)


def precision_choices(devices: Sequence[str]) -> list[str]:
    """The precisions the app offers for these devices (`rvos.precision`)."""
    gpu = any(d.startswith("cuda") for d in devices)
    return ["fp32", "bf16", "int8"] + (["fp16"] if gpu else [])


def available_devices() -> list[str]:
    """Devices a run can use here: ``cuda`` first when a GPU is usable, then ``cpu``."""
    import torch

    return (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]


# ----------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model menu.

    Attributes:
        key: the menu value (a registry name, an ``hf://`` URI, or the ``--checkpoint``
            file/folder name).
        label: what the menu shows (`ModelCache.menu` adds whether it is on this machine).
        kind: ``"builtin"``, ``"official"``, ``"checkpoint"`` (a ``--checkpoint`` given
            without ``--model``) or ``"hub"`` (``--model hf://OWNER/REPO``).
        checkpoint: explicit weights, or None for the registry's packaged/cached file.
    """

    key: str
    label: str
    kind: Literal["builtin", "official", "checkpoint", "hub"]
    checkpoint: Path | None = None


def model_choices(model: str | None = None, checkpoint: str | Path | None = None,
                  cache_dir: str | Path | None = None, offline: bool | None = None
                  ) -> list[ModelChoice]:
    """The model menu: ``model`` (default ``builtin``) first, then every other model rvos can
    load: those on this machine and, unless offline, the official ones that download on first
    use.

    Arguments:
        model: a registry name or ``hf://OWNER/REPO``; with ``checkpoint``, the registry model
            is built from those weights.
        checkpoint: a file or folder of weights. Without ``model``: a folder written by
            `rvos.checkpoint.save_pretrained` or an official ``.pth``, listed under its name.
        cache_dir: where downloaded official checkpoints live (default: `rvos.download`'s).
        offline: never download (default ``$RVOS_OFFLINE``): models that are not here are left
            out, and a default model that is not here is an error.
    Raises:
        `AppInputError` for an unknown model, a missing checkpoint path, or a default model
        whose weights are not here and cannot be downloaded (the message says how to get them).
    """
    from rvos import download, hub, registry, zoo

    offline = download.offline_mode(offline)
    if (model is not None and checkpoint is None and model not in registry.MODELS
            and Path(model).is_dir()):
        model, checkpoint = None, model  # `--model DIR`: a model folder is a --checkpoint
    choices: list[ModelChoice] = []
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.exists():
            raise AppInputError(f"checkpoint not found: {str(checkpoint)!r}")
        if model is None:
            label = f"{path.name} - from --checkpoint"
            choices.append(ModelChoice(path.stem if path.is_file() else path.name, label,
                                       "checkpoint", path))
    if model is not None and hub.is_hub_uri(model):
        if checkpoint is not None:
            raise AppInputError("--checkpoint goes with a registry model, not with hf://")
        try:
            hub.parse_hub_uri(model)
        except hub.HubError as err:
            raise AppInputError(str(err)) from None
        choices.append(ModelChoice(model, f"{model} - from the Hugging Face Hub", "hub"))
    first = model or ("builtin" if checkpoint is None else None)
    for info in registry.list_models(supported_only=True):
        here = zoo.resolve_local(info.name, cache_dir) is not None
        if info.name == first:
            if checkpoint is None and not here and (info.kind == "builtin" or offline):
                msg = (zoo.missing_file_message(info, cache_dir) if info.kind == "official"
                       else "the built-in model's weights are missing from "
                            f"{registry.BUILTIN_DIR}; train them with `python -m rvos train` "
                            "or pass --checkpoint")
                raise AppInputError(msg)
            choices.insert(0, ModelChoice(info.name, info.label, info.kind,
                                          Path(checkpoint) if checkpoint is not None else None))
        elif here or (info.kind == "official" and not offline):
            choices.append(ModelChoice(info.name, info.label, info.kind))
    if model is not None and not any(c.key == model for c in choices):
        try:
            info = registry.get_model_info(model)
        except registry.UnknownModelError as err:
            raise AppInputError(str(err)) from None
        raise AppInputError(f"{model!r} cannot be loaded by rvos yet ({info.backbone} "
                            "backbone); choose one of: " + ", ".join(
                                m.name for m in registry.list_models(supported_only=True)))
    return choices


class RunSlot:
    """The one run at a time that a device serves, taken in order of arrival.

    The app's Segment and Compare take it only after their model is here (`download_before_run`),
    so a download, however slow, holds up no other visitor's run. `turn` is a generator that
    yields while others are ahead, so a waiting handler can report that and be cancelled (a
    closed `turn` leaves the line); `release` hands the slot on."""

    # How many runs the app lets in at once (downloading, waiting for the slot, or running);
    # the rest wait in Gradio's queue.
    IN_FLIGHT = 8

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._line: list[object] = []
        self._busy = False

    def turn(self, poll_s: float = 0.5) -> Iterator[int]:
        """Wait for the slot, yielding how many runs are ahead (running or waiting) every
        ``poll_s`` seconds; returns once the slot is the caller's, who must `release` it."""
        me = object()
        with self._cond:
            self._line.append(me)
        mine = False
        try:
            while True:
                with self._cond:
                    if not self._busy and self._line[0] is me:
                        self._line.pop(0)
                        self._busy = mine = True
                        return
                    self._cond.wait(poll_s)
                    ahead = self._line.index(me) + int(self._busy)
                if ahead:
                    yield ahead
        finally:
            if not mine:
                with self._cond:
                    self._line.remove(me)
                    self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def place(self) -> SlotPlace:
        """A caller's place for one run: ``wait()`` takes the slot, ``release()`` gives it
        back if it was taken (so a handler can release in ``finally`` whatever happened)."""
        return SlotPlace(self)


class SlotPlace:
    """One caller's claim on a `RunSlot` (see `RunSlot.place`)."""

    def __init__(self, slot: RunSlot) -> None:
        self.slot, self.held = slot, False

    def wait(self, poll_s: float = 0.5) -> Iterator[int]:
        """`RunSlot.turn`; once it returns the slot is held."""
        yield from self.slot.turn(poll_s)
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.slot.release()


class ModelCache:
    """Models built on first use and kept, one per (menu key, device).

    A missing official checkpoint is downloaded first (`fetch_steps`, for the menu and for a
    run alike), outside the loading lock, so that a long download holds up nobody who asks for
    another model; two sessions that ask for the same missing file share one transfer
    (`rvos.download.fetch`).
    Loading is serialised by a lock, so two sessions asking for the same new model build it
    once. ``text_encoder`` is passed to official checkpoints (their RoBERTa weights and
    tokenizer: a Hugging Face name or a local folder); ``offline`` forbids downloads.
    """

    def __init__(self, choices: Sequence[ModelChoice], *, text_encoder: str | None = None,
                 cache_dir: str | Path | None = None, offline: bool | None = None) -> None:
        if not choices:
            raise ValueError("no model to serve: pass at least one ModelChoice")
        self.choices = {c.key: c for c in choices}
        self.text_encoder, self.cache_dir, self.offline = text_encoder, cache_dir, offline
        self._models: dict[tuple[str, ...], Any] = {}  # (key, device[, precision])
        self._lock = threading.Lock()
        self.speeds = SpeedBook()  # measured cost per frame, for the run-time estimate
        self.slot = RunSlot()  # the app's one run at a time, taken once the model is here

    @property
    def default(self) -> ModelChoice:
        return next(iter(self.choices.values()))

    def choice(self, key: str | None) -> ModelChoice:
        """The menu entry ``key`` (None: the default); `AppInputError` for an unknown one."""
        if key is None or key == "":
            return self.default
        try:
            return self.choices[key]
        except KeyError:
            raise AppInputError(f"unknown model {key!r}; this app serves: "
                                f"{', '.join(self.choices)}") from None

    def is_loaded(self, key: str, device: str) -> bool:
        return (self.choice(key).key, device) in self._models

    def needs_download(self, key: str | None) -> bool:
        """Whether menu entry ``key`` is an official model whose file is not here yet."""
        from rvos import zoo

        choice = self.choice(key)
        return (choice.kind == "official" and choice.checkpoint is None
                and zoo.resolve_local(choice.key, self.cache_dir) is None)

    def menu(self) -> list[tuple[str, str]]:
        """(label, key) per entry; official models say whether they are on this machine or
        download on first use (with the size when known), as of now."""
        from rvos import zoo

        def label(c: ModelChoice) -> str:
            if c.kind != "official" or c.checkpoint is not None:
                return c.label
            return f"{c.label} · {zoo.availability(c.key, self.cache_dir).text}"

        return [(label(c), c.key) for c in self.choices.values()]

    def note(self, key: str | None) -> str:
        """The remark the app shows under the menu for entry ``key``."""
        from rvos import download, registry, zoo

        choice = self.choice(key)
        if choice.kind == "builtin":
            return BUILTIN_NOTE
        if choice.kind == "hub":
            return f"From the Hugging Face Hub ({choice.key}), cached by its client."
        if choice.kind != "official":
            return ""
        info = registry.get_model_info(choice.key)
        about = (f"**{info.name}**: {registry.BACKBONE_NAMES.get(info.backbone, info.backbone)}, "
                 f"trained on {info.training_data}"
                 + (f"; published {info.scores[0]}." if info.scores else "."))
        if choice.checkpoint is not None or not self.needs_download(choice.key):
            return f"{about} On this machine."
        where = ("this app's mirror, else the authors' Google Drive"  # (a visitor reads it)
                 if download.mirror_urls(str(info.filename)) else "the authors' Google Drive")
        return (f"{about} **{zoo.availability(choice.key, self.cache_dir).text.capitalize()}** "
                f"from {where}; choosing it starts the download, and a run waits for it.")

    def fetch_steps(self, key: str | None, poll_s: float = 0.5) -> Iterator[Any]:
        """Download the weights of entry ``key`` unless they are here, yielding a
        `rvos.zoo.FetchProgress` every ``poll_s`` seconds; `AppInputError` if it fails."""
        from rvos import zoo

        choice = self.choice(key)
        if not self.needs_download(choice.key):
            return
        try:
            yield from zoo.iter_fetch(choice.key, cache_dir=self.cache_dir, offline=self.offline,
                                      poll_s=poll_s)
        except _download_errors() as err:
            # The visitor reads what went wrong; the log keeps the rest (the cache path to save
            # a hand-made download under is the operator's business).
            import logging

            logging.getLogger("rvos.app").warning("could not download %s: %s", choice.key, err)
            raise AppInputError(f"could not download {choice.key}: "
                                f"{getattr(err, 'reason', None) or err}") from None

    def get(self, key: str | None, device: str = "cpu",
            on_download: Callable[[Any], None] | None = None, precision: str = "fp32"):
        """The model for menu entry ``key`` on ``device``, loaded the first time (downloaded
        before that if needed, each of `fetch_steps`' `rvos.zoo.FetchProgress` passed to
        ``on_download``); in another ``precision`` a derived model, also kept
        (`rvos.precision.with_precision`: it shares the weights, except int8's copy)."""
        from rvos.precision import with_precision

        choice = self.choice(key)
        if (choice.key, device) not in self._models:
            for step in self.fetch_steps(choice.key):
                if on_download is not None:
                    on_download(step)
        with self._lock:
            model = self._models.get((choice.key, device))
            if model is None:
                model = self._load(choice, device)
                self._models[(choice.key, device)] = model
            if precision != "fp32":
                base, model = model, self._models.get((choice.key, device, precision))
                if model is None:
                    model = with_precision(base, precision)
                    self._models[(choice.key, device, precision)] = model
        return model

    def _load(self, choice: ModelChoice, device: str):
        from rvos import checkpoint as ckpt
        from rvos import registry, zoo

        errors = (ckpt.CheckpointError, registry.ModelFileMissingError,
                  registry.UnsupportedModelError, *_download_errors(), OSError)
        try:
            if choice.kind == "checkpoint":
                assert choice.checkpoint is not None
                if choice.checkpoint.is_dir():
                    model = ckpt.load_pretrained(choice.checkpoint, device=device)
                else:
                    kwargs = {} if self.text_encoder is None else {
                        "text_encoder": self.text_encoder}
                    model = ckpt.load_official(choice.checkpoint, device=device, **kwargs)
            else:
                model = zoo.load_model(choice.key, checkpoint=choice.checkpoint, device=device,
                                       text_encoder=self.text_encoder, cache_dir=self.cache_dir,
                                       offline=self.offline)
        except errors as err:
            # The visitor reads what went wrong (`reason` where the error has one); operator
            # advice and server paths go to the log.
            import logging

            logging.getLogger("rvos.app").warning("cannot load model %s: %s", choice.key, err)
            raise AppInputError(f"cannot load model {choice.key!r}: "
                                f"{getattr(err, 'reason', None) or err}") from None
        return model.eval()


def _download_errors() -> tuple[type[Exception], ...]:
    from rvos import download, hub, registry

    return (download.DownloadError, hub.HubError, registry.ModelFileMissingError)


# ------------------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunSettings:
    """The "Advanced" settings of one run.

    Attributes:
        threshold: mask probability threshold, in (0, 1).
        window: frames per model call (see `rvos.predictor`).
        fps: processing frame rate; None or 0 processes every frame.
        max_frames: process at most this many frames (from the start).
        short_side: model input short side; None or 0 uses the model's own.
        device: torch device of the run.
        precision: "fp32" (the default, checked against the original) or a faster mode of
            `rvos.precision` the device can run.
    """

    threshold: float = 0.5
    window: int = 36
    fps: float | None = None
    max_frames: int = 300
    short_side: int | None = None
    device: str = "cpu"
    precision: str = "fp32"

    def checked(self, limits: Limits) -> RunSettings:
        """These settings normalised (0 → None, whole numbers as int), or `AppInputError`."""

        def number(name: str, value: Any) -> float:
            try:
                x = float(value)
            except (TypeError, ValueError):
                raise AppInputError(f"{name} must be a number, got {value!r}") from None
            if not math.isfinite(x):
                raise AppInputError(f"{name} must be a finite number, got {value!r}")
            return x

        threshold = number("threshold", self.threshold)
        if not 0.0 < threshold < 1.0:
            raise AppInputError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
        window = number("window", self.window)
        lo, hi = WINDOW_RANGE
        if window != int(window) or not lo <= window <= hi:
            raise AppInputError(f"window must be a whole number of frames in {lo}..{hi}, got "
                                f"{window:g}")
        fps = number("fps", 0 if self.fps is None else self.fps)
        if fps < 0:
            raise AppInputError(f"fps must be positive (or 0 for every frame), got {fps}")
        max_frames = number("max_frames", self.max_frames)
        if max_frames != int(max_frames) or not 1 <= max_frames <= limits.max_frames:
            raise AppInputError(f"max_frames must be a whole number in 1..{limits.max_frames} "
                                f"(this app's limit), got {max_frames:g}")
        side = number("short_side", 0 if self.short_side is None else self.short_side)
        lo, hi = SHORT_SIDE_RANGE
        if side != int(side) or not (side == 0 or lo <= side <= hi):
            raise AppInputError(f"short_side must be 0 (the model's own) or a whole number of "
                                f"pixels in {lo}..{hi}, got {side:g}")
        devices = available_devices()
        device = str(self.device or devices[0])
        if device not in devices and not (device.startswith("cuda:") and "cuda" in devices):
            raise AppInputError(f"device {device!r} is not available here; choose one of "
                                f"{', '.join(devices)}")
        from rvos.precision import PrecisionError, check_precision

        try:
            precision = check_precision(str(self.precision or "fp32"), device)
        except PrecisionError as err:
            raise AppInputError(str(err)) from None
        return RunSettings(threshold, int(window), fps or None, int(max_frames),
                           int(side) or None, device, precision)


class Run:
    """One prediction, validated and ready: iterate `steps`, then call `finish`.

    Made by `prepare_run`; holds the `Predictor`, the expressions and the probed video.
    """

    def __init__(self, predictor: Predictor, video: str, expressions: list[str], info: Any,
                 settings: RunSettings, work_dir: Path, *, details: bool = True,
                 on_finish: Callable[..., None] | None = None,
                 limits: Limits | None = None) -> None:
        # e.g. to refine the time estimates: called with the result and the run's wall time
        self.on_finish = on_finish
        self._started: float | None = None
        self._out: Path | None = None
        self._paths: dict[str, Path] | None = None
        self.predictor, self.video, self.expressions = predictor, video, expressions
        asked = settings.max_frames
        if limits is not None:  # the limit is on the work: frames processed
            settings = check_work(info, settings, limits)
        self.limited = settings.max_frames < asked  # by the app's limit, not by Max frames
        self.info, self.settings, self.work_dir = info, settings, work_dir
        available = info.sampled_num_frames(settings.fps)
        self.num_frames = min(available, settings.max_frames)
        self.truncated_from = available if available > settings.max_frames else None
        # details: what the frame explorer draws (attention, sampling points, every query's
        # mask); a comparison needs none of it.
        self.details = details
        size = (info.height, info.width)
        self.attention_heads = details and head_maps_fit(predictor, size, self.num_frames,
                                                         len(expressions))
        self.query_masks = details and query_masks_fit(predictor, size, self.num_frames,
                                                       len(expressions))

    def steps(self) -> Iterator[Progress]:
        """`Progress` after every window; the last one carries the `VideoResult`. Closing the
        iterator early (a Stop button) stops the model and the video reader. A run with
        ``details`` (Segment's) writes overlay.mp4, masks.zip and result.json into a new folder
        of ``work_dir`` while it runs."""
        import time

        self._started = time.perf_counter()
        out = None
        if self.details:
            self._out = out = Path(tempfile.mkdtemp(prefix="run-", dir=self.work_dir))
        try:
            for progress in self.predictor.iter_predict(
                    self.video, self.expressions, fps=self.settings.fps,
                    max_frames=self.settings.max_frames, return_attention=self.details,
                    return_sampling=self.details, attention_heads=self.attention_heads,
                    return_query_masks=self.query_masks, out_dir=out):
                if progress.paths is not None:
                    self._paths = progress.paths
                yield progress
        except BaseException:  # failed, or stopped (GeneratorExit): its partial outputs go
            self.discard()
            raise

    def discard(self) -> None:
        """Delete this run's partial outputs (a run that failed or was stopped)."""
        if self._out is not None:
            shutil.rmtree(self._out, ignore_errors=True)
            self._out, self._paths = None, None

    def finish(self, result: VideoResult) -> Session:
        """The outputs (written while the run went, else now into a new folder of
        ``work_dir``) and the frames for the explorer."""
        if self._paths is not None and self._out is not None:
            out, paths = self._out, dict(self._paths)
            # masks.zip holds the same PNGs; the loose copies would only fill the disk.
            shutil.rmtree(paths.pop("masks"), ignore_errors=True)
        else:
            self._out = out = Path(tempfile.mkdtemp(prefix="run-", dir=self.work_dir))
            paths = {}
        try:
            if not paths:
                paths = _export(result, out, self.video)
            frames = FrameStore.from_result(result, self.video)
        except BaseException:
            self.discard()
            raise
        if self.on_finish is not None and self._started is not None:
            import time

            self.on_finish(result, time.perf_counter() - self._started)
        return Session(result, frames, self.video, out, paths, result, self.notes(result))

    def notes(self, result: VideoResult) -> list[str]:
        """Remarks for the summary: frames left out, views that did not fit in memory."""
        notes = []
        if self.truncated_from is not None:
            why = (f"this app processes at most {plural(self.settings.max_frames, 'frame')} "
                   "of this video per run" if self.limited else "Max frames")
            notes.append(f"Only the first {result.num_frames} of {self.truncated_from} frames "
                         f"were processed ({why}); lower the processing fps (Advanced "
                         "settings) to cover more of the video.")
        if self.details and not self.query_masks:
            notes.append(f"Every query's mask was not kept (more than "
                         f"{QUERY_MASKS_BUDGET_MB} MB for this many frames at this size); the "
                         "decoder view shows the boxes of all queries and the chosen mask.")
        return notes


def head_maps_fit(predictor: Predictor, size: tuple[int, int], num_frames: int,
                  num_expressions: int, budget_mb: float = HEAD_MAPS_BUDGET_MB) -> bool:
    """Whether every head's attention maps of a run fit in ``budget_mb`` (float16, all eight
    levels, `WORDS_ESTIMATE` words per expression). ``size`` is the source's (height, width)."""
    from rvos.inference import resized_size

    h, w = size if predictor.short_side is None else resized_size(*size, predictor.short_side)
    pixels = sum(-(-h // s) * -(-w // s) for strides in ATTENTION_STRIDES.values()
                 for s in strides)
    config = predictor.model.config
    heads = max(config.fusion_nheads, config.fpn_nheads)
    total = num_frames * num_expressions * WORDS_ESTIMATE * heads * pixels * 2
    return total <= budget_mb * 2**20


def query_masks_fit(predictor: Predictor, size: tuple[int, int], num_frames: int,
                    num_expressions: int, budget_mb: float = QUERY_MASKS_BUDGET_MB) -> bool:
    """Whether every query's low-resolution mask logits of a run fit in ``budget_mb`` before
    compression: int8 ``Q × ceil(h/4) × ceil(w/4)`` per frame and expression at the model's
    input size (h, w). ``size`` is the source's (height, width)."""
    from rvos.inference import resized_size

    h, w = size if predictor.short_side is None else resized_size(*size, predictor.short_side)
    queries = predictor.model.config.num_queries
    total = num_frames * num_expressions * queries * -(-h // 4) * -(-w // 4)
    return total <= budget_mb * 2**20


def download_before_run(models: ModelCache, model_keys: Sequence[str | None],
                        video: str | None, expressions: str | None, settings: RunSettings,
                        limits: Limits) -> Iterator[Any]:
    """What a run does before it takes the one-run slot: check the inputs (cheapest first, so
    a bad video downloads nothing), then fetch each model that is not here yet, yielding its
    `rvos.zoo.FetchProgress`. Raises `AppInputError` with the first problem found."""
    parse_expressions(expressions)
    settings.checked(limits)
    keys = [models.choice(k).key for k in model_keys]
    check_video(video, limits)
    for key in dict.fromkeys(keys):
        yield from models.fetch_steps(key)


def prepare_run(models: ModelCache, model: str | None, video: str | None,
                expressions: str | None, settings: RunSettings, limits: Limits,
                work_dir: str | Path, *, on_download: Callable[[Any], None] | None = None,
                details: bool = True) -> Run:
    """Check every input (cheapest first), load the model if needed and build the predictor.

    A model whose weights are not here yet is downloaded first, its progress reported to
    ``on_download`` (a `rvos.zoo.FetchProgress`). ``details``: keep what the frame explorer
    draws (attention, sampling points, every query's mask; see `Run`). Raises `AppInputError`
    with the first problem found.
    """
    texts = parse_expressions(expressions)
    settings = settings.checked(limits)
    choice = models.choice(model)
    info = check_video(video, limits)
    net = models.get(choice.key, settings.device, on_download=on_download,
                     precision=settings.precision)
    from rvos.predictor import PredictorError

    try:
        predictor = Predictor(net, device=settings.device, window=settings.window,
                              short_side=settings.short_side or "auto",
                              threshold=settings.threshold, model_name=choice.key)
    except PredictorError as err:
        raise AppInputError(str(err)) from None
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)

    def record(result: VideoResult, wall_s: float | None = None) -> None:
        # every run refines the estimates; reading and writing only from a Segment's wall time
        # (a comparison's runs write nothing while they run)
        h, w = result.settings["input_size"]
        model_s = result.timings["model_s"]
        models.speeds.record(choice.key, settings.device, settings.precision, h * w,
                             sum(end - start for start, end in result.windows), len(result),
                             model_s)
        if wall_s is not None:
            models.speeds.record_io(result.num_frames, info.height * info.width, len(result),
                                    wall_s - model_s)

    return Run(predictor, str(video), texts, info, settings, work, details=details,
               on_finish=record, limits=limits)


def estimate_run(models: ModelCache, model: str | None, video: str | None,
                 expressions: str | None, settings: RunSettings, limits: Limits
                 ) -> Estimate | None:
    """How long Segment would take with these inputs (`rvos.estimate`): the model's part,
    measured on this device the first time, and reading and writing the video at the source's
    size. None while something is missing (no video yet, a model still to download) or wrong
    (a model that does not load: the run itself will say what). A video longer than the app's
    limit is estimated for the frames the run will process (`check_work`), and the note says
    so; a video the run would refuse gets an estimate when it can be probed, with the reason."""
    import logging

    from rvos.inference import resized_size
    from rvos.predictor import model_short_side
    from rvos.video import VideoError, probe

    try:
        texts = parse_expressions(expressions) if (expressions or "").strip() else ["x"]
        settings = settings.checked(limits)
        choice = models.choice(model)
        if video is None or models.needs_download(choice.key):
            return None
        note = ""
        try:
            info = check_video(video, limits)
        except AppInputError as err:
            try:
                info = probe(video)  # a video over a limit: estimate it, say why it is refused
            except VideoError:
                return None
            note = f"As it is, the run would be refused: {err}"
        limited = check_work(info, settings, limits)  # the limit is on the frames processed
        if limited.max_frames < settings.max_frames and limited.max_frames < info.num_frames:
            note = (f"The run processes the first {plural(limited.max_frames, 'frame')} of "
                    f"{info.num_frames} (this app's limit for this video); lower the "
                    "processing fps (Advanced settings) to cover more of it.")
        settings = limited
        net = models.get(choice.key, settings.device, precision=settings.precision)
    except RUN_ERRORS:
        return None
    except Exception:  # a model that fails to load in an unforeseen way: no stale estimate
        logging.getLogger("rvos.app").exception("could not load %r for the estimate", model)
        return None
    try:
        side = settings.short_side or model_short_side(net)
        h, w = (info.height, info.width) if side is None else resized_size(
            info.height, info.width, side)
        speed = models.speeds.get(choice.key, settings.device, settings.precision, h * w)
        if speed is None:
            speed = models.speeds.measure(net, choice.key, settings.device, settings.precision,
                                          (h, w))
        io = models.speeds.io()
    except Exception:  # e.g. out of memory: no estimate rather than a stale one
        logging.getLogger("rvos.app").exception("could not measure the run-time estimate")
        return None

    def frames_at(fps: float | None) -> int:
        return min(info.sampled_num_frames(fps), settings.max_frames)

    return estimate(speed, h * w, len(texts), torch_device_type(settings.device),
                    frames_at=frames_at, fps=settings.fps, window=settings.window,
                    source_fps=info.fps, io=io, source_size=(info.height, info.width),
                    note=note)


def torch_device_type(device: str) -> str:
    """``"cuda:1"`` -> ``"cuda"``."""
    return device.split(":", 1)[0]


def progress_text(p: Progress) -> str:
    """One line for a progress bar, e.g. ``"window 2/4: 64/120 frames"``."""
    windows = f"window {p.window + 1}/{p.total_windows}" if p.total_windows else \
        f"window {p.window + 1}"
    if p.total_frames:
        return f"{windows}: {p.frames_done}/{plural(p.total_frames, 'frame')}"
    return f"{windows}: {plural(p.frames_done, 'frame')}"


def _export(result: VideoResult, out: Path, video: str) -> dict[str, Path]:
    paths = write_outputs(result, out, video_path=video)
    # masks.zip holds the same PNGs; the loose copies would only fill the disk.
    shutil.rmtree(paths.pop("masks"), ignore_errors=True)
    return paths


def with_threshold(result: VideoResult, threshold: float) -> VideoResult:
    """``result`` with its masks re-thresholded at ``threshold`` from the stored mask logits.

    The chosen queries stay as predicted (they were linked across windows at the prediction
    threshold). At the prediction threshold ``result`` itself is returned.
    """
    if not 0.0 < threshold < 1.0:
        raise AppInputError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
    if threshold == result.settings["threshold"]:
        return result
    exprs = []
    for e in result:
        rle = [encode_rle(e.mask(t, threshold)) for t in range(e.num_frames)]
        areas = np.array([rle_area(r) for r in rle], dtype=np.int64)
        exprs.append(dataclasses.replace(e, threshold=threshold, rle=rle, mask_areas=areas))
    return dataclasses.replace(result, expressions=exprs,
                               settings=dict(result.settings, threshold=threshold))


# ----------------------------------------------------------------------------------- frames


@dataclass
class FrameStore:
    """The processed frames as JPEGs no larger than `DISPLAY_MAX_SIDE` (see the module
    docstring for why). ``frame(t)`` gives uint8 ``[H0, W0, 3]`` at the source size."""

    jpegs: list[bytes]
    source_size: tuple[int, int]  # (H0, W0)
    stored_size: tuple[int, int]  # (h, w) of the JPEGs

    @classmethod
    def from_frames(cls, frames: Iterator[np.ndarray] | Sequence[np.ndarray],
                    max_side: int = DISPLAY_MAX_SIDE) -> FrameStore:
        jpegs: list[bytes] = []
        source = stored = (0, 0)
        for frame in frames:
            source = frame.shape[:2]
            small = _fit(frame, max_side)
            stored = small.shape[:2]
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise OSError("could not JPEG-encode a frame")
            jpegs.append(buf.tobytes())
        return cls(jpegs, source, stored)

    @classmethod
    def from_result(cls, result: VideoResult, video: str) -> FrameStore:
        return cls.from_frames(result.iter_source_frames(video))

    def __len__(self) -> int:
        return len(self.jpegs)

    def __getitem__(self, t: int) -> np.ndarray:
        return self.frame(t)

    def nbytes(self) -> int:
        return sum(len(j) for j in self.jpegs)

    def frame(self, t: int) -> np.ndarray:
        """uint8 ``[H0, W0, 3]`` RGB frame ``t`` (upscaled when stored smaller)."""
        if not 0 <= t < len(self.jpegs):
            raise IndexError(f"frame {t} out of range: {len(self.jpegs)} frames")
        bgr = cv2.imdecode(np.frombuffer(self.jpegs[t], np.uint8), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h0, w0 = self.source_size
        if rgb.shape[:2] != (h0, w0):
            rgb = cv2.resize(rgb, (w0, h0), interpolation=cv2.INTER_LINEAR)
        return rgb


def _fit(image: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> np.ndarray:
    """``image`` scaled down (area interpolation) so its long side is at most ``max_side``."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    s = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))),
                      interpolation=cv2.INTER_AREA)


_LEVEL_NAMES = {"fusion": "early fusion", "fpn": "cross-modal FPN"}


def _index(value: int | float | str | None, n: int) -> int:
    """A UI value (a slider's float, a radio's string; None or "": the first) as an index in
    ``[0, n)``, clamped."""
    k = 0 if value in (None, "") else round(float(value))
    return min(max(k, 0), n - 1)


def _expression_choices(result: VideoResult) -> list[tuple[str, str]]:
    """(label, value) per expression, value the index as a string."""
    return [(f"{k + 1}: {e.text}", str(k)) for k, e in enumerate(result)]


def level_label(level: str) -> str:
    """Menu text of an attention level, e.g. ``"fusion/8"`` → ``"early fusion, 1/8"``."""
    kind, _, stride = level.partition("/")
    return f"{_LEVEL_NAMES.get(kind, kind)}, 1/{stride}" if stride else level


# ---------------------------------------------------------------------------------- session


@dataclass
class Session:
    """A finished run as the app keeps it per browser session.

    Attributes:
        result: the `VideoResult` at the prediction threshold (re-thresholding starts from it).
        frames: the processed frames (`FrameStore`).
        video: the source file.
        out_dir / paths: the written outputs (``overlay``, ``masks_zip``, ``result``).
        exported: the result as written (``result`` re-thresholded, or ``result`` itself).
        notes: remarks for the summary (e.g. frames left out).
    """

    result: VideoResult
    frames: FrameStore
    video: str
    out_dir: Path
    paths: dict[str, Path]
    exported: VideoResult
    notes: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return self.result.num_frames

    @property
    def threshold(self) -> float:
        """Threshold of the written outputs."""
        return float(self.exported.settings["threshold"])

    def close(self) -> None:
        """Delete the written outputs (the app calls this when the session expires)."""
        shutil.rmtree(self.out_dir, ignore_errors=True)

    def rethreshold(self, threshold: float) -> Session:
        """A session whose outputs are written at ``threshold`` (from the stored logits; no
        model run). Returns ``self`` when nothing changes."""
        if threshold == self.threshold:
            return self
        exported = with_threshold(self.result, threshold)
        out = Path(tempfile.mkdtemp(prefix="run-", dir=self.out_dir.parent))
        paths = _export(exported, out, self.video)
        self.close()
        return dataclasses.replace(self, out_dir=out, paths=paths, exported=exported)

    # ------------------------------------------------------------------------- menus

    def expression_choices(self) -> list[tuple[str, str]]:
        return _expression_choices(self.result)

    def word_choices(self, expression: int) -> list[tuple[str, str]]:
        """("all words", "all") then (word, index as string) for each word of the expression."""
        e = self.result[self._expr(expression)]
        return [("all words", "all")] + [(w, str(i)) for i, w in enumerate(e.words)]

    def level_choices(self) -> list[tuple[str, str]]:
        e = self.result[0]
        return [] if e.attention is None else [(level_label(lv), lv) for lv in
                                               e.attention.levels]

    def head_choices(self) -> list[tuple[str, str]]:
        """("mean of heads", "mean"), then ("head k", "k-1") when the run kept every head."""
        e = self.result[0]
        heads = 0 if e.attention is None else e.attention.num_heads
        return [("mean of heads", "mean")] + [(f"head {k + 1}", str(k)) for k in range(heads)]

    # ----------------------------------------------------------------------- rendering

    def render_queries(self, expression: int, frame: int, threshold: float | None = None,
                       sampling: bool = False) -> np.ndarray:
        """uint8 image: the expression's mask at ``threshold`` with every query's box and
        score, the chosen query highlighted, the reference points (and sampling points)."""
        k, t = self._expr(expression), self._frame(frame)
        thr = self.threshold if threshold is None else float(threshold)
        base = self.result.render_overlay(t, self.frames.frame(t), threshold=thr,
                                          expressions=[k])
        return _fit(self.result.render_queries(k, t, base, sampling=sampling))

    def decoder_query_choices(self) -> list[tuple[str, str]]:
        """The decoder view's menu: all queries, the chosen one (whichever it is on the frame),
        then each query."""
        q = self.result[0].scores.shape[1]
        return [("all queries", "all"), ("the chosen query", "chosen")] + [
            (f"q{k + 1}", str(k)) for k in range(q)]  # counted from 1, as the drawings

    def render_decoder(self, expression: int, frame: int, query: str | int | None = "all"
                       ) -> np.ndarray:
        """uint8 image: the decoder's layer-by-layer refinement on ``frame``: every query's
        path (``"all"``), or the boxes of one query (an index, or ``"chosen"``) after each
        layer with each layer's score."""
        k, t = self._expr(expression), self._frame(frame)
        e = self.result[k]
        if query in (None, "", "all"):
            focus = None
        elif query == "chosen":
            focus = int(e.chosen_query[t])
        else:
            focus = min(max(int(query), 0), e.scores.shape[1] - 1)
        base = self.result.render_overlay(t, self.frames.frame(t), threshold=self.threshold,
                                          expressions=[k])
        return _fit(self.result.render_decoder(k, t, base, query=focus))

    def render_layer_scores(self, expression: int, frame: int) -> np.ndarray:
        """uint8 ``[240, 640, 3]``: every query's score after each decoder layer on ``frame``."""
        return self.result.render_layer_scores(self._expr(expression), self._frame(frame))

    def render_query_masks(self, expression: int, frame: int) -> np.ndarray:
        """uint8 image: every query's mask on ``frame`` as small multiples with their scores,
        the chosen one marked (a note instead when the run did not keep them)."""
        from rvos import visualize

        k, t = self._expr(expression), self._frame(frame)
        if not self.result[k].has_query_masks:
            return visualize.notice(960, "Every query's mask was not kept for this run (it "
                                         f"would take over {QUERY_MASKS_BUDGET_MB} MB); only "
                                         "the chosen query's mask is stored.")
        return _fit(self.result.render_query_masks(k, t, self.frames.frame(t),
                                                   threshold=self.threshold))

    def export_slides(self, columns: int = 5, gif: bool = False) -> dict[str, Path]:
        """Write ``figure.png`` and ``figure.pdf`` (``columns`` evenly spaced frames) of the
        outputs as they stand (threshold included) into this session's folder, and with
        ``gif`` also ``overlay.gif`` (`export_gif`: it takes far longer than the figure);
        returns their paths as ``figure_png``, ``figure_pdf`` (and ``gif``)."""
        from rvos import exports

        try:
            columns = exports.check_columns(columns)
            paths = exports.write_figure(self.exported, self.out_dir, self.frames,
                                         columns=columns)
        except exports.ExportError as err:
            raise AppInputError(str(err)) from None
        if gif:
            paths["gif"] = self.export_gif()
        return paths

    def export_gif(self) -> Path:
        """Write ``overlay.gif`` of the outputs as they stand into this session's folder."""
        from rvos import exports

        try:
            return exports.write_gif(self.exported, self.out_dir / "overlay.gif", self.frames)
        except exports.ExportError as err:
            raise AppInputError(str(err)) from None

    def render_attention(self, expression: int, frame: int, word: str | int = "all",
                         level: str | None = None, head: str | int | None = "mean"
                         ) -> np.ndarray:
        """uint8 image: word ``word`` (index, or ``"all"`` for one panel per word) of the
        expression attending over frame ``frame`` at feature level ``level``, for attention
        head ``head`` (index, or ``"mean"``)."""
        k, t = self._expr(expression), self._frame(frame)
        levels = [v for _, v in self.level_choices()]
        lv = level if level in levels else levels[0]
        w: str | int = "all" if word in (None, "", "all") else int(word)
        if w != "all" and not 0 <= int(w) < len(self.result[k].words):
            w = "all"
        heads = [v for _, v in self.head_choices()]
        hd = None if head is None or str(head) not in heads[1:] else int(head)
        return _fit(self.result.render_attention(k, t, self.frames.frame(t), word=w, level=lv,
                                                 head=hd))

    def render_scores(self, expression: int, frame: int) -> np.ndarray:
        """uint8 ``[240, 640, 3]`` plot of every query's score over time, cursor at ``frame``."""
        return self.result.render_scores(self._expr(expression), self._frame(frame))

    def _expr(self, expression: int | str | None) -> int:
        return _index(expression, len(self.result))

    def _frame(self, frame: int | float | None) -> int:
        return _index(frame, self.num_frames)

    # ------------------------------------------------------------------------- summary

    def summary(self) -> str:
        """Markdown: what was processed, how fast, and per expression how sure the model was."""
        r = self.exported
        s, t = r.source, r.timings
        head = (f"**{plural(r.num_frames, 'frame')}** ({s.width}×{s.height}, {s.fps:.3g} fps)"
                f" · {plural(len(r.windows), 'window')} · "
                f"{t['total_s']:.1f} s on {escape_markdown(r.settings['device'])} "
                f"({t['frames_per_second']:.1f} frames/s) · model "
                f"**{escape_markdown(r.model_name)}** · threshold {self.threshold:g}")
        lines = [head, ""]
        for k, e in enumerate(r):
            shown = int((e.mask_areas > 0).sum())
            # The expression is the visitor's text: escaped, so it shows as typed.
            lines.append(f"{k + 1}. *{escape_markdown(e.text)}*: score "
                         f"{float(e.chosen_scores.mean()):.2f} (mean of the chosen query), "
                         f"object on {shown}/{plural(e.num_frames, 'frame')}")
        if self.exported is not self.result:
            lines += ["", f"Masks re-thresholded at {self.threshold:g} from the stored mask "
                          f"logits (predicted at {self.result.settings['threshold']:g})."]
        for note in self.notes:
            lines += ["", note]  # the app's own words
        return "\n".join(lines)


# ------------------------------------------------------------------------------- comparison


def _safe_name(key: str) -> str:
    """A model key as a file-name part (checkpoint keys are file names)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._") or "model"


def _titles(keys: tuple[str, str]) -> tuple[str, str]:
    """The two panels' titles: ``"A: <model>"``, ``"B: <model>"``."""
    return f"A: {keys[0]}", f"B: {keys[1]}"


def _pooled_iou(a, b) -> float | None:
    """Intersection over union of two expressions' masks pooled over all frames (None when
    neither has any object pixel)."""
    inter = union = 0
    for ma, mb in zip(a.masks(), b.masks(), strict=True):
        inter += int(np.count_nonzero(ma & mb))
        union += int(np.count_nonzero(ma | mb))
    return inter / union if union else None


@dataclass
class Comparison:
    """The same clip and expressions through two models (the app's Compare view).

    Attributes:
        results: the `VideoResult` of model A and of model B (the same object twice when the
            same model was asked for twice: it ran once).
        keys: the two models' menu keys.
        frames: the processed frames (`FrameStore`), shared by both.
        out_dir: the folder of the written files.
        paths: ``overlay_a``, ``overlay_b`` (each model's overlay.mp4), ``result_a``,
            ``result_b`` (their result.json) and ``side_by_side`` (both overlays in one video).
        notes: remarks for the summary.
    """

    results: tuple[VideoResult, VideoResult]
    keys: tuple[str, str]
    frames: FrameStore
    out_dir: Path
    paths: dict[str, Path]
    notes: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return self.results[0].num_frames

    @property
    def titles(self) -> tuple[str, str]:
        return _titles(self.keys)

    def close(self) -> None:
        shutil.rmtree(self.out_dir, ignore_errors=True)

    def expression_choices(self) -> list[tuple[str, str]]:
        return _expression_choices(self.results[0])

    def _frame(self, frame: int | float | None) -> int:
        return _index(frame, self.num_frames)

    def render_frame(self, frame: int) -> np.ndarray:
        """uint8 image: frame ``frame`` with model A's masks next to model B's."""
        from rvos import exports

        t = self._frame(frame)
        return _fit(exports.compare_frame(self.results, self.titles, t, self.frames.frame(t)))

    def render_scores(self, which: int, expression: int, frame: int) -> np.ndarray:
        """uint8 ``[240, 640, 3]``: model ``which``'s (0: A, 1: B) query scores over time for
        ``expression``, cursor at ``frame``."""
        result = self.results[1 if which else 0]
        k = _index(expression, len(result))
        return result.render_scores(k, self._frame(frame))

    def summary(self) -> str:
        """Markdown: the two runs and, per expression, each model's score and where they
        agree."""
        a, b = self.results
        ta, tb = (escape_markdown(t) for t in self.titles)
        # The same model twice ran once: one time, said once.
        times = (f"run once in {a.timings['total_s']:.1f} s (the same model twice: shown "
                 "twice)" if a is b else
                 f"A {a.timings['total_s']:.1f} s, B {b.timings['total_s']:.1f} s")
        lines = [f"**{ta}** vs **{tb}** · {plural(self.num_frames, 'frame')} · {times}", "",
                 "Score: the chosen query's mean score; IoU: how much the two models' masks "
                 "overlap, pooled over all frames.", "",
                 "| expression | A score | B score | A–B IoU |",
                 "| --- | --- | --- | --- |"]
        for ea, eb in zip(a, b, strict=True):
            iou = _pooled_iou(ea, eb)
            lines.append(f"| {escape_markdown(ea.text)} | {float(ea.chosen_scores.mean()):.2f} | "
                         f"{float(eb.chosen_scores.mean()):.2f} | "
                         f"{'no object in either' if iou is None else f'{iou:.2f}'} |")
        for note in self.notes:
            lines += ["", note]  # the app's own words
        return "\n".join(lines)


class CompareRun:
    """Two `Run` s of the same clip and expressions (one when both models are the same):
    iterate `steps`, then call `finish`. Made by `prepare_compare`."""

    def __init__(self, runs: list[Run], keys: tuple[str, str], work_dir: Path) -> None:
        self.runs, self.keys, self.work_dir = runs, keys, work_dir
        self.results: list[VideoResult] = []

    def steps(self) -> Iterator[tuple[float | None, str]]:
        """``(fraction done, what is running)`` after every window of either model. Closing the
        iterator early stops the model and the video reader."""
        n = len(self.runs)
        self.results = []
        for i, (run, key) in enumerate(zip(self.runs, self.keys, strict=False)):
            label = "AB"[i] if n > 1 else "A = B"
            with contextlib.closing(run.steps()) as steps:
                for step in steps:
                    part = step.fraction
                    fraction = None if part is None else (i + part) / n
                    yield fraction, f"model {label} ({key}): {progress_text(step)}"
                    if step.result is not None:
                        self.results.append(step.result)

    def finish(self) -> Comparison:
        """Write each model's overlay.mp4 and result.json and the side-by-side video into a
        new folder of ``work_dir``."""
        from rvos import exports

        if len(self.results) != len(self.runs):
            raise RuntimeError("finish() before steps() ran to the end")
        for run, result in zip(self.runs, self.results, strict=True):
            if run.on_finish is not None:
                run.on_finish(result)
        results = (self.results[0], self.results[-1])
        out = Path(tempfile.mkdtemp(prefix="compare-", dir=self.work_dir))
        video = self.runs[0].video
        paths: dict[str, Path] = {}
        for side, key, result in zip("ab", self.keys, results, strict=True):
            name = f"{side.upper()}_{_safe_name(key)}"
            written = write_outputs(result, out / side, video_path=video, masks=False)
            overlay = written["overlay"].rename(out / f"{name}.mp4")
            doc = json.loads(written["result"].read_text())
            doc["outputs"] = {"overlay": overlay.name}
            written["result"].unlink()
            (out / side).rmdir()
            paths[f"overlay_{side}"] = overlay
            paths[f"result_{side}"] = out / f"{name}.json"
            paths[f"result_{side}"].write_text(json.dumps(doc, separators=(",", ":")))
        frames = FrameStore.from_result(results[0], video)
        paths["side_by_side"] = exports.write_side_by_side(
            results, _titles(self.keys), out / "side_by_side.mp4", frames)
        notes = self.runs[0].notes(results[0])
        return Comparison(results, self.keys, frames, out, paths, notes)


def prepare_compare(models: ModelCache, model_a: str | None, model_b: str | None,
                    video: str | None, expressions: str | None, settings: RunSettings,
                    limits: Limits, work_dir: str | Path, *,
                    on_download: Callable[[Any], None] | None = None) -> CompareRun:
    """Check every input and build the run(s) of the same clip and expressions through
    ``model_a`` and ``model_b`` (the same model twice runs once). A model whose weights are not
    here yet is downloaded first, as in `prepare_run`. Raises `AppInputError`."""
    key_a, key_b = models.choice(model_a).key, models.choice(model_b).key
    runs = [prepare_run(models, key_a, video, expressions, settings, limits, work_dir,
                        on_download=on_download, details=False)]
    if key_b != key_a:
        runs.append(prepare_run(models, key_b, video, expressions, settings, limits, work_dir,
                                on_download=on_download, details=False))
    return CompareRun(runs, (key_a, key_b), Path(work_dir))
