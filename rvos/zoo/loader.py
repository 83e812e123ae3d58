"""Named models as a user meets them: load one, its weights fetched on first use; say which are on
this machine; list them all (``python -m rvos models``).

rvos keeps three concerns apart: `rvos.zoo.registry` describes the models, `rvos.zoo.download`
fetches
files, `rvos.zoo.checkpoint` reads them. They meet here, so none of them imports another's
internals and no import goes round in a circle (``tests/test_imports.py`` checks it).

`load_model` takes, in this order of precedence:

* a registry name (``"builtin"``, ``"ytvos-r50"``, ...): the built-in weights ship with the
  package; an official checkpoint is read from the cache (`rvos.zoo.download.cache_dir`), and
  downloaded there first when it is missing (mirrors of ``$RVOS_MIRROR`` first, with progress,
  resume and the checks the registry knows), unless offline mode is on (``offline=True`` or
  ``$RVOS_OFFLINE=1``): then a one-line `ModelFileMissingError` says what to fetch by hand;
* ``hf://OWNER/REPO[@REVISION][/SUBFOLDER]``: a folder written by ``python -m rvos convert``
  on the Hugging Face Hub, fetched and cached by the Hub's own client (`rvos.zoo.hub`);
* a path: such a folder on disk, or an official ``.pth`` file.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rvos.zoo import download as dl
from rvos.zoo import registry
from rvos.zoo.registry import (
    BUILTIN_DIR,
    ModelFileMissingError,
    ModelInfo,
    UnsupportedModelError,
    get_model_info,
    list_models,
)

__all__ = [
    "Availability",
    "FetchProgress",
    "availability",
    "ensure_local",
    "iter_fetch",
    "load_model",
    "missing_file_message",
    "resolve_local",
]


def resolve_local(name: str, cache_dir: str | Path | None = None) -> Path | None:
    """Where the weights of `name` are on this machine, or ``None`` if they are not here.

    The built-in model resolves to its package folder (when it holds a ``config.json``); an
    official model to ``<cache_dir>/<filename>`` (default cache: `rvos.zoo.download.cache_dir`).
    """
    info = get_model_info(name)
    if info.kind == "builtin":
        return BUILTIN_DIR if (BUILTIN_DIR / "config.json").is_file() else None
    path = dl.cache_dir(cache_dir) / str(info.filename)
    return path if path.is_file() else None


def missing_file_message(info: ModelInfo, cache_dir: str | Path | None = None) -> str:
    """One line saying which file to get, from where, and where to put it."""
    dest = dl.cache_dir(cache_dir) / str(info.filename)
    return (
        f"the weights of {info.name!r} are not on this machine: run `python -m rvos download "
        f"{info.name}`, or download {info.url} by hand and save it as {dest} "
        f"(or pass its path with --checkpoint)"
    )


def ensure_local(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    offline: bool | None = None,
    progress: bool = True,
    on_progress: dl.ProgressCallback | None = None,
) -> Path:
    """The weights of registry model `name` on this machine, downloaded first if missing.

    Arguments:
        offline: forbid downloading (default: ``$RVOS_OFFLINE``).
        progress: show the download's progress on stderr.
        on_progress: called with (bytes done, total or None) while downloading, or while
            waiting for another thread or process that downloads the same file.

    Raises `ModelFileMissingError` (missing, offline: the one-line instructions) or
    `rvos.zoo.download.DownloadError` (no source served it; the message says what to do).
    """
    info = get_model_info(name)
    local = resolve_local(name, cache_dir)
    if local is not None:
        return local
    if info.kind == "builtin":
        raise ModelFileMissingError(
            f"the built-in model's weights are missing from {BUILTIN_DIR}; they ship with the "
            "rvos package: reinstall it, or train them with `python -m rvos train`"
        )
    if dl.offline_mode(offline):
        raise ModelFileMissingError(
            missing_file_message(info, cache_dir)
            + f" (offline mode: unset {dl.OFFLINE_ENV} to download it on first use)"
        )
    return dl.download(
        name, cache_dir=cache_dir, offline=False, progress=progress, on_progress=on_progress
    )


@dataclass(frozen=True)
class Availability:
    """Whether a model's weights are here, for menus and listings.

    Attributes:
        local: the weights on this machine, or None.
        partial_bytes: bytes of an interrupted download waiting to be resumed (0 if none).
        size_bytes: the file's size when known (the registry's, else the local file's).
    """

    local: Path | None
    partial_bytes: int = 0
    size_bytes: int | None = None

    @property
    def text(self) -> str:
        """``"on this machine"``, ``"downloads on first use (1.2 GiB)"``, ...: the menu's words."""
        size = f"{_size(self.size_bytes)}" if self.size_bytes else ""
        if self.local is not None:
            return "on this machine" + (f" ({size})" if size else "")
        details = [size] if size else []
        if self.partial_bytes:
            details.append(f"{_size(self.partial_bytes)} already here, resumes")
        return "downloads on first use" + (f" ({', '.join(details)})" if details else "")


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _folder_size(path: Path) -> int:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files)


def availability(name: str, cache_dir: str | Path | None = None) -> Availability:
    """`Availability` of registry model `name` (never touches the network)."""
    info = get_model_info(name)
    local = resolve_local(name, cache_dir)
    size = (
        info.size_bytes
        if info.size_bytes is not None
        else (_folder_size(local) if local is not None else None)
    )
    partial = 0
    if local is None and info.filename:
        part = dl.cache_dir(cache_dir) / f"{info.filename}.part"
        partial = part.stat().st_size if part.is_file() else 0
    return Availability(local, partial, size)


def load_model(
    name: str = "builtin",
    *,
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    text_encoder: str | Path | None = None,
    cache_dir: str | Path | None = None,
    offline: bool | None = None,
    progress: bool = True,
    on_progress: dl.ProgressCallback | None = None,
):
    """Build a model with its weights, in eval mode, on `device`.

    Arguments:
        name: a registry name (`list_models`), ``hf://OWNER/REPO[@REVISION][/SUBFOLDER]``, or
            the path of an rvos model folder or an official ``.pth`` file (module docstring).
        checkpoint: registry names only: explicit weights instead of the cached/packaged ones (a
            folder written by `rvos.zoo.checkpoint.save_pretrained` for the built-in model, an
            official ``.pth`` file for the others); nothing is downloaded then.
        device: torch device string.
        text_encoder: official ``.pth`` weights only: a Hugging Face name or a local folder
            holding the RoBERTa configuration and tokenizer (default ``roberta-base``, from the
            Hugging Face cache or hub). Folders written by ``rvos convert`` carry their own.
        cache_dir: where official checkpoints are downloaded (default: `rvos.zoo.download`'s).
        offline: never download (default: ``$RVOS_OFFLINE``; for ``hf://`` also
            ``$HF_HUB_OFFLINE``).
        progress, on_progress: download progress on stderr / to a callback (`ensure_local`).

    Raises:
        UnknownModelError, UnsupportedModelError, ModelFileMissingError (with what to download),
        rvos.zoo.download.DownloadError, rvos.zoo.hub.HubError, rvos.zoo.checkpoint.CheckpointError.
    """
    # lazy: `rvos --help`, `models` and `download` start without torch
    from rvos.zoo import checkpoint as ckpt

    # lazy: `rvos --help`, `models` and `download` start without torch
    from rvos.zoo import hub

    if name not in registry.MODELS:
        if hub.is_hub_uri(name):
            folder = hub.snapshot(name, offline=dl.offline_mode(offline))
            return ckpt.load_pretrained(folder, device=device).eval()
        path = Path(name).expanduser()
        if path.is_dir():
            return ckpt.load_pretrained(path, device=device).eval()
        if path.is_file() and path.suffix in TRAINING_SUFFIXES:
            # lazy: `rvos --help`, `models` and `download` start without torch
            from rvos.zoo.training_checkpoint import load_training_checkpoint

            return load_training_checkpoint(path, device=device).eval()
        if path.is_file():
            kwargs: dict[str, Any] = {"device": device}
            if text_encoder is not None:
                kwargs["text_encoder"] = str(text_encoder)
            return ckpt.load_official(path, **kwargs).eval()
        get_model_info(name)  # raises UnknownModelError, naming close names
    info = get_model_info(name)
    if not info.supported:
        raise UnsupportedModelError(
            f"{info.name!r} uses the {info.backbone} backbone, which rvos cannot build "
            f"(it builds {', '.join(sorted(registry.SUPPORTED_BACKBONES))}); choose one of: "
            + ", ".join(m.name for m in list_models(supported_only=True))
        )
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.exists():
            raise ModelFileMissingError(f"checkpoint {path} does not exist or is not a file")
    else:
        path = ensure_local(
            name, cache_dir=cache_dir, offline=offline, progress=progress, on_progress=on_progress
        )
    if info.kind == "builtin":
        return ckpt.load_pretrained(path, device=device).eval()
    if not path.is_file():
        raise ModelFileMissingError(f"checkpoint {path} does not exist or is not a file")
    kwargs = {"backbone": info.backbone, "device": device}
    if text_encoder is not None:
        kwargs["text_encoder"] = str(text_encoder)
    return ckpt.load_official(path, **kwargs).eval()


# Files `rvos train` writes (rvos.zoo.training_checkpoint); released weights are ``.pth``.
TRAINING_SUFFIXES = (".pt", ".ckpt")


def load_model_from(model: str | None = None, checkpoint: str | Path | None = None,
                    **kwargs: Any) -> tuple[Any, str]:
    """The one way every door (the CLI's commands, the app, benchmark-split inference) turns
    what a user chose into a model: ``model`` (``--model``: a registry name, ``hf://...``, a
    model folder or a weights file) and ``checkpoint`` (``--checkpoint``: weights for that
    registry model; alone, a model folder, a training checkpoint or a released ``.pth``, built
    from what the file holds). Neither: the built-in model.

    Returns:
        the model (eval mode) and the name results record for it: the registry name, else the
        folder's name or the file's stem.

    Raises:
        ModelFileMissingError: ``checkpoint`` does not exist; and what `load_model` raises.
    """
    if checkpoint is not None and not Path(checkpoint).exists():
        raise ModelFileMissingError(f"checkpoint not found: {Path(checkpoint).name!r}")
    if model is None and checkpoint is not None:
        path = Path(checkpoint)
        return load_model(str(path), **kwargs), path.name if path.is_dir() else path.stem
    name = model or "builtin"
    return load_model(name, checkpoint=checkpoint, **kwargs), name


@dataclass(frozen=True)
class FetchProgress:
    """How far the download of model `name` is: `done` of `total` bytes (None: unknown)."""

    name: str
    done: int = 0
    total: int | None = None

    @property
    def fraction(self) -> float | None:
        """Done / total in [0, 1], or None when the total is not known."""
        return min(self.done / self.total, 1.0) if self.total else None

    @property
    def text(self) -> str:
        """``"downloading ytvos-r50: 45.2 MiB / 108.3 MiB (42%)"``."""
        return f"downloading {self.name}: {dl.progress_text(self.done, self.total)}"


def iter_fetch(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    offline: bool | None = None,
    poll_s: float = 0.5,
) -> Iterator[FetchProgress]:
    """`ensure_local` in a worker thread, yielding its `FetchProgress` every `poll_s` seconds
    while it lasts (nothing when the weights are here); re-raises its error at the end.

    For callers that must return to an event loop between updates (a Gradio generator). Closing
    the iterator early leaves the download running: another caller may be waiting for the same
    file, and a finished file is never wasted.
    """
    if resolve_local(name, cache_dir) is not None:
        return
    state = {"progress": FetchProgress(name)}
    failure: list[BaseException] = []

    def report(done: int, total: int | None) -> None:
        state["progress"] = FetchProgress(name, done, total)

    def work() -> None:
        try:
            ensure_local(name, cache_dir=cache_dir, offline=offline, on_progress=report)
        except BaseException as err:  # handed to the caller's thread below
            failure.append(err)

    worker = threading.Thread(target=work, name=f"rvos-fetch-{name}", daemon=True)
    worker.start()
    yield state["progress"]
    last = state["progress"]
    while worker.is_alive():
        worker.join(poll_s)
        if state["progress"] != last:
            last = state["progress"]
            yield last
    if failure:
        raise failure[0]
