"""Synthetic splits in the official Ref-YouTube-VOS and Ref-DAVIS17 folder layouts.

``rvos dataset predict`` / ``eval`` read these layouts; writing synthetic clips into them (with
ground truth) lets every path of those commands run and be scored here, without the datasets::

    ROOT/<split>/JPEGImages/<video>/<frame>.jpg          RGB frames (JPEG quality 95)
    ROOT/<split>/Annotations/<video>/<frame>.png         indexed PNG of object ids (DAVIS palette)
    ROOT/meta_expressions/<split>/meta_expressions.json  {"videos": {<video>: {"expressions":
        {<exp_id>: {"exp", "obj_id", "category"}}, "frames": [<frame>, ...]}}}

Folder split names are the datasets' own: ``val`` is written as ``valid``. Objects that no
expression describes are left out of the annotations (background), as unannotated objects are
in the real datasets; annotated objects get ids 1, 2, ... in clip order.

* **davis**: frames ``00000``, ``00001``, ...; every annotated object has ``per_object``
  expressions (default 4, one per Ref-DAVIS17 annotator), ids ``obj * 4 + annotator``, the order
  ReferFormer's procedure relies on.
* **ytvos**: frames named as Ref-YouTube-VOS names them, every fifth frame of a 30 fps video
  (``00000``, ``00005``, ...); the clip's own 2-4 expressions, each about one object (or
  ``per_object`` descriptions of each object).

The real valid splits' meta files carry no ``obj_id``; these do, so they can be scored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from rvos.data.synth import clip_seed, generate_split
from rvos.data.synth_language import annotated_expressions
from rvos.media.labels import write_label_png

__all__ = ["LAYOUTS", "SPLIT_FOLDERS", "write_official_split"]

LAYOUTS = ("ytvos", "davis")
SPLIT_FOLDERS = {"train": "train", "val": "valid", "test": "test"}
# Ref-YouTube-VOS keeps every fifth frame of its 30 fps videos and names frames by source index.
YTVOS_FRAME_STEP = 5


def meta_path(root: str | os.PathLike, split_folder: str) -> Path:
    """``ROOT/meta_expressions/<split>/meta_expressions.json``."""
    return Path(root) / "meta_expressions" / split_folder / "meta_expressions.json"


def write_official_split(
    out_dir: str | os.PathLike,
    layout: str,
    split: str,
    count: int,
    seed: int | None = 0,
    *,
    per_object: int | None = None,
    **clip_kwargs,
) -> Path:
    """Write ``count`` clips of synthetic ``split`` (train / val / test) in ``layout`` (ytvos or
    davis) under ``out_dir``; ``clip_kwargs`` go to `rvos.data.synth.generate_clip` (num_frames,
    size, num_objects). Returns the meta_expressions.json path."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout == "davis" and per_object is None:
        per_object = 4
    root = Path(out_dir)
    folder = SPLIT_FOLDERS[split]
    videos: dict[str, dict] = {}
    for index, clip in enumerate(generate_split(split, count, seed, **clip_kwargs)):
        step = YTVOS_FRAME_STEP if layout == "ytvos" else 1
        frame_names = [f"{i * step:05d}" for i in range(clip.num_frames)]
        expressions = annotated_expressions(clip, per_object, clip_seed(split, index, seed))
        referred = sorted({e.object_index for e in expressions})
        obj_ids = {k: i + 1 for i, k in enumerate(referred)}
        img_dir = root / folder / "JPEGImages" / clip.name
        ann_dir = root / folder / "Annotations" / clip.name
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        for t, name in enumerate(frame_names):
            ok, buf = cv2.imencode(
                ".jpg",
                cv2.cvtColor(clip.frames[t], cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 95],
            )
            if not ok:
                raise OSError(f"could not encode {img_dir / name}.jpg")
            (img_dir / f"{name}.jpg").write_bytes(buf.tobytes())
            labels = np.zeros(clip.frames.shape[1:3], dtype=np.uint8)
            for k, obj_id in obj_ids.items():
                labels[clip.masks[k, t]] = obj_id
            write_label_png(ann_dir / f"{name}.png", labels)
        videos[clip.name] = {
            "expressions": {
                str(i): {
                    "exp": e.text,
                    "obj_id": str(obj_ids[e.object_index]),
                    "category": e.category,
                }
                for i, e in enumerate(expressions)
            },
            "frames": frame_names,
        }
    path = meta_path(root, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"videos": videos}, indent=1))
    return path
