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

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HF_SCHEME", "HubError", "HubRef", "is_hub_uri", "parse_hub_uri", "snapshot"]

HF_SCHEME = "hf://"
# What rvos reads from a model folder (rvos.checkpoint.save_pretrained writes these); the card
# comes along so that a cached model still says what it is.
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer/*", "README.md")

_NAME = r"[\w.-]+"
_URI = re.compile(rf"hf://(?:models/)?(?P<id>{_NAME}/{_NAME})(?:@(?P<rev>[^/]+))?(?:/(?P<sub>.+))?")


class HubError(RuntimeError):
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
    import huggingface_hub
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
