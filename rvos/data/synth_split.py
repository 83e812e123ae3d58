"""Synthetic splits on disk: writing and reading DAVIS-style folders, and the training dataset."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rvos.data.synth import _check_split, clip_seed, generate_split, make_clip
from rvos.data.synth_language import annotated_expressions
from rvos.data.synth_scene import Clip

__all__ = ["SynthExpression", "SynthVideo", "SynthDataset", "read_synth_split", "write_split"]


class SynthDataset:
    """Indexable view of a split for training loops (no torch dependency).

    ``dataset[i]`` renders clip i on the fly (a few ms). For train, ``length`` only sets
    ``len()``; any non-negative index is valid, so a sampler can keep drawing fresh clips.
    """

    def __init__(self, split: str, length: int, seed: int | None = 0, **clip_kwargs) -> None:
        _check_split(split)
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.split, self.length, self.seed, self.clip_kwargs = split, length, seed, clip_kwargs

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Clip:
        if self.split != "train" and not 0 <= index < self.length:
            raise IndexError(f"{self.split} index {index} out of range 0..{self.length - 1}")
        return make_clip(self.split, int(index), self.seed, **self.clip_kwargs)


@dataclass
class SynthExpression:
    """One expression read back from disk; masks: bool [T,H,W] of its object."""

    expr_id: str
    text: str
    category: str
    obj_id: int
    masks: np.ndarray


@dataclass
class SynthVideo:
    """One video read back from disk; frames: uint8 [T,H,W,3] RGB."""

    name: str
    frame_names: list[str]
    frames: np.ndarray
    expressions: list[SynthExpression]


def write_split(
    out_dir: str | os.PathLike, split: str, count: int, seed: int | None = 0, *,
    per_object: int | None = None, **clip_kwargs
) -> Path:
    """Write ``count`` clips of ``split`` as a folder:

        JPEGImages/<video>/<frame>.jpg            RGB frames, JPEG quality 95
        Annotations/<video>/<expr id>/<frame>.png single-channel PNG, 0 = background, 255 = object
        expressions.json                          {"videos": {<video>: {"frames": [...],
                                                   "expressions": {<expr id>: {"exp", "category",
                                                   "obj_id"}}, "objects": [...]}}}

    Frames are named ``00000``, ``00001``, ...; videos ``<split>_<index:05d>``; expression ids
    "0", "1", ...; ``obj_id`` is the 0-based object index in the clip. ``per_object``: store
    that many descriptions of every describable object instead of the clip's own expressions
    (`annotated_expressions`; as `rvos.data.synth_layouts` does for the Ref-DAVIS17 layout, with the
    same words). ``clip_kwargs`` go to `generate_clip`; with ``no_target`` the no-target
    expressions are stored with ``obj_id`` -1 and empty masks. Returns the folder.
    """
    out = Path(out_dir)
    meta: dict = {"split": split, "seed": clip_seed(split, 0, seed)[1], "videos": {}}
    for index, clip in enumerate(generate_split(split, count, seed, **clip_kwargs)):
        frame_names = [f"{i:05d}" for i in range(clip.num_frames)]
        img_dir = out / "JPEGImages" / clip.name
        img_dir.mkdir(parents=True, exist_ok=True)
        for fname, frame in zip(frame_names, clip.frames, strict=True):
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, 95])
            if not ok:
                raise OSError(f"could not encode {img_dir / fname}.jpg")
            (img_dir / f"{fname}.jpg").write_bytes(buf.tobytes())
        exprs = {}
        expressions = annotated_expressions(clip, per_object, clip_seed(split, index, seed))
        for e_id, expr in enumerate(expressions):
            ann_dir = out / "Annotations" / clip.name / str(e_id)
            ann_dir.mkdir(parents=True, exist_ok=True)
            for fname, m in zip(frame_names, clip.target_masks(expr), strict=True):
                ok, buf = cv2.imencode(".png", m.astype(np.uint8) * 255)
                if not ok:
                    raise OSError(f"could not encode {ann_dir / fname}.png")
                (ann_dir / f"{fname}.png").write_bytes(buf.tobytes())
            exprs[str(e_id)] = {"exp": expr.text, "category": expr.category,
                                "obj_id": expr.object_index}
        objects = [{"shape": o.shape, "colour": o.colour, "size": o.size, "motion": o.motion}
                   for o in clip.objects]
        meta["videos"][clip.name] = {"frames": frame_names, "expressions": exprs,
                                     "objects": objects}
    out.mkdir(parents=True, exist_ok=True)
    (out / "expressions.json").write_text(json.dumps(meta, indent=1))
    return out


def _read_image(path: Path, flags: int) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise FileNotFoundError(f"missing or unreadable image {path}")
    return img


def read_synth_split(split_dir: str | os.PathLike) -> list[SynthVideo]:
    """Load a folder written by ``write_split`` (or laid out the same way)."""
    root = Path(split_dir)
    meta_path = root / "expressions.json"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{meta_path} not found; create a split with `python -m rvos synth --out {root}`"
        )
    meta = json.loads(meta_path.read_text())
    videos = []
    for name, vid in meta["videos"].items():
        frame_names = list(vid["frames"])
        frames = np.stack([
            cv2.cvtColor(_read_image(root / "JPEGImages" / name / f"{f}.jpg", cv2.IMREAD_COLOR),
                         cv2.COLOR_BGR2RGB)
            for f in frame_names
        ])
        exprs = []
        for e_id, e in vid["expressions"].items():
            masks = np.stack([
                _read_image(root / "Annotations" / name / e_id / f"{f}.png",
                            cv2.IMREAD_GRAYSCALE) > 127
                for f in frame_names
            ])
            exprs.append(SynthExpression(expr_id=e_id, text=e["exp"],
                                         category=e.get("category", "unknown"),
                                         obj_id=int(e.get("obj_id", -1)), masks=masks))
        videos.append(SynthVideo(name=name, frame_names=frame_names, frames=frames,
                                 expressions=exprs))
    return videos
