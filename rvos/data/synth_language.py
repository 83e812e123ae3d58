"""The synthetic data's language: predicates over objects and the referring expressions that single
one out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from rvos.data.synth_scene import (
    COLOURS,
    DIRECTIONS,
    MIN_VISIBLE_FRACTION,
    MOTIONS,
    SHAPES,
    SIZES,
    Clip,
    Expression,
    Predicate,
    SynthObject,
)

__all__ = [
    "CATEGORIES",
    "NO_TARGET",
    "annotated_expressions",
    "describe_object",
    "sample_expression_texts",
    "vocabulary",
]


CATEGORIES = ("appearance", "position", "motion", "comparison")


# The category of an expression that refers to nothing in its clip (``object_index == -1``).
NO_TARGET = "no-target"


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


SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium", "medium sized", "mid sized"),
    "large": ("large", "big", "huge"),
}


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


def _no_target_expression(rng: np.random.Generator, facts: list[_Facts]) -> Expression:
    """An expression whose noun (a colour, a shape, or both) fits no object of the clip, so it
    refers to nothing however the rest of it reads. Mostly the hard case: a colour and a shape
    that are each in the clip, but never on one object ("the green star" next to a green circle
    and a red star). Sometimes a size, place, motion or comparison is added, as the referring
    expressions have them."""
    objs = [f.obj for f in facts]
    colours = {o.colour for o in objs}
    shapes = {o.shape for o in objs}
    pairs = {(o.colour, o.shape) for o in objs}
    absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in pairs]
    hard = [(c, s) for c, s in absent if c in colours and s in shapes]
    near = [(c, s) for c, s in absent if c in colours or s in shapes]
    r = rng.random()
    if r < 0.6 and (hard or near):
        colour, shape = (hard or near)[int(rng.integers(len(hard or near)))]
    elif r < 0.8 and len(colours) < len(COLOURS):
        free = [c for c in COLOURS if c not in colours]
        colour, shape = free[int(rng.integers(len(free)))], None
    elif len(shapes) < len(SHAPES):
        free = [s for s in SHAPES if s not in shapes]
        colour, shape = None, free[int(rng.integers(len(free)))]
    else:
        colour, shape = absent[int(rng.integers(len(absent)))]
    extra = rng.random()
    if extra < 0.4:
        pred = Predicate(colour=colour, shape=shape)
    elif extra < 0.55:
        pred = Predicate(colour=colour, shape=shape, size=_pick(rng, SIZES))
    elif extra < 0.7:
        h, v = list(REGION_PHRASES)[int(rng.integers(len(REGION_PHRASES)))]
        pred = Predicate(colour=colour, shape=shape, h_pos=h, v_pos=v)
    elif extra < 0.85:
        pred = Predicate(colour=colour, shape=shape, motion=_pick(rng, MOTIONS))
    else:
        pred = Predicate(colour=colour, shape=shape, relation=_pick(rng, RELATIONS))
    assert not any(_noun_holds(f, pred) for f in facts)
    return Expression(text=_render_text(rng, pred, pair=False), category=NO_TARGET,
                      object_index=-1, predicate=pred)


def _leaving_expression(
    rng: np.random.Generator, facts: list[_Facts], k: int
) -> Expression | None:
    """An unambiguous appearance or motion expression for object ``k``, which leaves (or enters)
    the frame; None if it has none. Position and comparison are not used: their geometry
    would be judged partly outside the picture."""
    cands = {cat: preds for cat, preds in _candidates(facts, k).items()
             if preds and cat in ("appearance", "motion")}
    if not cands:
        return None
    cat = list(cands)[int(rng.integers(len(cands)))]
    weights = np.array([_weight(facts, k, p) for p in cands[cat]])
    pred = cands[cat][int(rng.choice(len(weights), p=weights / weights.sum()))]
    rivals = sum(_noun_holds(f, pred) for f in facts) - 1
    return Expression(text=_render_text(rng, pred, pair=rivals == 1), category=cat,
                      object_index=k, predicate=pred)


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
