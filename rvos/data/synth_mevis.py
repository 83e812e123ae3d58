"""Synthetic splits in the MeViS layout, with ground truth, for ``rvos dataset --format mevis``::

    ROOT/<split>/JPEGImages/<video>/<frame>.jpg      RGB frames (JPEG quality 95)
    ROOT/<split>/meta_expressions.json               {"videos": {<video>: {"expressions":
        {<exp_id>: {"exp", "obj_id": [...], "anno_id": [...], "category"}}, "frames": [...]}}}
    ROOT/<split>/mask_dict.json                      {<anno_id>: [<COCO RLE or null>, ...]}

Split folders: ``train`` → train, ``val`` → valid_u (the MeViS split with public masks),
``test`` → valid. Unlike the real ``valid``, every synthetic split gets its ``mask_dict.json``
(the masks are known), so each can be scored. Frames are ``00000``, ``00001``, ...; an object
that some expression refers to gets an ``obj_id`` (0, 1, ... in clip order within its video)
and an ``anno_id`` (0, 1, ... over the whole split); an object's mask is null in the frames
where no part of it is visible.

**Several objects per expression.** The generator phrases an expression about one object,
chosen so that it singles that object out. A MeViS-style expression about several objects is
written by joining such expressions: "the red circle and the square moving left" refers to
exactly the two objects its parts single out, so its ground truth is both masks. After the
clip's own expressions (or ``per_object`` descriptions of each object), a clip with two
referred objects gets one such pair, and one with three or more also a triple ("A, B and C").
Parts whose own words contain "and" are not joined (the sentence would not say where one
part ends).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from rvos.data.coco_rle import encode_coco_rle
from rvos.data.synth import clip_seed, generate_split
from rvos.data.synth_language import annotated_expressions
from rvos.data.synth_scene import Clip, Expression

__all__ = ["MEVIS_SPLIT_FOLDERS", "group_expressions", "write_mevis_split"]

MEVIS_SPLIT_FOLDERS = {"train": "train", "val": "valid_u", "test": "valid"}


def _write_jpeg(path: Path, frame: np.ndarray) -> None:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
    )
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def group_expressions(expressions: list[Expression]) -> list[tuple[str, tuple[int, ...]]]:
    """Expressions about two and three objects, joined from ``expressions`` (each singling out
    one object): ``[(text, object indices)]``, the pair first. The parts are the first
    expression of each object, in the order they appear, skipping words with "and"."""
    parts: dict[int, str] = {}
    for e in expressions:
        if e.object_index not in parts and " and " not in f" {e.text} ":
            parts[e.object_index] = e.text
    objects = list(parts)
    groups = []
    if len(objects) >= 2:
        a, b = objects[:2]
        groups.append((f"{parts[a]} and {parts[b]}", (a, b)))
    if len(objects) >= 3:
        a, b, c = objects[:3]
        groups.append((f"{parts[a]}, {parts[b]} and {parts[c]}", (a, b, c)))
    return groups


def _video_entry(
    clip: Clip, expressions: list[Expression], anno_start: int, masks: dict[str, list]
) -> dict:
    """The meta entry of one clip; adds its objects' masks to ``masks`` under anno_ids
    ``anno_start``, ``anno_start + 1``, ..."""
    groups = group_expressions(expressions)
    referred = sorted({e.object_index for e in expressions} | {k for _, ks in groups for k in ks})
    obj_ids = {k: i for i, k in enumerate(referred)}
    anno_ids = {k: anno_start + i for i, k in enumerate(referred)}
    for k in referred:
        masks[str(anno_ids[k])] = [encode_coco_rle(m) if m.any() else None for m in clip.masks[k]]
    entries = [(e.text, (e.object_index,), e.category) for e in expressions]
    entries += [(text, ks, "multiple") for text, ks in groups]
    return {
        "expressions": {
            str(i): {
                "exp": text,
                "obj_id": [obj_ids[k] for k in ks],
                "anno_id": [anno_ids[k] for k in ks],
                "category": category,
            }
            for i, (text, ks, category) in enumerate(entries)
        },
        "frames": [f"{t:05d}" for t in range(clip.num_frames)],
    }


def write_mevis_split(
    out_dir: str | os.PathLike,
    split: str,
    count: int,
    seed: int | None = 0,
    *,
    per_object: int | None = None,
    **clip_kwargs,
) -> Path:
    """Write ``count`` clips of synthetic ``split`` (train / val / test) in the MeViS layout
    under ``out_dir``; ``clip_kwargs`` go to `rvos.data.synth.generate_clip`. The clips and
    single-object expressions are those the other layouts get for the same arguments.
    Returns the meta_expressions.json path."""
    folder = Path(out_dir) / MEVIS_SPLIT_FOLDERS[split]
    videos: dict[str, dict] = {}
    masks: dict[str, list] = {}
    for index, clip in enumerate(generate_split(split, count, seed, **clip_kwargs)):
        expressions = annotated_expressions(clip, per_object, clip_seed(split, index, seed))
        entry = _video_entry(clip, expressions, len(masks), masks)
        img_dir = folder / "JPEGImages" / clip.name
        img_dir.mkdir(parents=True, exist_ok=True)
        for name, frame in zip(entry["frames"], clip.frames, strict=True):
            _write_jpeg(img_dir / f"{name}.jpg", frame)
        videos[clip.name] = entry
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mask_dict.json").write_text(json.dumps(masks))
    meta = folder / "meta_expressions.json"
    meta.write_text(json.dumps({"videos": videos}, indent=1))
    return meta
