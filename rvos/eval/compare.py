"""Two prediction sets of one split, mask by mask: is a reproduction the authors' answer?

A prediction set is what ``rvos dataset predict`` writes, or a submission zip like the ones the
ReferFormer authors published. Its masks are PNGs keyed by their path below the set's root:

    ytvos, mevis: <video>/<exp_id>/<frame>.png
    davis:        anno_<a>/<video>/<frame>.png

The root is found by stripping leading folders that every PNG shares while the keys are deeper
than three parts, so each of these works: the ``--out`` folder of ``rvos dataset predict``
(``DIR/<split>/...``; its ``.partial`` and other hidden folders are skipped), the split folder
itself, and a zip with the video folders at its root or under one top folder (``Annotations/``).

A pixel is "object" where the PNG value is > 0 (so 0/255 and 0/1 masks compare equal). Per PNG
(one frame of one expression, or of one DAVIS annotator): the IoU of the two object masks (1 when
both are empty) and the share of pixels on which the two agree. A video's mean IoU is the mean
over its PNGs; its identical share is identical pixels over all its pixels. The agreement is the
mean IoU over every compared PNG of the set.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from rvos.errors import RvosError
from rvos.media.labels import read_label_png

__all__ = [
    "CompareError",
    "Comparison",
    "FrameAgreement",
    "PredictionSet",
    "VideoAgreement",
    "compare_predictions",
    "format_agreement",
    "write_csv",
]

# Parts of a key: <video>/<exp_id>/<frame>.png or anno_<a>/<video>/<frame>.png.
KEY_DEPTH = 3
_ANNOTATOR = re.compile(r"anno_\d+")


class CompareError(RvosError, ValueError):
    """The two sets cannot be compared (unreadable, different frames, different sizes)."""


def _few(items: list[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def _strip_root(paths: list[str], where: str) -> dict[str, str]:
    """Map key -> original path, after stripping the leading folders every path shares."""
    parts = [PurePosixPath(p).parts for p in paths]
    if not parts:
        raise CompareError(f"{where} holds no PNG masks")
    drop = 0
    while all(len(p) - drop > KEY_DEPTH for p in parts):
        heads = sorted({p[drop] for p in parts})
        if len(heads) > 1:
            raise CompareError(
                f"{where} holds several sets ({_few(heads)}): name the folder of one split"
            )
        drop += 1
    depths = sorted({len(p) - drop for p in parts})
    if depths != [KEY_DEPTH]:
        raise CompareError(
            f"{where}: masks at different depths; expected <video>/<exp_id>/<frame>.png "
            "or anno_<a>/<video>/<frame>.png"
        )
    return {"/".join(p[drop:]): path for p, path in zip(parts, paths, strict=True)}


def video_of(key: str) -> str:
    """The video a mask key belongs to."""
    first, second, _ = key.split("/")
    return second if _ANNOTATOR.fullmatch(first) else first


class PredictionSet:
    """The masks of a folder or a zip, by key (see the module's docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._zip = self.path.is_file()
        try:
            if self._zip:
                if not zipfile.is_zipfile(self.path):
                    raise CompareError(f"{self.path} is neither a folder nor a zip file")
                with zipfile.ZipFile(self.path) as zf:
                    names = [
                        n
                        for n in zf.namelist()
                        if n.lower().endswith(".png") and not n.startswith("__MACOSX/")
                    ]
            elif self.path.is_dir():
                names = [
                    p.relative_to(self.path).as_posix()
                    for p in self.path.rglob("*.png")
                    if not any(part.startswith(".") for part in p.relative_to(self.path).parts)
                ]
            else:
                raise CompareError(f"{self.path} does not exist")
        except (OSError, zipfile.BadZipFile) as exc:
            raise CompareError(f"cannot read {self.path}: {exc}") from None
        self.keys = _strip_root(sorted(names), str(self.path))

    def videos(self) -> list[str]:
        return sorted({video_of(k) for k in self.keys})

    @contextmanager
    def open_video(self, keys: list[str]) -> Iterator[dict[str, Path]]:
        """Files of ``keys`` on disk: the folder's own, or a zip's extracted to a temporary
        folder that is removed afterwards (one video at a time keeps the disk use small)."""
        if not self._zip:
            yield {k: self.path / self.keys[k] for k in keys}
            return
        tmp = Path(tempfile.mkdtemp(prefix="rvos-compare-"))
        try:
            files = {}
            with zipfile.ZipFile(self.path) as zf:
                for i, k in enumerate(keys):
                    files[k] = tmp / f"{i}.png"
                    files[k].write_bytes(zf.read(self.keys[k]))
            yield files
        except (OSError, zipfile.BadZipFile) as exc:
            raise CompareError(f"cannot read {self.path}: {exc}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class FrameAgreement:
    key: str
    iou: float
    identical: int  # pixels whose object / background label agrees
    pixels: int

    @property
    def identical_share(self) -> float:
        return self.identical / self.pixels if self.pixels else 1.0


@dataclass(frozen=True)
class VideoAgreement:
    video: str
    frames: int
    mean_iou: float
    identical_share: float


@dataclass(frozen=True)
class Comparison:
    frames: list[FrameAgreement]  # in key order
    videos: list[VideoAgreement]  # in name order

    @property
    def agreement(self) -> float:
        """Mean IoU over every compared PNG."""
        return float(np.mean([f.iou for f in self.frames]))

    @property
    def identical_share(self) -> float:
        return sum(f.identical for f in self.frames) / max(1, sum(f.pixels for f in self.frames))

    def worst_videos(self, n: int = 5) -> list[VideoAgreement]:
        """Up to ``n`` videos that differ, lowest mean IoU first."""
        differ = [v for v in self.videos if v.mean_iou < 1 or v.identical_share < 1]
        return sorted(differ, key=lambda v: (v.mean_iou, v.identical_share, v.video))[:n]

    def worst_frames(self, n: int = 5) -> list[FrameAgreement]:
        """Up to ``n`` PNGs that differ, lowest IoU first."""
        differ = [f for f in self.frames if f.identical < f.pixels]
        return sorted(differ, key=lambda f: (f.iou, f.identical_share, f.key))[:n]


def frame_agreement(key: str, a: np.ndarray, b: np.ndarray) -> FrameAgreement:
    if a.shape != b.shape:
        raise CompareError(f"{key}: masks of different sizes ({a.shape} and {b.shape})")
    fa, fb = a > 0, b > 0
    union = int(np.count_nonzero(fa | fb))
    iou = np.count_nonzero(fa & fb) / union if union else 1.0
    return FrameAgreement(key, float(iou), int(np.count_nonzero(fa == fb)), int(fa.size))


def _read(path: Path, key: str, where: PredictionSet) -> np.ndarray:
    try:
        return read_label_png(path)
    except (OSError, ValueError) as exc:  # not a PNG, or an RGB one
        reason = str(exc).replace(f" {str(path)!r}", "").replace(f"{str(path)!r}", "it")
        raise CompareError(f"{key} of {where.path}: {reason}") from None


def _check_same_keys(pred: PredictionSet, ref: PredictionSet) -> None:
    only_pred = sorted(set(pred.keys) - set(ref.keys))
    only_ref = sorted(set(ref.keys) - set(pred.keys))
    for missing, there, absent in ((only_ref, ref, pred), (only_pred, pred, ref)):
        if missing:
            videos = sorted({video_of(k) for k in missing} - set(absent.videos()))
            names = videos or missing
            noun = ("video" if videos else "mask") + ("s" if len(names) > 1 else "")
            what = f"{len(names)} {noun}"
            raise CompareError(
                f"{what} of {there.path} are missing from {absent.path}: {_few(names)}"
            )


def compare_predictions(
    pred: str | os.PathLike, reference: str | os.PathLike, *, pred_videos_only: bool = False
) -> Comparison:
    """Compare every mask of ``pred`` with the mask of the same key in ``reference``; both must
    hold the same masks (else `CompareError` naming a few that are missing). With
    ``pred_videos_only`` the reference may hold more videos (a reproduction of part of a split);
    the videos ``pred`` holds must still match mask for mask."""
    a, b = PredictionSet(pred), PredictionSet(reference)
    if pred_videos_only:
        ours = set(a.videos())
        b.keys = {k: v for k, v in b.keys.items() if video_of(k) in ours}
    _check_same_keys(a, b)
    by_video: dict[str, list[str]] = {}
    for key in sorted(a.keys):
        by_video.setdefault(video_of(key), []).append(key)
    frames: list[FrameAgreement] = []
    videos: list[VideoAgreement] = []
    for video, keys in sorted(by_video.items()):
        with a.open_video(keys) as fa, b.open_video(keys) as fb:
            rows = [frame_agreement(k, _read(fa[k], k, a), _read(fb[k], k, b)) for k in keys]
        frames.extend(rows)
        videos.append(
            VideoAgreement(
                video,
                len(rows),
                float(np.mean([r.iou for r in rows])),
                sum(r.identical for r in rows) / max(1, sum(r.pixels for r in rows)),
            )
        )
    return Comparison(frames, videos)


def write_csv(comparison: Comparison, path: str | os.PathLike) -> Path:
    """One row per video: ``video, frames, mean_iou, identical_share``."""
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["video", "frames", "mean_iou", "identical_share"])
            for v in comparison.videos:
                writer.writerow(
                    [v.video, v.frames, f"{v.mean_iou:.6f}", f"{v.identical_share:.6f}"]
                )
    except OSError as exc:
        raise CompareError(f"cannot write {out}: {exc}") from None
    return out


def format_agreement(value: float, digits: int = 4) -> str:
    """``value`` with ``digits`` decimals, as the tables print it, except that 1 prints as
    ``1.0`` and only when every mask agrees (0.99996 prints as 0.9999, not 1.0000)."""
    if value >= 1:
        return "1.0"
    return f"{min(value, 1 - 10**-digits):.{digits}f}"
