"""The app's model menu and the models it has built, one per (model, device)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rvos.app.inputs import AppInputError
from rvos.modeling.precision import with_precision
from rvos.predictor.estimate import SpeedBook
from rvos.predictor.presence import folder_presence_threshold, model_presence_threshold
from rvos.zoo import checkpoint as ckpt
from rvos.zoo import download, hub, registry
from rvos.zoo import loader as zoo

__all__ = ["BUILTIN_NOTE", "ModelCache", "ModelChoice", "model_choices"]


BUILTIN_NOTE = (
    "The built-in model knows only synthetic coloured shapes; for real footage choose an "
    "official model (e.g. ytvos-r50): it downloads on first use."
)


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
            `rvos.zoo.checkpoint.save_pretrained` or an official ``.pth``, listed under its name.
        cache_dir: where downloaded official checkpoints live (default: `rvos.zoo.download`'s).
        offline: never download (default ``$RVOS_OFFLINE``): models that are not here are left
            out, and a default model that is not here is an error.
    Raises:
        `AppInputError` for an unknown model, a missing checkpoint path, or a default model
        whose weights are not here and cannot be downloaded (the message says how to get them).
    """
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
    (`rvos.zoo.download.fetch`).
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
        choice = self.choice(key)
        return (choice.kind == "official" and choice.checkpoint is None
                and zoo.resolve_local(choice.key, self.cache_dir) is None)

    def presence_threshold(self, key: str | None) -> float:
        """The presence threshold entry ``key`` uses when a run names none
        (`rvos.predictor.presence`): a loaded model's own, else its folder's config.json value
        (read without loading it), else the default (0.0)."""
        choice = self.choice(key)
        for (loaded_key, *_), model in list(self._models.items()):
            if loaded_key == choice.key:
                return model_presence_threshold(model)
        folder = choice.checkpoint
        if folder is None and choice.kind in ("builtin", "official"):
            folder = zoo.resolve_local(choice.key, self.cache_dir)
        return folder_presence_threshold(folder if folder is not None and
                                         Path(folder).is_dir() else None)

    def menu(self) -> list[tuple[str, str]]:
        """(label, key) per entry; official models say whether they are on this machine or
        download on first use (with the size when known), as of now."""
        def label(c: ModelChoice) -> str:
            if c.kind != "official" or c.checkpoint is not None:
                return c.label
            return f"{c.label} · {zoo.availability(c.key, self.cache_dir).text}"

        return [(label(c), c.key) for c in self.choices.values()]

    def note(self, key: str | None) -> str:
        """The remark the app shows under the menu for entry ``key``."""
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
        `rvos.zoo.loader.FetchProgress` every ``poll_s`` seconds; `AppInputError` if it fails."""
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
        before that if needed, each of `fetch_steps`' `rvos.zoo.loader.FetchProgress` passed to
        ``on_download``); in another ``precision`` a derived model, also kept
        (`rvos.modeling.precision.with_precision`: it shares the weights, except int8's copy)."""
        choice = self.choice(key)
        if (choice.key, device) not in self._models:
            for step in self.fetch_steps(choice.key):
                if on_download is not None:
                    on_download(step)
        with self._lock:
            model = self._models.get((choice.key, device))
            on_cpu = self._models.get((choice.key, "cpu"))
            if model is None and on_cpu is not None:
                # A copy of the CPU model rather than the file again (on ZeroGPU, where the
                # model is loaded on the CPU at start-up, every GPU call asks for this).
                model = copy.deepcopy(on_cpu).to(device).eval()
                self._models[(choice.key, device)] = model
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
        errors = (ckpt.CheckpointError, registry.ModelFileMissingError,
                  registry.UnsupportedModelError, *_download_errors(), OSError)
        try:
            model, _ = zoo.load_model_from(
                None if choice.kind == "checkpoint" else choice.key, choice.checkpoint,
                device=device, text_encoder=self.text_encoder, cache_dir=self.cache_dir,
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
    return (download.DownloadError, hub.HubError, registry.ModelFileMissingError)


def torch_device_type(device: str) -> str:
    """``"cuda:1"`` -> ``"cuda"``."""
    return device.split(":", 1)[0]
