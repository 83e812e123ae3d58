"""MeViS ground truth: ``<split>/mask_dict.json`` and the mask an expression refers to.

``mask_dict.json`` maps each annotation id (a string) to one entry per frame of its video, in
the meta file's frame order: a COCO run-length mask (`rvos.data.coco_rle`), or null where the
object is not in the frame. An expression may refer to several objects; its ground truth is
the union of their masks, which is how the MeViS evaluation scores it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rvos.data.coco_rle import RleError, decode_coco_rle
from rvos.data.layouts import DatasetError, DatasetVideo, Expression, read_json

__all__ = ["expression_masks", "mask_dict_path", "mask_size", "read_mask_dict"]


def mask_dict_path(root: str | os.PathLike, split: str) -> Path:
    """``ROOT/<split>/mask_dict.json``."""
    return Path(root) / split / "mask_dict.json"


def read_mask_dict(path: str | os.PathLike, split: str = "") -> dict[str, list]:
    """Load ``mask_dict.json``: ``{anno_id: [rle or None per frame]}``. Raises DatasetError
    naming the file (and, when it is missing, saying that ``valid`` has no public masks)."""
    path = Path(path)
    if not path.is_file():
        hint = (
            "; MeViS's valid split has no public masks: submit submission.zip to the "
            "MeViS server, or score valid_u"
            if split == "valid"
            else " (--gt points elsewhere)"
        )
        raise DatasetError(f"ground truth {path} not found{hint}")
    masks = read_json(path)
    if not isinstance(masks, dict) or not all(isinstance(v, list) for v in masks.values()):
        raise DatasetError(f"{path}: expected {{<anno_id>: [<RLE or null per frame>, ...]}}")
    return masks


def mask_size(video: DatasetVideo, mask_dict: dict[str, list]) -> tuple[int, int] | None:
    """(H, W) of the first mask of any of ``video``'s annotations; None if it has none."""
    for e in video.expressions:
        for anno_id in e.anno_ids:
            for rle in mask_dict.get(anno_id) or ():
                size = rle.get("size") if isinstance(rle, dict) else None
                if isinstance(size, list) and len(size) == 2:
                    return int(size[0]), int(size[1])
    return None


def expression_masks(
    video: DatasetVideo, expression: Expression, mask_dict: dict[str, list], size: tuple[int, int]
) -> np.ndarray:
    """The ground truth of ``expression``: the union of its objects' masks, bool
    ``[T, H, W]`` over the video's frames (``size`` = (H, W), the frames' size)."""
    where = f"video {video.name!r}: expression {expression.exp_id!r}"
    union = np.zeros((video.num_frames, *size), dtype=bool)
    for anno_id in expression.anno_ids:
        frames = mask_dict.get(anno_id)
        if frames is None:
            raise DatasetError(f"{where}: anno_id {anno_id} is not in mask_dict.json")
        if len(frames) != video.num_frames:
            raise DatasetError(
                f"{where}: anno_id {anno_id} has masks for {len(frames)} frames, the video "
                f"{video.num_frames}"
            )
        for t, rle in enumerate(frames):
            if rle is None:
                continue
            try:
                mask = decode_coco_rle(rle)
            except RleError as exc:
                raise DatasetError(
                    f"{where}: anno_id {anno_id}, frame {video.frames[t]!r}: {exc}"
                ) from None
            if mask.shape != size:
                raise DatasetError(
                    f"{where}: anno_id {anno_id}, frame {video.frames[t]!r} is "
                    f"{mask.shape[1]}x{mask.shape[0]}, expected {size[1]}x{size[0]}"
                )
            union[t] |= mask
    return union
