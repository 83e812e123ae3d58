"""The synthetic referring-video generator: a clip's objects, frames and expressions from a seed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from rvos.data.synth_language import (
    _choose_expressions,
    _Facts,
    _leaving_expression,
    _no_target_expression,
)
from rvos.data.synth_scene import (
    MAX_OBJECTS,
    MIN_VISIBLE_FRACTION,
    Clip,
    _background,
    _boxes,
    _leave_frame,
    _render,
    _sample_objects,
)

__all__ = ["SPLITS", "SPLIT_SEEDS", "clip_seed", "generate_clip", "generate_split", "make_clip"]


SPLITS = ("train", "val", "test")


# val and test ignore the caller's seed so that every run scores the same clips. The split's
# index is mixed into the seed sequence too, so train with seed 1 is still not val.
SPLIT_SEEDS = {"val": 1, "test": 2}


_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


def generate_clip(
    rng_or_seed: np.random.Generator | int | Sequence[int],
    *,
    num_frames: int = 8,
    size: tuple[int, int] = (128, 128),
    num_objects: int | None = None,
    num_expressions: int | None = None,
    name: str = "clip",
    no_target: int = 0,
    leaving: bool = False,
) -> Clip:
    """Render one referring clip.

    Arguments:
        rng_or_seed: a ``numpy.random.Generator`` (advanced in place) or a seed for one.
        num_frames: T >= 2 (motion needs two frames).
        size: (H, W), each >= 32.
        num_objects: 1..5; random (weighted towards 2-4) when None.
        num_expressions: how many expressions to aim for (default: random 2..4). Fewer come
            back when the clip cannot support more distinct unambiguous ones (never zero).
        name: stored in ``Clip.name``.
        no_target: add this many expressions that refer to nothing in the clip (category
            ``"no-target"``, ``object_index`` -1, empty masks in every frame).
        leaving: one object crosses the border and is out of the frame for the last (or,
            entering, the first) 1..T/2 frames, where its masks are empty; one appearance or
            motion expression refers to it.

    The defaults draw exactly the clips they always have: the two options take their random
    numbers only when set, so the val and test splits do not change.

    Returns:
        a ``Clip``: frames uint8 [T,H,W,3], masks bool [N,T,H,W], boxes float32 [N,T,4].
    """
    rng = (rng_or_seed if isinstance(rng_or_seed, np.random.Generator)
           else np.random.default_rng(rng_or_seed))
    h, w = (int(size[0]), int(size[1]))
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2 so motion is visible, got {num_frames}")
    if h < 32 or w < 32:
        raise ValueError(f"size must be at least 32x32 pixels, got {h}x{w}")
    if num_objects is not None and not 1 <= num_objects <= MAX_OBJECTS:
        raise ValueError(f"num_objects must be in 1..{MAX_OBJECTS}, got {num_objects}")
    if num_expressions is not None and num_expressions < 1:
        raise ValueError(f"num_expressions must be >= 1, got {num_expressions}")
    if no_target < 0:
        raise ValueError(f"no_target must be >= 0, got {no_target}")
    for _attempt in range(100):
        n = num_objects or int(rng.choice([1, 2, 3, 4, 5], p=[0.08, 0.22, 0.3, 0.25, 0.15]))
        target = num_expressions or int(rng.integers(2, 5))
        # The background gets its own stream, so whether photo textures are installed changes
        # the backgrounds only, never the objects or expressions.
        bg = _background(np.random.default_rng(rng.integers(2**63)), h, w)
        objects = _sample_objects(rng, n, h, w, num_frames)
        leaver = int(rng.integers(n)) if leaving else -1
        if leaving:
            _leave_frame(rng, objects[leaver], h, w, num_frames)
        frames, masks, area = _render(bg, objects, num_frames)
        visible = masks.sum(axis=(2, 3))
        frac = np.where(area > 0, visible / np.maximum(area, 1), 0.0).astype(np.float32)
        for obj, vf in zip(objects, frac, strict=True):
            obj.visible_fraction = vf
        facts = [_Facts.of(o, h, w) for o in objects]
        eligible = [k for k in range(n) if frac[k].min() >= MIN_VISIBLE_FRACTION and k != leaver]
        expressions = _choose_expressions(rng, facts, eligible, target)
        if leaving:
            # The leaver is referred to while it is (mostly) in the picture: it must show half
            # of itself wherever at least a fifth of it is inside the frame.
            full = np.pi * objects[leaver].radii.astype(np.float64) ** 2
            inside = area[leaver] >= 0.2 * full
            if not inside.any() or frac[leaver][inside].min() < MIN_VISIBLE_FRACTION:
                continue
            expr = _leaving_expression(rng, facts, leaver)
            if expr is None:
                continue
            expressions.append(expr)
        if expressions:
            expressions += [_no_target_expression(rng, facts) for _ in range(no_target)]
            return Clip(name=name, frames=frames, masks=masks, boxes=_boxes(masks),
                        objects=objects, expressions=expressions)
    raise RuntimeError("could not generate a clip with an unambiguous expression")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


def clip_seed(split: str, index: int, seed: int | None = 0) -> list[int]:
    """Seed sequence entropy for clip ``index`` of ``split`` (val/test ignore ``seed``)."""
    _check_split(split)
    if index < 0:
        raise ValueError(f"clip index must be >= 0, got {index}")
    base = SPLIT_SEEDS.get(split, 0 if seed is None else int(seed))
    return [_SPLIT_CODE[split], base, int(index)]


def make_clip(split: str, index: int, seed: int | None = 0, **kwargs) -> Clip:
    """Clip ``index`` of a split: the same (split, index, seed) always gives the same clip.

    ``kwargs`` go to ``generate_clip`` (num_frames, size, ...); the clip is named
    ``<split>_<index:05d>``.
    """
    rng = np.random.default_rng(clip_seed(split, index, seed))
    return generate_clip(rng, name=f"{split}_{index:05d}", **kwargs)


def generate_split(split: str, count: int, seed: int | None = None, **kwargs) -> Iterator[Clip]:
    """Clips 0..count-1 of ``split``; val/test ignore ``seed``, train defaults it to 0."""
    _check_split(split)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    for i in range(count):
        yield make_clip(split, i, seed, **kwargs)
