"""Masks that someone uploads as a zip: ground truth to score a run against (Evaluate), or
another system's answer to put next to a model's (Compare's B).

What reads: per-frame PNGs, in any of the layouts the usual tools write.

* **One folder per expression** (rvos's own ``masks.zip``: ``0/00000.png``, ``1/00000.png``;
  a SAM2 / Sa2VA / ReferDINO output folder per object or sentence): the folders are sorted
  (by number when every folder name is a number, else by name) and the k-th folder is the
  k-th expression; any non-zero pixel is the object, so 0/1 label PNGs, 0/255 masks and
  palette PNGs all read.
* **One folder for all** (a DAVIS annotation folder, ``Annotations/<video>/00000.png``):
  with one expression any non-zero pixel is the object; with several, pixel value k (a
  palette index, or a grey level) is the k-th expression, counted from 1 as DAVIS counts its
  objects (values above the number of expressions are other objects and are ignored).

Frames are ordered by the last number in the file name (``00000.png``, ``frame_0001.png``,
``img12.png``: numerically, not as text), so numbering from 0 or from 1 both work; there must
be one PNG per processed frame, at the clip's size. Greyscale, palette, bilevel, 16-bit and
RGB(A) PNGs read (an RGB pixel in the DAVIS palette counts as that palette index, any other
non-black one as the object). Files other than PNGs, folders and the ``__MACOSX`` / dot-file
litter of archivers are ignored.

Safety: nothing is extracted to disk and nothing in the zip is executed; a name that is
absolute or climbs out of the zip (``..``) refuses the whole zip; entries, their sizes and
their total are capped before anything is decompressed, and each PNG's size is checked
before its pixels are decoded (no decompression bomb gets far).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from rvos.app.inputs import AppInputError
from rvos.app.text import plural
from rvos.media.labels import davis_palette
from rvos.result.rle import decode_rle, encode_rle
from rvos.viz.colors import palette
from rvos.viz.draw import overlay_masks

__all__ = [
    "MAX_ENTRIES",
    "MAX_PNG_MB",
    "MAX_TOTAL_MB",
    "MaskSet",
    "MaskTrack",
    "MasksZip",
    "MasksZipError",
]

MAX_ENTRIES = 20_000  # files in the zip (4 expressions × the app's frame limit, many times over)


MAX_PNG_MB = 64  # one PNG, decompressed


MAX_TOTAL_MB = 2048  # all PNGs, decompressed


_NUMBER = re.compile(r"\d+")


class MasksZipError(AppInputError):
    """An uploaded masks zip that cannot be used; the message says why in one line."""


def _frame_number(name: str) -> int | None:
    """The last number in a file name's stem (``frame_0012.png`` → 12), or None."""
    numbers = _NUMBER.findall(PurePosixPath(name).stem)
    return int(numbers[-1]) if numbers else None


def _folder_key(name: str) -> tuple:
    """Sort key of a folder: by number when it is one, else by name with its numbers as
    numbers (``expr2`` before ``expr10``)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                 for p in re.split(r"(\d+)", name) if p)


def _is_litter(parts: tuple[str, ...]) -> bool:
    return parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts)


def _unsafe(name: str) -> bool:
    """Whether a member name is absolute or climbs out of the zip's folder."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return True
    return any(p == ".." for p in re.split(r"[/\\]", name))


@dataclass
class MaskTrack:
    """One expression's masks over the clip (run-length encoded, see `rvos.result.rle`)."""

    text: str
    size: tuple[int, int]  # (H, W)
    rle: list[np.ndarray]

    @property
    def num_frames(self) -> int:
        return len(self.rle)

    def mask(self, frame_index: int, threshold: float | None = None) -> np.ndarray:
        """bool ``[H, W]`` on a frame (``threshold`` is accepted and ignored: masks from a zip
        have no probabilities)."""
        del threshold
        return decode_rle(self.rle[int(frame_index)], self.size)

    def masks(self, threshold: float | None = None) -> Iterator[np.ndarray]:
        for t in range(self.num_frames):
            yield self.mask(t)

    # One object per expression: its union of objects is its mask (as `ExpressionResult`'s).
    union_masks = masks

    @property
    def mask_areas(self) -> np.ndarray:
        """int64 ``[T]`` object pixels per frame."""
        return np.array([int(r[1::2].sum()) for r in self.rle], dtype=np.int64)


@dataclass
class MaskSet:
    """Masks of every expression of a clip, read from a zip; draws as a `VideoResult` does
    (`render_overlay`), so Compare can show it as model B.

    Attributes:
        name: the zip's file name (its own name, never the server's folder).
        tracks: one `MaskTrack` per expression, in the expressions' order.
        source: the clip's `SourceInfo` (set by whoever read the masks for a run; None before).
    """

    name: str
    tracks: list[MaskTrack]
    source: object = None

    def __len__(self) -> int:
        return len(self.tracks)

    def __iter__(self) -> Iterator[MaskTrack]:
        return iter(self.tracks)

    def __getitem__(self, k: int) -> MaskTrack:
        return self.tracks[k]

    @property
    def num_frames(self) -> int:
        return self.tracks[0].num_frames

    @property
    def size(self) -> tuple[int, int]:
        return self.tracks[0].size

    def render_overlay(self, frame_index: int, frame: np.ndarray, *,
                       threshold: float | None = None, alpha: float = 0.5,
                       expressions: Sequence[int] | None = None) -> np.ndarray:
        """uint8 ``[H, W, 3]``: ``frame`` with the masks of all (or the listed) expressions,
        expression k in palette colour k (as `VideoResult.render_overlay`)."""
        chosen = range(len(self)) if expressions is None else expressions
        colors = palette(len(self))
        return overlay_masks(frame, [self[k].mask(frame_index) for k in chosen],
                             colors=[colors[k] for k in chosen], alpha=alpha)


@dataclass
class _Group:
    folder: str  # relative to the zip's common folder ("" for a single folder)
    members: list[zipfile.ZipInfo]  # sorted by frame number


class MasksZip:
    """An uploaded zip of per-frame mask PNGs, checked for safety and layout (see the module
    docstring) without decoding any image: `open` it as soon as it arrives (a bad zip fails
    before any model runs), then `read` its masks for a clip.

    Attributes:
        name: the zip's own file name.
        groups: the mask folders in expression order (one group: a single folder).
    """

    def __init__(self, path: str | Path, name: str, groups: list[_Group]) -> None:
        self.path, self.name, self.groups = Path(path), name, groups

    @classmethod
    def open(cls, path: str | Path | None, what: str = "masks") -> MasksZip:
        """Check the zip at ``path``; ``what`` names it in messages ("ground truth").
        Raises `MasksZipError`."""
        if not path:
            raise MasksZipError(f"no {what} zip: upload a .zip of per-frame PNG masks")
        name = Path(path).name
        try:
            if not zipfile.is_zipfile(path):
                raise MasksZipError(f"{name} is not a zip file: upload the {what} as a .zip "
                                    "of per-frame PNG masks")
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
        except (OSError, zipfile.BadZipFile) as err:
            raise MasksZipError(f"{name} cannot be read as a zip ({type(err).__name__})") \
                from None
        if len(infos) > MAX_ENTRIES:
            raise MasksZipError(f"{name} holds {len(infos)} files; at most {MAX_ENTRIES} are "
                                "read")
        pngs: list[tuple[tuple[str, ...], zipfile.ZipInfo]] = []
        total = 0
        for info in infos:
            if _unsafe(info.filename):
                raise MasksZipError(f"{name} holds an unsafe file name "
                                    f"({info.filename[:80]!r}): every name must stay inside "
                                    "the zip's folder")
            parts = tuple(p for p in re.split(r"[/\\]", info.filename) if p not in ("", "."))
            if info.is_dir() or not parts or _is_litter(parts):
                continue
            if not parts[-1].lower().endswith(".png"):
                continue
            if info.flag_bits & 0x1:
                raise MasksZipError(f"{name} is encrypted; upload a zip without a password")
            if info.file_size > MAX_PNG_MB * 2**20:
                raise MasksZipError(f"{parts[-1]} in {name} is {info.file_size / 2**20:.0f} "
                                    f"MB; a mask PNG may be at most {MAX_PNG_MB} MB")
            total += info.file_size
            pngs.append((parts, info))
        if not pngs:
            raise MasksZipError(f"{name} holds no PNG masks: put one PNG per frame in it "
                                "(e.g. 00000.png, 00001.png, ...)")
        if total > MAX_TOTAL_MB * 2**20:
            raise MasksZipError(f"{name} unpacks to {total / 2**20:.0f} MB of PNGs; at most "
                                f"{MAX_TOTAL_MB} MB are read")
        return cls(path, name, _group(pngs, name))

    def describe(self) -> str:
        """E.g. ``"2 folders (0, 1)"`` or ``"one folder"``, for messages."""
        if len(self.groups) == 1:
            return "one folder of masks"
        names = ", ".join(g.folder for g in self.groups[:6])
        return f"{len(self.groups)} mask folders ({names}{', ...' if len(self.groups) > 6 else ''})"

    def read(self, expressions: Sequence[str], num_frames: int, size: tuple[int, int]
             ) -> MaskSet:
        """The masks of each expression (texts ``expressions``) on ``num_frames`` frames of
        ``size`` (H, W). Raises `MasksZipError` when the layout, the frame count or a frame's
        size does not fit the clip, or a PNG cannot be decoded."""
        k = len(expressions)
        by_label = len(self.groups) == 1 and k > 1
        if len(self.groups) > 1 and len(self.groups) != k:
            raise MasksZipError(f"{self.name} has {self.describe()}, one per expression, but "
                                f"there {'is' if k == 1 else 'are'} {plural(k, 'expression')}")
        for g in self.groups:
            if len(g.members) != num_frames:
                where = f"folder {g.folder} of {self.name}" if g.folder else self.name
                raise MasksZipError(f"{where} has {plural(len(g.members), 'PNG mask')}, the "
                                    f"clip {plural(num_frames, 'processed frame')}: the masks "
                                    "need one PNG per processed frame (check Processing fps "
                                    "and Max frames)")
        tracks = [[] for _ in range(k)]
        seen_label = False
        with zipfile.ZipFile(self.path) as zf:
            for g_index, group in enumerate(self.groups):
                for info in group.members:
                    labels = self._labels(zf, info, size)
                    if by_label:
                        for e in range(k):
                            mask = labels == e + 1
                            seen_label = seen_label or bool(mask.any())
                            tracks[e].append(encode_rle(mask))
                    else:
                        tracks[g_index].append(encode_rle(labels != 0))
        if by_label and not seen_label:
            raise MasksZipError(f"{self.name} has one folder of masks without any pixel "
                                f"labelled 1..{k}, but there are {plural(k, 'expression')}: "
                                "put one folder per expression, or label expression k's "
                                "object with the value k")
        return MaskSet(self.name, [MaskTrack(text, size, rle) for text, rle in
                                   zip(expressions, tracks, strict=True)])

    def _labels(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, size: tuple[int, int]
                ) -> np.ndarray:
        """uint8 ``[H, W]`` labels of one PNG (its size checked first)."""
        file = PurePosixPath(info.filename.replace("\\", "/")).name
        limit = MAX_PNG_MB * 2**20
        with zf.open(info) as member:
            data = member.read(limit + 1)  # the header's size may lie: never read more
        if len(data) > limit:
            raise MasksZipError(f"{file} in {self.name} is larger than {MAX_PNG_MB} MB")
        try:
            image = Image.open(io.BytesIO(data), formats=["PNG"])
            w, h = image.size
            if (h, w) != tuple(size):
                raise MasksZipError(f"{file} in {self.name} is {w}×{h}; the clip's frames are "
                                    f"{size[1]}×{size[0]}")
            return _as_labels(image)
        except MasksZipError:
            raise
        except Exception as err:  # PIL raises many kinds for a broken file
            raise MasksZipError(f"{file} in {self.name} is not a readable PNG "
                                f"({type(err).__name__})") from None


def _group(pngs: list[tuple[tuple[str, ...], zipfile.ZipInfo]], name: str) -> list[_Group]:
    """The PNGs by folder, the zip's common leading folders dropped, folders in expression
    order and frames in frame order."""
    folders: dict[tuple[str, ...], list[tuple[int, zipfile.ZipInfo]]] = {}
    for parts, info in pngs:
        number = _frame_number(parts[-1])
        if number is None:
            raise MasksZipError(f"{parts[-1]} in {name} has no frame number in its name "
                                "(name frames like 00000.png or frame_0001.png)")
        folders.setdefault(parts[:-1], []).append((number, info))
    keys = list(folders)
    common = 0
    while all(len(key) > common for key in keys) and len({key[common] for key in keys}) == 1 \
            and len(keys) > 1:
        common += 1
    groups = []
    for key in keys:
        members = sorted(folders[key], key=lambda m: m[0])
        numbers = [n for n, _ in members]
        if len(set(numbers)) != len(numbers):
            dup = next(n for n in numbers if numbers.count(n) > 1)
            raise MasksZipError(f"{name} has two PNGs for frame {dup} in one folder")
        folder = "/".join(key[common:]) if len(keys) > 1 else ""
        groups.append(_Group(folder, [info for _, info in members]))
    groups.sort(key=lambda g: _folder_key(g.folder))
    return groups


def _palette_lookup() -> dict[int, int]:
    pal = davis_palette().astype(np.int64)
    codes = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    lookup: dict[int, int] = {}
    for index, code in enumerate(codes.tolist()):
        lookup.setdefault(code, index)
    return lookup


def _as_labels(image: Image.Image) -> np.ndarray:
    """uint8 ``[H, W]`` object ids of a mask PNG in any common mode."""
    mode = image.mode
    if mode in ("P", "L", "1"):
        return np.array(image, dtype=np.uint8)
    if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.array(image)
        # 16-bit object ids stay ids when small; 0/65535 masks become 0/255.
        return np.where(values > 255, 255, values).astype(np.uint8)
    if mode in ("LA", "PA"):
        return np.array(image.getchannel(0), dtype=np.uint8)
    rgb = np.array(image.convert("RGB"), dtype=np.int64)
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0].astype(np.uint8)  # grey levels: the values are the ids
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    lookup = _palette_lookup()
    out = np.full(codes.shape, 255, dtype=np.uint8)  # a colour outside the palette: object
    for code in np.unique(codes).tolist():
        if code in lookup:
            out[codes == code] = lookup[code]
    return out
