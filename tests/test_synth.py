"""The synthetic referring-video generator: determinism, truthful labels, unambiguous expressions.

The unambiguity check here is independent of the generator's own bookkeeping: each expression's
*text* is parsed back into attributes with a longest-match parser over the phrase tables, and
those attributes are evaluated against every object using geometry the test first verifies
against the rendered masks and pixels.
"""

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from rvos.cli.synth import add_cli_arguments, run_cli
from rvos.data.synth import SPLIT_SEEDS, generate_clip, generate_split, make_clip
from rvos.data.synth_language import (
    CATEGORIES,
    COLOUR_WORDS,
    FILLER_WORDS,
    GENERIC_NOUNS,
    MOTION_ADJECTIVES,
    MOTION_PHRASES,
    REGION_PHRASES,
    RELATION_TEMPLATES,
    SHAPE_WORDS,
    SIZE_WORDS,
    sample_expression_texts,
    vocabulary,
)
from rvos.data.synth_scene import COLOURS, DIRECTIONS, _photo_textures
from rvos.data.synth_split import SynthDataset, read_synth_split, write_split

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clips():
    train = [make_clip("train", i, seed=11) for i in range(30)]
    # Short, non-square clips, as training may ask for.
    train += [make_clip("train", i, seed=12, num_frames=3, size=(96, 160))
              for i in range(10)]
    val = list(generate_split("val", 20))
    return train + val


# ---------------------------------------------------------------------------------------------
# A parser from text back to attributes


def _phrase_table() -> dict[str, tuple[str, object]]:
    table: dict[str, tuple[str, object]] = {}
    for colour, words in COLOUR_WORDS.items():
        table.update(dict.fromkeys(words, ("colour", colour)))
    for shape, pairs in SHAPE_WORDS.items():
        for sing, plur in pairs:
            table[sing] = table[plur] = ("shape", shape)
    for sing, plur in GENERIC_NOUNS:
        table[sing] = table[plur] = ("generic", None)
    for size, words in SIZE_WORDS.items():
        table.update(dict.fromkeys(words, ("size", size)))
    for region, phrases in REGION_PHRASES.items():
        table.update(dict.fromkeys(phrases, ("region", region)))
    for motion, phrases in MOTION_PHRASES.items():
        table.update(dict.fromkeys(phrases, ("motion", motion)))
    for motion, words in MOTION_ADJECTIVES.items():
        table.update(dict.fromkeys(words, ("motion", motion)))
    for relation, forms in RELATION_TEMPLATES.items():
        for form, templates in forms.items():
            for tpl in templates:
                for part in tpl.replace("{nps}", "|").replace("{np}", "|").split("|"):
                    words = part.split()
                    if words and words[0] == "the":
                        words = words[1:]
                    if words:
                        key = " ".join(words)
                        assert table.get(key, ("relation", (relation, form))) == (
                            "relation", (relation, form)), f"phrase {key!r} means two things"
                        table[key] = ("relation", (relation, form))
    return table


PHRASES = _phrase_table()
MAX_WORDS = max(len(p.split()) for p in PHRASES)


def parse(text: str) -> dict:
    """Greedy longest-match parse; every leftover word must be a connecting word."""
    words = text.split()
    out: dict = {}
    i = 0
    while i < len(words):
        for n in range(min(MAX_WORDS, len(words) - i), 0, -1):
            key = " ".join(words[i:i + n])
            if key in PHRASES:
                field, value = PHRASES[key]
                assert field == "generic" or field not in out, f"{text!r}: two {field}s"
                out[field] = value
                i += n
                break
        else:
            assert words[i] in FILLER_WORDS, f"{text!r}: unexpected word {words[i]!r}"
            i += 1
    return out


# ---------------------------------------------------------------------------------------------
# Independent geometry


def unoccluded(clip, k, t) -> bool:
    """No other object touches object k in frame t (so nothing can be covering it)."""
    if not clip.masks[k, t].any():
        return False  # entirely hidden
    grown = cv2.dilate(clip.masks[k, t].astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    others = np.delete(clip.masks[:, t], k, axis=0).any(axis=0)
    return not (grown & others).any()


def nearest_colour(rgb) -> str:
    names = list(COLOURS)
    dist = [np.linalg.norm(np.asarray(rgb) - COLOURS[c]) for c in names]
    return names[int(np.argmin(dist))]


class Geometry:
    def __init__(self, clip, k):
        o = clip.objects[k]
        h, w = clip.frames.shape[1:3]
        self.colour, self.shape, self.size = o.colour, o.shape, o.size
        self.x = o.centers[:, 0] / w
        self.y = o.centers[:, 1] / h
        self.r = o.radii.astype(np.float64)
        steps = np.diff(o.centers.astype(np.float64), axis=0)
        self.steps = steps
        self.displacement = float(np.linalg.norm(o.centers[-1] - o.centers[0])) / min(h, w)
        self.max_offset = float(np.linalg.norm(o.centers - o.centers[0], axis=1).max()) / min(h, w)
        self.bounces = bool((np.sign(steps[1:]) * np.sign(steps[:-1]) < 0).any())
        self.scaling = bool(np.ptp(self.r) > 1e-3)

    def noun(self, attrs) -> bool:
        return attrs.get("colour", self.colour) == self.colour and attrs.get(
            "shape", self.shape) == self.shape

    # Referent: clearly described. Others: clearly not.
    def region(self, region, clearly: bool) -> bool:
        h, v = region
        if h == "middle":
            if clearly:
                return bool(np.all(np.abs(self.x - 0.5) <= 0.15)
                            and np.all(np.abs(self.y - 0.5) <= 0.15))
            return bool(np.any((np.abs(self.x - 0.5) < 0.15) & (np.abs(self.y - 0.5) < 0.15)))
        ok = True
        for coord, side, low in ((self.x, h, "left"), (self.y, v, "top")):
            if side is None:
                continue
            signed = coord if side == low else 1 - coord
            ok &= bool(np.all(signed <= 0.4)) if clearly else bool(np.any(signed < 0.45))
        return ok

    def motion(self, motion, clearly: bool) -> bool:
        if motion == "still":
            return (self.max_offset < 1e-3 and not self.scaling) if clearly else (
                self.max_offset < 0.05)
        if motion in ("growing", "shrinking"):
            ratio = self.r[-1] / self.r[0]
            grows = motion == "growing"
            if clearly:
                return bool(np.all(np.diff(self.r) > 0 if grows else np.diff(self.r) < 0)
                            and (ratio >= 1.5 if grows else ratio <= 1 / 1.5))
            return ratio > 1.05 if grows else ratio < 1 / 1.05
        if motion == "bouncing":
            return self.bounces
        d = np.array(DIRECTIONS[motion])
        cos = self.steps @ d / np.maximum(np.linalg.norm(self.steps, axis=1), 1e-9)
        if clearly:
            return bool(np.all(cos > 0.99) and self.displacement >= 0.15 and not self.bounces)
        return bool(np.any(cos > 0.6))

    def beats(self, other, relation) -> bool:
        if relation == "largest":
            return self.r.min() >= 1.2 * other.r.max()
        if relation == "smallest":
            return self.r.max() * 1.2 <= other.r.min()
        ours, theirs, sign = {
            "leftmost": (self.x, other.x, 1), "rightmost": (self.x, other.x, -1),
            "topmost": (self.y, other.y, 1), "bottommost": (self.y, other.y, -1),
        }[relation]
        return bool(np.all(sign * (theirs - ours) >= 0.1))


def describes(g: Geometry, attrs: dict, clearly: bool) -> bool:
    if not g.noun(attrs):
        return False
    if "size" in attrs:
        if clearly and (g.scaling or g.size != attrs["size"]):
            return False
        if not clearly and not g.scaling and g.size != attrs["size"]:
            return False
    if "region" in attrs and not g.region(attrs["region"], clearly):
        return False
    return not ("motion" in attrs and not g.motion(attrs["motion"], clearly))


# ---------------------------------------------------------------------------------------------
# Determinism


def test_same_split_index_seed_gives_identical_clip():
    a = make_clip("train", 7, seed=3)
    b = make_clip("train", 7, seed=3)
    assert a.frames.tobytes() == b.frames.tobytes()
    assert a.masks.tobytes() == b.masks.tobytes()
    assert a.boxes.tobytes() == b.boxes.tobytes()
    assert a.expressions == b.expressions


def test_different_seed_or_index_gives_different_clip():
    a = make_clip("train", 7, seed=3)
    assert a.frames.tobytes() != make_clip("train", 7, seed=4).frames.tobytes()
    assert a.frames.tobytes() != make_clip("train", 8, seed=3).frames.tobytes()


def test_val_and_test_ignore_seed_and_differ_from_train():
    v = make_clip("val", 2, seed=0)
    assert v.frames.tobytes() == make_clip("val", 2, seed=123).frames.tobytes()
    assert [c.name for c in generate_split("test", 2, seed=9)] == ["test_00000", "test_00001"]
    # Even the train seed equal to val's fixed seed draws different clips.
    seed = SPLIT_SEEDS["val"]
    assert v.frames.tobytes() != make_clip("train", 2, seed=seed).frames.tobytes()
    assert v.frames.tobytes() != make_clip("test", 2).frames.tobytes()


def test_generator_and_seed_arguments():
    a = generate_clip(np.random.default_rng(5), num_frames=3, size=(96, 160))
    b = generate_clip(5, num_frames=3, size=(96, 160))
    assert a.frames.shape == (3, 96, 160, 3) and a.frames.tobytes() == b.frames.tobytes()
    n = len(a.objects)
    assert a.masks.shape == (n, 3, 96, 160) and a.boxes.shape == (n, 3, 4)
    assert a.frames.dtype == np.uint8 and a.masks.dtype == bool and a.boxes.dtype == np.float32


def test_missing_photo_textures_change_only_backgrounds(monkeypatch):
    from rvos.data import synth_scene as synth

    with_photos = [make_clip("val", i) for i in range(12)]
    monkeypatch.setattr(synth, "_PHOTOS", [])
    without = [make_clip("val", i) for i in range(12)]
    for a, b in zip(with_photos, without, strict=True):
        assert a.masks.tobytes() == b.masks.tobytes()
        assert a.expressions == b.expressions
    monkeypatch.undo()
    if _photo_textures():
        assert any(a.frames.tobytes() != b.frames.tobytes()
                   for a, b in zip(with_photos, without, strict=True))


# ---------------------------------------------------------------------------------------------
# Truthful labels


def test_boxes_are_the_visible_masks_extent(clips):
    for clip in clips:
        for k in range(len(clip.objects)):
            for t in range(clip.num_frames):
                ys, xs = np.nonzero(clip.masks[k, t])
                if xs.size == 0:
                    assert clip.boxes[k, t].tolist() == [0, 0, 0, 0]
                else:
                    expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                    assert clip.boxes[k, t].tolist() == expected


def test_visible_masks_never_overlap(clips):
    for clip in clips:
        assert clip.masks.sum(axis=0).max() <= 1


def test_centres_radii_and_colours_match_the_pixels(clips):
    checked = 0
    for clip in clips:
        for k, o in enumerate(clip.objects):
            for t in range(clip.num_frames):
                if not unoccluded(clip, k, t):
                    continue
                m = clip.masks[k, t]
                ys, xs = np.nonzero(m)
                assert abs(xs.size - math.pi * o.radii[t] ** 2) <= 0.1 * xs.size + 4
                # Pixel (i, j) spans [j, j+1) x [i, i+1), so its centre is at +0.5.
                assert abs(xs.mean() + 0.5 - o.centers[t, 0]) < 0.6
                assert abs(ys.mean() + 0.5 - o.centers[t, 1]) < 0.6
                # Away from the dark rim and the anti-aliased edge, the fill names the colour.
                core = cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=3) > 0
                if core.sum() >= 5:
                    assert nearest_colour(clip.frames[t][core].mean(axis=0)) == o.colour
                    checked += 1
    assert checked > 200


def test_objects_stay_inside_the_frame(clips):
    for clip in clips:
        h, w = clip.frames.shape[1:3]
        for o in clip.objects:
            assert np.all(o.centers >= 0) and np.all(o.centers[:, 0] <= w)
            assert np.all(o.centers[:, 1] <= h)
            # Nothing touches the border except objects that bounce off it.
            if o.motion != "bouncing":
                k = clip.objects.index(o)
                border = np.concatenate([clip.masks[k][:, 0], clip.masks[k][:, -1],
                                         clip.masks[k][:, :, 0], clip.masks[k][:, :, -1]], axis=1)
                assert not border.any()


# ---------------------------------------------------------------------------------------------
# Expressions


def test_text_says_exactly_what_the_predicate_says(clips):
    for clip in clips:
        for e in clip.expressions:
            attrs = parse(e.text)
            p = e.predicate
            assert attrs.get("colour") == p.colour, e.text
            assert attrs.get("shape") == p.shape, e.text
            assert attrs.get("size") == p.size, e.text
            region = (p.h_pos, p.v_pos) if p.h_pos or p.v_pos else None
            assert attrs.get("region") == region, e.text
            assert attrs.get("motion") == p.motion, e.text
            assert (attrs["relation"][0] if "relation" in attrs else None) == p.relation, e.text
            assert e.category == p.category


def test_every_expression_is_unambiguous(clips):
    for clip in clips:
        geo = [Geometry(clip, k) for k in range(len(clip.objects))]
        for e in clip.expressions:
            attrs = parse(e.text)
            k = e.object_index
            ref, others = geo[k], [g for i, g in enumerate(geo) if i != k]
            if "relation" in attrs:
                relation, form = attrs["relation"]
                rivals = [g for g in others if g.noun(attrs)]
                assert ref.noun(attrs), e.text
                assert rivals, f"{e.text!r}: nothing to compare with"
                if form == "pair":
                    assert len(rivals) == 1, f"{e.text!r} presupposes exactly two"
                assert all(ref.beats(g, relation) for g in rivals), e.text
            else:
                assert describes(ref, attrs, clearly=True), f"{clip.name}: {e.text!r}"
                confusable = [i for i, g in enumerate(geo)
                              if i != k and describes(g, attrs, clearly=False)]
                assert not confusable, f"{clip.name}: {e.text!r} also fits objects {confusable}"


def test_referred_objects_stay_visible(clips):
    for clip in clips:
        for e in clip.expressions:
            o = clip.objects[e.object_index]
            area = clip.masks[e.object_index].sum(axis=(1, 2))
            assert np.all(area >= 0.45 * math.pi * o.radii**2), (clip.name, e.text)


def test_expressions_per_clip_and_categories(clips):
    counts = [len(c.expressions) for c in clips]
    assert min(counts) >= 1 and max(counts) <= 4
    assert np.mean(np.array(counts) >= 2) > 0.8
    for split_clips in (clips[:40], clips[40:]):
        cats = {e.category for c in split_clips for e in c.expressions}
        assert cats == set(CATEGORIES)
    # Expressions in a clip mostly refer to different objects.
    multi = [c for c in clips if len(c.objects) >= len(c.expressions) >= 2]
    distinct = [len({e.object_index for e in c.expressions}) == len(c.expressions) for c in multi]
    assert np.mean(distinct) > 0.5


def test_generated_words_are_in_the_vocabulary(clips):
    vocab = set(vocabulary())
    texts = [e.text for c in clips for e in c.expressions] + sample_expression_texts(300)
    for text in texts:
        assert set(text.split()) <= vocab, text
    for words in COLOUR_WORDS.values():
        assert set(words) <= vocab


def test_sample_expression_texts_is_seeded():
    a = sample_expression_texts(50, seed=1)
    assert a == sample_expression_texts(50, seed=1)
    assert a != sample_expression_texts(50, seed=2)
    assert len(a) == 50 and all(a)


# ---------------------------------------------------------------------------------------------
# API edges


def test_dataset_view():
    ds = SynthDataset("val", 3)
    assert len(ds) == 3
    assert ds[1].frames.tobytes() == make_clip("val", 1).frames.tobytes()
    with pytest.raises(IndexError):
        ds[3]
    train = SynthDataset("train", 2, seed=4, num_frames=3)
    assert train[10].frames.shape[0] == 3  # train clips can be drawn past len()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"num_frames": 1}, "num_frames"), ({"size": (16, 128)}, "size"),
     ({"num_objects": 6}, "num_objects"), ({"num_expressions": 0}, "num_expressions")],
)
def test_bad_clip_settings_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_clip(0, **kwargs)


def test_bad_split_is_value_error():
    with pytest.raises(ValueError, match="split must be one of"):
        make_clip("training", 0)
    with pytest.raises(ValueError, match="index"):
        make_clip("train", -1)


def test_fixed_object_count():
    for n in (1, 5):
        assert len(generate_clip(n, num_objects=n).objects) == n


# ---------------------------------------------------------------------------------------------
# Folders and CLI


def test_write_read_round_trip(tmp_path):
    out = write_split(tmp_path / "val", "val", 3)
    clips = list(generate_split("val", 3))
    videos = read_synth_split(out)
    assert [v.name for v in videos] == [c.name for c in clips]
    meta = json.loads((out / "expressions.json").read_text())
    for clip, video in zip(clips, videos, strict=True):
        assert video.frame_names == [f"{i:05d}" for i in range(clip.num_frames)]
        assert meta["videos"][clip.name]["frames"] == video.frame_names
        # JPEG quality 95 keeps frames close.
        assert np.abs(video.frames.astype(int) - clip.frames).mean() < 3
        assert [e.text for e in video.expressions] == [e.text for e in clip.expressions]
        for got, want in zip(video.expressions, clip.expressions, strict=True):
            assert (got.category, got.obj_id) == (want.category, want.object_index)
            np.testing.assert_array_equal(got.masks, clip.masks[want.object_index])
    png = cv2.imread(str(out / "Annotations" / "val_00000" / "0" / "00000.png"),
                     cv2.IMREAD_UNCHANGED)
    assert png.ndim == 2 and set(np.unique(png)) <= {0, 255}
    assert (out / "JPEGImages" / "val_00002" / "00007.jpg").is_file()


def test_read_split_without_index_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="rvos synth"):
        read_synth_split(tmp_path)


def _cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    return parser.parse_args(argv)


def test_run_cli_writes_a_split_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "s"
    args = _cli_args("--split", "train", "--count", "2", "--seed", "5", "--out", str(out),
                     "--frames", "3")
    assert run_cli(args) == 0
    assert len(read_synth_split(out)) == 2
    assert run_cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert "already holds a split" in err and len(err.splitlines()) == 1
    assert run_cli(_cli_args("--count", "0", "--out", str(tmp_path / "z"))) == 2


@pytest.mark.skipif(not (REPO / "rvos" / "cli" / "main.py").is_file(),
                    reason="rvos/cli/main.py not written yet")
def test_cli_subprocess(tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "rvos", "synth", "--split", "test", "--count", "2", "--out",
         str(out)], cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert [v.name for v in read_synth_split(out)] == ["test_00000", "test_00001"]
