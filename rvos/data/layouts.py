"""The official Ref-YouTube-VOS, Ref-DAVIS17 and MeViS folder layouts: reading a split, and the
prediction folders ``rvos dataset predict`` writes.

Input (Ref-YouTube-VOS and Ref-DAVIS17, as ReferFormer's data preparation leaves them)::

    ROOT/<split>/JPEGImages/<video>/<frame>.jpg
    ROOT/meta_expressions/<split>/meta_expressions.json
        {"videos": {<video>: {"expressions": {<exp_id>: {"exp": <text>, ...}},
                              "frames": [<frame>, ...]}}}

Ref-YouTube-VOS's ``valid`` meta file also lists the 305 videos of its ``test`` split; like
ReferFormer, `read_split` drops every video that ``meta_expressions/test/meta_expressions.json``
lists, which leaves the 202 validation videos. In Ref-DAVIS17 every object has four expressions,
one per annotator, stored object after object: expression ``4 * o + a`` is annotator a's
description of object o + 1.

MeViS keeps its meta file beside the frames, and an expression may refer to several objects::

    ROOT/<split>/JPEGImages/<video>/<frame>.jpg
    ROOT/<split>/meta_expressions.json
        {"videos": {<video>: {"expressions": {<exp_id>: {"exp": <text>, "obj_id": [...],
                                                          "anno_id": [...]}},
                              "frames": [<frame>, ...]}}}
    ROOT/<split>/mask_dict.json     (train, valid_u) {<anno_id>: [<COCO RLE or null>, ...]}

(`rvos.data.mevis` reads the masks.)

Output::

    ytvos: DIR/<split>/<video>/<exp_id>/<frame>.png      binary mask (0 / 255) at frame size
           DIR/submission.zip                            Annotations/<video>/<exp_id>/<frame>.png
    davis: DIR/<split>/anno_<a>/<video>/<frame>.png      indexed PNG, object o + 1 = id o + 1
    mevis: DIR/<split>/<video>/<exp_id>/<frame>.png      binary mask (0 / 255) at frame size
           DIR/submission.zip                            <video>/<exp_id>/<frame>.png

A video is written under ``DIR/.partial/<split>/`` and renamed into place when complete, so a
video folder that exists is a whole video (`PredictionFolder`).
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from rvos.errors import RvosError

__all__ = [
    "DAVIS_ANNOTATORS",
    "FORMATS",
    "PER_EXPRESSION_FORMATS",
    "DatasetError",
    "DatasetVideo",
    "Expression",
    "PredictionFolder",
    "Split",
    "meta_path",
    "read_frames",
    "read_split",
    "write_submission",
]

FORMATS = ("ytvos", "davis", "mevis")
# Formats whose predictions are one binary mask per expression and frame, zipped for a server.
PER_EXPRESSION_FORMATS = ("ytvos", "mevis")
DAVIS_ANNOTATORS = 4


class DatasetError(RvosError, ValueError):
    """A dataset folder, meta file or output that cannot be used; the message names the file
    and, where there is one, the video."""


@dataclass(frozen=True)
class Expression:
    """One referring expression of a video: its id in the meta file, its words as written
    (not normalised: the original feeds them to the tokenizer as they are) and, where the meta
    file has one, the ground-truth object id. MeViS expressions carry lists instead: the ids
    of every object they refer to (``obj_ids``) and of those objects' masks (``anno_ids``,
    keys of ``mask_dict.json``)."""

    exp_id: str
    text: str
    obj_id: str | None = None
    obj_ids: tuple[str, ...] = ()
    anno_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetVideo:
    """A video of a split: its frame names (meta order) and expressions (meta order)."""

    name: str
    frames: tuple[str, ...]
    expressions: tuple[Expression, ...]
    image_dir: Path

    def frame_path(self, index: int) -> Path:
        return self.image_dir / f"{self.frames[index]}.jpg"

    @property
    def num_frames(self) -> int:
        return len(self.frames)


@dataclass
class Split:
    """A split read from ROOT: its videos in name order, and the videos left out because the
    test split lists them (Ref-YouTube-VOS valid)."""

    root: Path
    name: str
    format: str
    videos: list[DatasetVideo]
    excluded: list[str] = field(default_factory=list)
    meta_file: Path | None = None


def meta_path(root: str | os.PathLike, split: str, fmt: str = "ytvos") -> Path:
    """``ROOT/meta_expressions/<split>/meta_expressions.json`` (MeViS:
    ``ROOT/<split>/meta_expressions.json``)."""
    if fmt == "mevis":
        return Path(root) / split / "meta_expressions.json"
    return Path(root) / "meta_expressions" / split / "meta_expressions.json"


def _check_name(kind: str, value: object, where: str) -> str:
    # Names become path components of files rvos writes: nothing that leaves the folder.
    if (
        not isinstance(value, str)
        or not value
        or value in (".", "..")
        or any(c in value for c in "/\\\0")
    ):
        raise DatasetError(f"{where}: {kind} {value!r} is not a usable file name")
    return value


def read_json(path: Path) -> object:
    """A dataset's JSON file; a missing, unreadable or malformed one is a `DatasetError` that
    says where."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None


def _load_meta(path: Path, fmt: str = "ytvos") -> dict:
    if not path.is_file():
        if fmt == "mevis":
            raise DatasetError(
                f"{path} not found: ROOT must hold <split>/meta_expressions.json and "
                "<split>/JPEGImages/ (the MeViS layout)"
            )
        raise DatasetError(
            f"{path} not found: ROOT must hold meta_expressions/<split>/"
            "meta_expressions.json and <split>/JPEGImages/ (the official layout)"
        )
    meta = read_json(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
        raise DatasetError(f'{path}: expected {{"videos": {{<video>: {{...}}}}}} at the top')
    return meta["videos"]


def _parse_video(name: str, entry: object, image_root: Path, fmt: str, where: str) -> DatasetVideo:
    where = f"{where}: video {name!r}"
    _check_name("video name", name, where)
    if not isinstance(entry, dict):
        raise DatasetError(f"{where}: expected an object with 'frames' and 'expressions'")
    frames = entry.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DatasetError(f"{where}: 'frames' must be a non-empty list of frame names")
    for f in frames:
        _check_name("frame name", f, where)
    exprs = entry.get("expressions")
    if not isinstance(exprs, dict) or not exprs:
        raise DatasetError(
            f"{where}: 'expressions' must be a non-empty object {{<exp_id>: {{\"exp\": <text>}}}}"
        )
    parsed = []
    for exp_id, e in exprs.items():
        _check_name("expression id", exp_id, where)
        if not isinstance(e, dict) or not isinstance(e.get("exp"), str):
            raise DatasetError(f"{where}: expression {exp_id!r} needs an 'exp' string")
        if fmt == "mevis":
            parsed.append(_mevis_expression(exp_id, e, where))
            continue
        obj = e.get("obj_id")
        parsed.append(Expression(exp_id, e["exp"], None if obj is None else str(obj)))
    if fmt == "davis" and len(parsed) % DAVIS_ANNOTATORS:
        raise DatasetError(
            f"{where}: {len(parsed)} expressions; Ref-DAVIS17 has "
            f"{DAVIS_ANNOTATORS} per object (one per annotator)"
        )
    return DatasetVideo(name, tuple(frames), tuple(parsed), image_root / name)


def _id_list(e: dict, key: str, exp_id: str, where: str) -> tuple[str, ...]:
    values = e.get(key)
    if not isinstance(values, list) or not values:
        raise DatasetError(f"{where}: expression {exp_id!r} needs a non-empty {key!r} list")
    if not all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in values):
        raise DatasetError(f"{where}: expression {exp_id!r}: {key!r} must list ids")
    return tuple(str(v) for v in values)


def _mevis_expression(exp_id: str, e: dict, where: str) -> Expression:
    obj_ids = _id_list(e, "obj_id", exp_id, where)
    anno_ids = _id_list(e, "anno_id", exp_id, where)
    if len(obj_ids) != len(anno_ids):
        raise DatasetError(
            f"{where}: expression {exp_id!r} lists {len(obj_ids)} obj_id and "
            f"{len(anno_ids)} anno_id; MeViS gives one anno_id per object"
        )
    return Expression(exp_id, e["exp"], None, obj_ids, anno_ids)


def read_split(
    root: str | os.PathLike, split: str, fmt: str, *, check_frames: bool = True
) -> Split:
    """Read and check a split of the official layout.

    Arguments:
        fmt: ``ytvos``, ``davis`` or ``mevis``.
        check_frames: verify that every listed frame's JPEG exists (one stat per frame), so a
            missing frame is reported before any model runs.
    Raises:
        DatasetError naming the file, the video and what is wrong.
    """
    if fmt not in FORMATS:
        raise DatasetError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    root = Path(root)
    path = meta_path(root, split, fmt)
    entries = _load_meta(path, fmt)
    image_root = root / split / "JPEGImages"
    videos = [
        _parse_video(name, entries[name], image_root, fmt, str(path)) for name in sorted(entries)
    ]
    excluded: list[str] = []
    test_meta = meta_path(root, "test")
    if fmt == "ytvos" and split == "valid" and test_meta.is_file():
        test = set(_load_meta(test_meta))
        excluded = [v.name for v in videos if v.name in test]
        videos = [v for v in videos if v.name not in test]
    if check_frames:
        for v in videos:
            for i in range(v.num_frames):
                if not v.frame_path(i).is_file():
                    raise DatasetError(
                        f"video {v.name!r}: frame {v.frames[i]!r} is missing ({v.frame_path(i)})"
                    )
    return Split(root, split, fmt, videos, excluded, path)


def read_frames(video: DatasetVideo, start: int = 0, end: int | None = None) -> np.ndarray:
    """Frames ``[start, end)`` of ``video`` as uint8 ``[n, H, W, 3]`` RGB, decoded by PIL as
    the original does. Raises DatasetError naming the video and frame."""
    end = video.num_frames if end is None else end
    frames = []
    for i in range(start, end):
        path = video.frame_path(i)
        try:
            with Image.open(path) as image:
                frames.append(np.asarray(image.convert("RGB")))
        except (OSError, ValueError) as exc:
            raise DatasetError(
                f"video {video.name!r}: cannot read frame {video.frames[i]!r} ({path}): {exc}"
            ) from None
        if frames[-1].shape != frames[0].shape:
            raise DatasetError(
                f"video {video.name!r}: frame {video.frames[i]!r} is "
                f"{frames[-1].shape[1]}x{frames[-1].shape[0]}, frame "
                f"{video.frames[start]!r} {frames[0].shape[1]}x"
                f"{frames[0].shape[0]}; a video's frames must share one size"
            )
    return np.stack(frames)


class PredictionFolder:
    """Where ``rvos dataset predict`` writes one split, and the temporary-folder protocol that
    makes a video appear whole or not at all.

    `start` gives an empty temporary folder per output folder of the video; `commit` renames
    each into place (an older copy is first renamed aside, then deleted). A video is complete
    when all its output folders exist (`is_complete`).
    """

    def __init__(self, out: str | os.PathLike, split: str, fmt: str) -> None:
        if fmt not in FORMATS:
            raise DatasetError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        self.out, self.split, self.format = Path(out), split, fmt
        self.split_dir = self.out / split
        self.partial_dir = self.out / ".partial" / split

    def prepare(self) -> None:
        """Create the output folders (an unwritable ``--out`` fails here, by name)."""
        try:
            for d in (self.split_dir, self.partial_dir):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetError(f"cannot write predictions under {self.out}: {exc}") from None

    def final_dirs(self, video: str) -> list[Path]:
        if self.format in PER_EXPRESSION_FORMATS:
            return [self.split_dir / video]
        return [self.split_dir / f"anno_{a}" / video for a in range(DAVIS_ANNOTATORS)]

    def _temp_root(self, video: str) -> Path:
        return self.partial_dir / video

    def temp_dirs(self, video: str) -> list[Path]:
        if self.format in PER_EXPRESSION_FORMATS:
            return [self._temp_root(video)]
        return [self._temp_root(video) / f"anno_{a}" for a in range(DAVIS_ANNOTATORS)]

    def is_complete(self, video: str) -> bool:
        return all(d.is_dir() for d in self.final_dirs(video))

    def start(self, video: str) -> list[Path]:
        """Fresh, empty temporary folders for ``video`` (leftovers of a killed run removed)."""
        try:
            shutil.rmtree(self._temp_root(video), ignore_errors=True)
            for d in self.temp_dirs(video):
                d.mkdir(parents=True)
        except OSError as exc:
            raise DatasetError(
                f"video {video!r}: cannot write {self._temp_root(video)}: {exc}"
            ) from None
        return self.temp_dirs(video)

    def commit(self, video: str) -> None:
        """Move the finished temporary folders into place."""
        old = self.partial_dir / f".old-{video}"
        try:
            for tmp, final in zip(self.temp_dirs(video), self.final_dirs(video), strict=True):
                final.parent.mkdir(parents=True, exist_ok=True)
                if final.exists():
                    shutil.rmtree(old, ignore_errors=True)
                    os.rename(final, old)  # atomic: the final path is never half deleted
                os.rename(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            shutil.rmtree(self._temp_root(video), ignore_errors=True)
        except OSError as exc:
            raise DatasetError(
                f"video {video!r}: cannot move its predictions into {self.split_dir}: {exc}"
            ) from None


# Zip entries get this timestamp, so the same masks always give the same archive bytes.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def write_submission(
    folder: PredictionFolder, videos: Iterable[str], name: str = "submission.zip"
) -> Path:
    """``DIR/submission.zip`` for the Ref-YouTube-VOS server: every PNG of ``videos`` as
    ``Annotations/<video>/<exp_id>/<frame>.png`` (what ReferFormer's instructions produce by
    renaming ``valid`` to ``Annotations`` and zipping it); for the MeViS server the video
    folders sit at the root of the zip, ``<video>/<exp_id>/<frame>.png``. Entries are sorted and
    stored (PNGs do not compress further), with fixed timestamps."""
    if folder.format not in PER_EXPRESSION_FORMATS:
        raise DatasetError(
            "a submission zip is for Ref-YouTube-VOS or MeViS predictions (--format ytvos|mevis)"
        )
    prefix = "Annotations/" if folder.format == "ytvos" else ""
    target = folder.out / name
    tmp = target.with_name(target.name + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            for video in sorted(videos):
                root = folder.split_dir / video
                for path in sorted(root.rglob("*.png")):
                    info = zipfile.ZipInfo(
                        f"{prefix}{video}/{path.relative_to(root).as_posix()}", _ZIP_TIME
                    )
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, path.read_bytes())
        os.replace(tmp, target)
    except OSError as exc:
        raise DatasetError(f"cannot write {target}: {exc}") from None
    return target
