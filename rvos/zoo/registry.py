"""List the models rvos knows: the built-in model and the released ReferFormer checkpoints.

One table feeds the app's model dropdown, the ``models`` command and the README's model zoo.
Every published number and link below is taken from the model-zoo tables of the official
ReferFormer README (github.com/wjn922/ReferFormer, latest revision, the one that lists the
RefCOCO results of 2022/12/19). File sizes and checksums are not published there, so they are
``None`` until someone measures a downloaded file; nothing here is guessed.

The official README's tables hold 18 distinct trained models (``Model`` columns): 8 trained on
Ref-YouTube-VOS, 6 trained jointly on Ref-YouTube-VOS and RefCOCO/+/g, 4 trained on
A2D-Sentences. The Ref-DAVIS17 and JHMDB-Sentences rows reuse the Ref-YouTube-VOS and
A2D-Sentences files, so those scores are attached to those entries. The RefCOCO/+/g
pre-training weights (the ``Pretrain`` column) are intermediate training states and are not
listed as models.

This module only describes: it imports nothing else from rvos. Fetching a file is
`rvos.zoo.download`'s job, reading one `rvos.zoo.checkpoint`'s, and `rvos.zoo.loader.load_model`
puts the three
together (``from rvos.zoo.registry import load_model`` still works: an alias, resolved on first
use).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rvos.errors import RvosError

__all__ = [
    "BACKBONE_NAMES",
    "BUILTIN_DIR",
    "MODELS",
    "ModelFileMissingError",
    "ModelInfo",
    "Score",
    "UnknownModelError",
    "UnsupportedModelError",
    "get_model_info",
    "list_models",
    "markdown_table",
]

# The built-in model's weights are package data (safetensors + config.json + tokenizer files).
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "weights" / "builtin"

# The nine backbones of the official model zoo (rvos.zoo.checkpoint.detect_backbone's answers) and
# their display names. Kept here, not in the torch-heavy rvos.zoo.checkpoint, so that listing and
# downloading models (and `rvos --help`) start without importing torch.
BACKBONE_NAMES = {
    "resnet50": "ResNet-50", "resnet101": "ResNet-101",
    "swin_t_p4w7": "Swin-T", "swin_s_p4w7": "Swin-S", "swin_b_p4w7": "Swin-B",
    "swin_l_p4w7": "Swin-L", "video_swin_t_p4w7": "Video-Swin-T",
    "video_swin_s_p4w7": "Video-Swin-S", "video_swin_b_p4w7": "Video-Swin-B",
}

# Backbones rvos can build: the built-in model's and all nine of the official model zoo
# (ResNet-50/101, Swin-T/S/B/L, Video-Swin-T/S/B; rvos.modeling.swin for the transformers).
SUPPORTED_BACKBONES = frozenset({"small3d", *BACKBONE_NAMES})

OFFICIAL_REPOSITORY = "https://github.com/wjn922/ReferFormer"
OFFICIAL_README = OFFICIAL_REPOSITORY + "#model-zoo"
# The authors publish their code and checkpoints under the Apache License 2.0 (the licence badge
# of the official README); the Hub's identifier for it. rvos itself is Apache-2.0 as well.
OFFICIAL_LICENSE = "apache-2.0"
PAPER = "https://arxiv.org/abs/2201.00487"
CITATION = """\
@inproceedings{wu2022referformer,
  title     = {Language as Queries for Referring Video Object Segmentation},
  author    = {Wu, Jiannan and Jiang, Yi and Sun, Peize and Yuan, Zehuan and Luo, Ping},
  booktitle = {CVPR},
  year      = {2022}
}"""


class UnknownModelError(RvosError, KeyError):
    """A model name that is not in the registry; the message lists the close names."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


class ModelFileMissingError(RvosError, FileNotFoundError):
    """The weights of a known model are not on this machine; the message says how to get them."""


class UnsupportedModelError(RvosError, NotImplementedError):
    """A listed model whose backbone rvos cannot build yet."""


@dataclass(frozen=True)
class Score:
    """One published result: ``value`` of ``metric`` on ``benchmark`` (percent)."""

    benchmark: str
    metric: str
    value: float

    def __str__(self) -> str:
        return f"{self.benchmark} {self.metric} {self.value:.1f}"


@dataclass(frozen=True)
class ModelInfo:
    """Everything rvos knows about one named model.

    Attributes:
        name: registry key, e.g. ``"ytvos-r50"``.
        backbone: visual backbone (``resnet50``, ``swin_l_p4w7``, ``video_swin_b_p4w7``,
            ``small3d`` for the built-in model, ...), as the official ``--backbone`` option
            spells it.
        training_data: what the authors trained it on.
        scores: published results, the headline one first (J&F on Ref-YouTube-VOS val for the
            Ref-YouTube-VOS models, mAP on A2D-Sentences for the A2D models). Empty when nothing
            has been published or measured yet.
        kind: ``"builtin"`` (ships with rvos) or ``"official"`` (released by the authors).
        supported: whether ``load_model`` can build it today.
        urls: where to download the file, the authors' link first.
        filename: the name rvos stores the download under in the cache directory.
        size_bytes: file size, when known.
        sha256: hex digest of the file, when known.
        notes: anything a user should know before choosing it.
    """

    name: str
    backbone: str
    training_data: str
    scores: tuple[Score, ...] = ()
    kind: Literal["builtin", "official"] = "official"
    supported: bool = False
    urls: tuple[str, ...] = ()
    filename: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    notes: str = ""

    @property
    def metric(self) -> str | None:
        """Name of the headline metric with its benchmark, e.g. ``"Ref-YouTube-VOS J&F"``."""
        return f"{self.scores[0].benchmark} {self.scores[0].metric}" if self.scores else None

    @property
    def score(self) -> float | None:
        """Value of the headline metric (percent), ``None`` when not published/measured yet."""
        return self.scores[0].value if self.scores else None

    @property
    def label(self) -> str:
        """A one-line description for menus, e.g. ``"ytvos-r50 - resnet50, Ref-YouTube-VOS J&F
        55.6"``; models rvos cannot load yet say so."""
        parts = [self.backbone] + ([str(self.scores[0])] if self.scores else [])
        if not self.supported:
            parts.append("not loadable yet")
        return f"{self.name} - {', '.join(parts)}"

    @property
    def url(self) -> str | None:
        """The first download link, or ``None`` for the built-in model."""
        return self.urls[0] if self.urls else None


def _drive(file_id: str) -> str:
    # The link exactly as the authors publish it; rvos.zoo.download turns it into a direct link.
    return f"https://drive.google.com/file/d/{file_id}/view?usp=sharing"


_YTVOS = "Ref-YouTube-VOS"
_DAVIS = "Ref-DAVIS17"
_A2D = "A2D-Sentences"
_JHMDB = "JHMDB-Sentences"
_PRETRAINED = " (+RefCOCO/+/g pre-training)"
_SCRATCH = " (from scratch)"
_JOINT = "Ref-YouTube-VOS + RefCOCO/+/g (joint)"

_A2D_NOTE = (
    "The authors evaluate A2D-Sentences models without --binary, so the class head may be "
    "wider than the Ref-YouTube-VOS models' (rvos reads its width from the file; the score "
    "of a query is its best class)."
)
_SCRATCH_NOTE = "Trained without RefCOCO/+/g pre-training (backbone initialised from Kinetics)."


def _official(
    name: str,
    backbone: str,
    data: str,
    drive_id: str,
    scores: tuple[Score, ...],
    notes: str = "",
) -> ModelInfo:
    return ModelInfo(
        name=name,
        backbone=backbone,
        training_data=data,
        scores=scores,
        kind="official",
        supported=backbone in SUPPORTED_BACKBONES,
        urls=(_drive(drive_id),),
        filename=f"referformer_{name.replace('-', '_')}.pth",
        notes=notes,
    )


def _jf(benchmark: str, jf: float, j: float | None = None, f: float | None = None) -> list[Score]:
    out = [Score(benchmark, "J&F", jf)]
    if j is not None and f is not None:
        out += [Score(benchmark, "J", j), Score(benchmark, "F", f)]
    return out


def _a2d(benchmark: str, m_ap: float, overall_iou: float, mean_iou: float) -> list[Score]:
    return [
        Score(benchmark, "mAP", m_ap),
        Score(benchmark, "overall IoU", overall_iou),
        Score(benchmark, "mean IoU", mean_iou),
    ]


def _cfbi(value: float) -> Score:
    # The README's "CFBI J&F" column: the same model's masks refined by CFBI post-processing.
    return Score(_YTVOS, "J&F (with CFBI post-processing)", value)


def _builtin_test_score() -> float:
    # Recorded beside the weights when they are shipped: `python -m rvos eval` on
    # `python -m rvos synth --split test --count 100` (README), so the two cannot disagree.
    config = json.loads((BUILTIN_DIR / "config.json").read_text())
    return float(config["test"]["J&F"])


_BUILTIN = ModelInfo(
    name="builtin",
    backbone="small3d",
    training_data="synthetic referring clips (rvos synth)",
    scores=(Score("synthetic test split", "J&F", _builtin_test_score()),),
    kind="builtin",
    supported=True,
    notes="Small model shipped with rvos; runs on a CPU in seconds.",
)

_OFFICIAL = [
    # --- Ref-YouTube-VOS (pre-trained on RefCOCO/+/g unless marked from scratch) ---
    _official("ytvos-r50", "resnet50", _YTVOS + _PRETRAINED, "1TBykzTRiOEbpM2YEYnDICyqjwkvlD2cR",
              (*_jf(_YTVOS, 55.6), _cfbi(59.4), *_jf(_DAVIS, 58.5, 55.8, 61.3))),
    _official("ytvos-r101", "resnet101", _YTVOS + _PRETRAINED, "1QJU8HC8xk_3gMcj-Yi4vkUHaeHeP8n82",
              (*_jf(_YTVOS, 57.3), _cfbi(60.3))),
    _official("ytvos-swin-t", "swin_t_p4w7", _YTVOS + _PRETRAINED,
              "1AOHK6Qp8T0rUzgHT9twvWn4oGLS5MnuS", (*_jf(_YTVOS, 58.7), _cfbi(61.2))),
    _official("ytvos-swin-l", "swin_l_p4w7", _YTVOS + _PRETRAINED,
              "103N96BbQnT9P57aGx7TCsZVyGr3ejFdl",
              (*_jf(_YTVOS, 62.4), _cfbi(63.3), *_jf(_DAVIS, 60.5, 57.6, 63.4))),
    _official("ytvos-video-swin-t-scratch", "video_swin_t_p4w7", _YTVOS + _SCRATCH,
              "14X_YysCXv13LzLoWy9ViIn623KQ-ol51", tuple(_jf(_YTVOS, 56.0)), _SCRATCH_NOTE),
    _official("ytvos-video-swin-t", "video_swin_t_p4w7", _YTVOS + _PRETRAINED,
              "1vkG8nyUue9XOnScUMKo__khhxvuJP9R6", tuple(_jf(_YTVOS, 59.4))),
    _official("ytvos-video-swin-s", "video_swin_s_p4w7", _YTVOS + _PRETRAINED,
              "1R0C5hYck6OwKko9tXOpIQ02SuE4mb1xj", tuple(_jf(_YTVOS, 60.1))),
    _official("ytvos-video-swin-b", "video_swin_b_p4w7", _YTVOS + _PRETRAINED,
              "1_dS8hyZJFdijvsDVmoVcHjWhRE6sAXvS",
              (*_jf(_YTVOS, 62.9), *_jf(_DAVIS, 61.1, 58.1, 64.1))),
    # --- Ref-YouTube-VOS trained jointly with RefCOCO/+/g ---
    _official("ytvos-joint-r50", "resnet50", _JOINT, "1GAzI9zLEQKxp5KQHu1FOuqlw5PwAhMey",
              tuple(_jf(_YTVOS, 58.7, 57.4, 60.1))),
    _official("ytvos-joint-r101", "resnet101", _JOINT, "1R4PThhYGqaanm3h46gygQ6strHVJBpn5",
              tuple(_jf(_YTVOS, 59.3, 58.1, 60.4))),
    _official("ytvos-joint-swin-l", "swin_l_p4w7", _JOINT, "1_nGi5JjlRcOUI8kXXduOE5iv0apnSXgR",
              tuple(_jf(_YTVOS, 64.2, 62.3, 66.2))),
    _official("ytvos-joint-video-swin-t", "video_swin_t_p4w7", _JOINT,
              "1gPVVdAuX_0-H2McPPJYX6HldGQtekD8b", tuple(_jf(_YTVOS, 62.6, 59.9, 63.3)),
              "Scores as published; note that J 59.9 and F 63.3 average 61.6, not 62.6."),
    _official("ytvos-joint-video-swin-s", "video_swin_s_p4w7", _JOINT,
              "1zm9URDfL19xi5LN9vCM2c58-W-A5RCz_", tuple(_jf(_YTVOS, 63.3, 61.4, 65.2))),
    _official("ytvos-joint-video-swin-b", "video_swin_b_p4w7", _JOINT,
              "183AJLTtzwL15r-hhG9hUFrK5tfq37BH1", tuple(_jf(_YTVOS, 64.9, 62.8, 67.0))),
    # --- A2D-Sentences (JHMDB-Sentences scores are the same files without fine-tuning) ---
    _official("a2d-video-swin-t-scratch", "video_swin_t_p4w7", _A2D + _SCRATCH,
              "1lK3Hulc8K6croRTrzJmz8QMhndQYDzsf",
              (*_a2d(_A2D, 48.6, 72.3, 64.1), *_a2d(_JHMDB, 39.1, 70.0, 69.3)),
              _SCRATCH_NOTE + " Trained with 6-frame clips. " + _A2D_NOTE),
    _official("a2d-video-swin-t", "video_swin_t_p4w7", _A2D + _PRETRAINED,
              "1b56oyvJZTY70ztCgDhD5vBG7fZohqzYE",
              (*_a2d(_A2D, 52.8, 77.6, 69.6), *_a2d(_JHMDB, 42.2, 71.9, 71.0)), _A2D_NOTE),
    _official("a2d-video-swin-s", "video_swin_s_p4w7", _A2D + _PRETRAINED,
              "1edp5ZjCr4OG-8E9Co2_UgknoKMWUCB5y",
              (*_a2d(_A2D, 53.9, 77.7, 69.8), *_a2d(_JHMDB, 42.4, 72.8, 71.5)), _A2D_NOTE),
    _official("a2d-video-swin-b", "video_swin_b_p4w7", _A2D + _PRETRAINED,
              "11UdnixY1ZQLpFqEq3_mdM4ELXGhrG7YD",
              (*_a2d(_A2D, 55.0, 78.6, 70.3), *_a2d(_JHMDB, 43.7, 73.0, 71.8)), _A2D_NOTE),
]  # fmt: skip

MODELS: dict[str, ModelInfo] = {info.name: info for info in [_BUILTIN, *_OFFICIAL]}


def list_models(*, supported_only: bool = False) -> list[ModelInfo]:
    """All registered models, the built-in one first (the order of the README's table)."""
    return [m for m in MODELS.values() if m.supported or not supported_only]


def get_model_info(name: str) -> ModelInfo:
    """Look a model up by name; an unknown name raises `UnknownModelError` naming close ones."""
    try:
        return MODELS[name]
    except KeyError:
        pass
    close = difflib.get_close_matches(str(name), list(MODELS), n=4, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}; {hint}run `python -m rvos models` to list the "
        f"{len(MODELS)} known models"
    )


# ----------------------------------------------------------------------------- presentation


_TABLE_COLUMNS = (
    ("Ref-YouTube-VOS", "J&F"),
    ("Ref-DAVIS17", "J&F"),
    ("A2D-Sentences", "mAP"),
    ("JHMDB-Sentences", "mAP"),
)


def _cell(info: ModelInfo, benchmark: str, metric: str) -> str:
    values = {(s.benchmark, s.metric): s.value for s in info.scores}
    if (benchmark, metric) not in values:
        return "-"
    text = f"{values[benchmark, metric]:.1f}"
    cfbi = values.get((benchmark, "J&F (with CFBI post-processing)"))
    return text + (f" ({cfbi:.1f} with CFBI)" if cfbi is not None else "")


def markdown_table(models: list[ModelInfo] | None = None) -> str:
    """The README's model-zoo table (GitHub markdown), one row per model, published scores."""
    heads = [f"{b} {m}" for b, m in _TABLE_COLUMNS]
    rows = [
        "| name | backbone | trained on | " + " | ".join(heads) + " | rvos loads it | download |",
        "|" + " --- |" * (len(heads) + 5),
    ]
    for m in models if models is not None else list_models():
        cells = [_cell(m, b, metric) for b, metric in _TABLE_COLUMNS]
        link = f"[Google Drive]({m.url})" if m.url else "ships with rvos"
        rows.append(
            f"| `{m.name}` | {m.backbone} | {m.training_data} | "
            + " | ".join(cells)
            + f" | {'yes' if m.supported else 'not yet'} | {link} |"
        )
    return "\n".join(rows)


