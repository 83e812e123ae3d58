"""Models on the Hugging Face Hub: ``hf://OWNER/REPO[@REVISION][/SUBFOLDER]``.

A model on the Hub is a folder written by ``python -m rvos convert`` (``model.safetensors``,
``config.json``, ``tokenizer/``, the model card ``README.md``), uploaded as a model repository.
`snapshot` fetches the files rvos reads with ``huggingface_hub.snapshot_download`` into the Hub
client's own cache (``$HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``), where a second
use finds them; it needs no account for a public repository (``hf auth login`` or ``$HF_TOKEN``
for a private one). Offline (``offline=True``, ``$RVOS_OFFLINE`` or ``$HF_HUB_OFFLINE``) only the
cache is read.

The URI grammar is the Hub's own (``hf://[TYPE/]ID[@REVISION][/PATH]``, see huggingface_hub's
"HF URIs" reference), restricted to model repositories; it is parsed here rather than with
``huggingface_hub.parse_hf_uri``, which older releases that transformers 5 accepts lack.
"""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rvos.errors import RvosError
from rvos.zoo import download

__all__ = [
    "HF_SCHEME",
    "HubError",
    "HubRef",
    "TextEncoderError",
    "is_hub_uri",
    "parse_hub_uri",
    "snapshot",
    "text_encoder_folder",
]

HF_SCHEME = "hf://"
# What rvos reads from a model folder (rvos.zoo.checkpoint.save_pretrained writes these); the card
# comes along so that a cached model still says what it is.
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer/*", "README.md")

_NAME = r"[\w.-]+"
_URI = re.compile(rf"hf://(?:models/)?(?P<id>{_NAME}/{_NAME})(?:@(?P<rev>[^/]+))?(?:/(?P<sub>.+))?")


class HubError(RvosError, RuntimeError):
    """An ``hf://`` model that could not be fetched or is not an rvos model; one line that says
    what to do."""


@dataclass(frozen=True)
class HubRef:
    """A parsed ``hf://`` URI: `repo_id` (``OWNER/REPO``), `revision` (branch, tag or commit;
    None for the default branch) and `subfolder` ("" for the repository's root)."""

    repo_id: str
    revision: str | None = None
    subfolder: str = ""

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        sub = f"/{self.subfolder}" if self.subfolder else ""
        return f"{HF_SCHEME}{self.repo_id}{rev}{sub}"


def is_hub_uri(text: str) -> bool:
    """Whether `text` is meant as a Hugging Face Hub model (starts with ``hf://``)."""
    return isinstance(text, str) and text.startswith(HF_SCHEME)


def parse_hub_uri(text: str) -> HubRef:
    """``"hf://OWNER/REPO@v1/sub"`` → ``HubRef("OWNER/REPO", "v1", "sub")``; `HubError` names
    the expected form when `text` does not have it."""
    match = _URI.fullmatch(text.strip())
    if match is None or match.group("id").split("/")[1] in ("", ".", ".."):
        raise HubError(
            f"{text!r} is not a Hub model: write hf://OWNER/REPO, optionally with @REVISION and "
            "/SUBFOLDER (e.g. hf://my-name/referformer-ytvos-r50@main)"
        )
    sub = (match.group("sub") or "").strip("/")
    if ".." in sub.split("/"):
        raise HubError(f"{text!r}: a subfolder may not contain '..'")
    return HubRef(match.group("id"), match.group("rev"), sub)


def snapshot(uri: str | HubRef, *, offline: bool = False) -> Path:
    """The local folder of the model `uri`, fetched into the Hub cache unless it is there.

    Arguments:
        uri: ``hf://OWNER/REPO[@REVISION][/SUBFOLDER]`` or a parsed `HubRef`.
        offline: read the Hub cache only (``$HF_HUB_OFFLINE=1`` has the same effect).

    Returns the folder holding ``config.json`` and ``model.safetensors``. Raises `HubError`.
    """
    # lazy: only hf:// models and the text encoder's fetch need the Hub client
    import huggingface_hub

    # lazy: only hf:// models and the text encoder's fetch need the Hub client
    from huggingface_hub import constants, errors  # a submodule: not loaded by the import above

    ref = uri if isinstance(uri, HubRef) else parse_hub_uri(uri)
    prefix = f"{ref.subfolder}/" if ref.subfolder else ""
    cache = constants.HF_HUB_CACHE
    offline = offline or bool(constants.HF_HUB_OFFLINE)
    try:
        root = huggingface_hub.snapshot_download(
            ref.repo_id,
            revision=ref.revision,
            allow_patterns=[prefix + p for p in MODEL_FILES],
            local_files_only=offline,
            library_name="rvos",
        )
    except errors.GatedRepoError:
        raise HubError(
            f"{ref} is gated: accept its conditions on huggingface.co and log in "
            "(`hf auth login` or $HF_TOKEN)"
        ) from None
    except errors.RepositoryNotFoundError:
        raise HubError(
            f"no model repository {ref.repo_id} on the Hugging Face Hub (or it is private: log in "
            "with `hf auth login` or set $HF_TOKEN)"
        ) from None
    except errors.RevisionNotFoundError:
        raise HubError(f"{ref.repo_id} has no revision {ref.revision!r}") from None
    except errors.LocalEntryNotFoundError:
        why = (
            "offline mode is on (RVOS_OFFLINE / HF_HUB_OFFLINE)"
            if offline
            else "the Hub could not be reached"
        )
        raise HubError(
            f"{ref} is not in the Hugging Face cache ({cache}) and {why}: fetch it once with "
            "network access, or copy the folder `python -m rvos convert` wrote and pass its path"
        ) from None
    except (errors.HfHubHTTPError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise HubError(f"could not fetch {ref} from the Hugging Face Hub: {first}") from None
    folder = Path(root) / ref.subfolder
    missing = [n for n in ("config.json", "model.safetensors") if not (folder / n).is_file()]
    if missing:
        raise HubError(
            f"{ref} is not an rvos model: {' and '.join(missing)} missing (a folder written by "
            "`python -m rvos convert NAME --out DIR` and uploaded as it is)"
        )
    return folder


# ------------------------------------------------------------------ the text encoder's files

# What an official checkpoint needs of its text encoder besides the weights it carries: the
# tokenizer and, to build the exact architecture, config.json (optional: without it the
# architecture is read off the weights). tokenizer_config.json is optional too.
TEXT_ENCODER_FILES = ("vocab.json", "merges.txt", "config.json")
TEXT_ENCODER_OPTIONAL = ("tokenizer_config.json",)
# Seconds the Hub may send nothing before the fetch fails (one try, no retries): a stalled Hub
# fails within it, a slow one that keeps sending does not.
TEXT_ENCODER_STALL_S = 5.0
FAILURE_MEMORY_S = 60.0  # a failed fetch is not retried for this long

_failures: dict[str, tuple[float, TextEncoderError]] = {}
_failures_guard = threading.Lock()


class TextEncoderError(HubError, ValueError):
    """The text encoder (``roberta-base`` by default) is neither in a local folder, nor in the
    Hugging Face cache, nor reachable now.

    ``reason`` says what went wrong and nothing else (an app shows it to a visitor); ``str()``
    adds what a Python user does about it, `for_cli` what a command-line user does. A
    ValueError too, as the `rvos.zoo.checkpoint.CheckpointError` it replaces was."""

    def __init__(self, name: str, reason: str) -> None:
        self.name, self.reason = name, reason
        super().__init__(self._advice(f"text_encoder='{_SAVE_AS}'"))

    def _advice(self, option: str) -> str:
        save = (
            f'python -c "from transformers import AutoTokenizer; '
            f"AutoTokenizer.from_pretrained('{self.name}').save_pretrained('{_SAVE_AS}')\""
        )
        return (
            f"{self.reason}. Fetch its tokenizer once where the Hub is reachable ({save}) and "
            f"pass {option} (a folder holding vocab.json and merges.txt, as that command "
            "saves them; config.json may sit beside them, else the architecture is read off "
            "the weights)"
        )

    def for_cli(self) -> str:
        return self._advice(f"--text-encoder {_SAVE_AS}")


_SAVE_AS = "text_encoder"


def text_encoder_folder(name: str, *, offline: bool | None = None) -> Path:
    """A local folder holding the tokenizer files (and config.json when the Hub has one) of
    the Hub model `name` (``roberta-base``, ``OWNER/REPO``).

    The Hugging Face cache is read first (what transformers or an earlier call put there); a
    missing file is fetched from ``$HF_ENDPOINT`` (default huggingface.co) into that cache,
    with one try (no retries; failing once the Hub sends nothing for `TEXT_ENCODER_STALL_S`),
    unless offline
    (`offline`, else ``$HF_HUB_OFFLINE`` / ``$RVOS_OFFLINE``). A failure is remembered for
    `FAILURE_MEMORY_S`: asking again within it raises the same `TextEncoderError` at once.
    """
    with _failures_guard:
        remembered = _failures.get(name)
    if remembered is not None and time.monotonic() - remembered[0] < FAILURE_MEMORY_S:
        raise remembered[1]
    try:
        return _text_encoder_folder(name, offline)
    except TextEncoderError as err:
        with _failures_guard:
            _failures[name] = (time.monotonic(), err)
        raise


def _text_encoder_folder(name: str, offline: bool | None) -> Path:
    # lazy: only hf:// models and the text encoder's fetch need the Hub client
    from huggingface_hub import constants, try_to_load_from_cache

    repo = name  # legacy ids (roberta-base) resolve on the Hub as they are
    wanted = TEXT_ENCODER_FILES + TEXT_ENCODER_OPTIONAL
    cached = {f: try_to_load_from_cache(repo, f) for f in wanted}
    have = {f: Path(p) for f, p in cached.items() if isinstance(p, str)}
    known_absent = {f for f, p in cached.items() if p is not None and not isinstance(p, str)}
    if all(f in have for f in ("vocab.json", "merges.txt")):
        return next(iter(have.values())).parent
    if offline is None:
        offline = bool(constants.HF_HUB_OFFLINE) or download.offline_mode()
    if offline:
        raise TextEncoderError(
            name, f"the {name!r} tokenizer is not on this machine and offline mode is on"
        )
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    folder = Path(constants.HF_HUB_CACHE) / "rvos-text-encoders" / name.replace("/", "--")
    done = folder / ".complete"  # written last: every file there was fetched or is absent
    if done.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    headers = {"User-Agent": "rvos (python urllib)"}
    if os.environ.get("HF_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['HF_TOKEN']}"
    for f in wanted:
        if f in known_absent:
            continue
        if f in have:
            (folder / f).write_bytes(have[f].read_bytes())
            continue
        if (folder / f).is_file():
            continue
        url = f"{endpoint}/{repo}/resolve/main/{f}"
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=TEXT_ENCODER_STALL_S
            ) as response:
                data = response.read()
        except urllib.error.HTTPError as err:
            if err.code == 404 and f not in ("vocab.json", "merges.txt"):
                continue  # optional, or config.json that a tokenizer-only repo lacks
            raise TextEncoderError(
                name, f"the Hugging Face Hub answered HTTP {err.code} for {name!r}'s {f}"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as err:
            why = getattr(err, "reason", err)
            what = (
                f"sent nothing for {TEXT_ENCODER_STALL_S:g} s"
                if isinstance(why, TimeoutError) or isinstance(err, TimeoutError)
                else f"could not be reached ({why})"
            )
            raise TextEncoderError(
                name,
                f"the {name!r} tokenizer is not on this machine and the Hugging Face Hub {what}",
            ) from None
        tmp = folder / (f + ".part")
        tmp.write_bytes(data)
        tmp.replace(folder / f)
    done.touch()
    return folder
