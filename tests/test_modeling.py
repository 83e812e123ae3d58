"""The network, module by module, on tiny configurations (width 32, 1-2 layers, a 1-layer
RoBERTa of width 32 with a byte-level BPE tokenizer trained in the test session).

The released-size architecture is checked against the official key layout in
test_checkpoint.py and against the original implementation's numbers in test_parity.py.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rvos.modeling.deformable_attention import (
    MSDeformAttn,
    ms_deform_attn_gather,
    ms_deform_attn_grid_sample,
    ms_deform_attn_sample,
)
from rvos.modeling.mask_head import dynamic_masks, dynamic_param_count
from rvos.modeling.position import PositionEmbeddingSine1D, PositionEmbeddingSine2D
from rvos.modeling.transformer import Encoder, ffn_residual_norm, inverse_sigmoid

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

OUTPUT_KEYS = ("pred_logits", "pred_boxes", "pred_masks", "reference_points")
SHORT = "the red ball"
LONG = "the small red ball on the left of the big blue box"


def clip(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def ceil_halvings(size: int, times: int) -> int:
    """Feature size after ``times`` stride-2 layers (kernel 3 or 7, 'same' padding)."""
    for _ in range(times):
        size = math.ceil(size / 2)
    return size


def assert_outputs_close(got: dict, want: dict, atol: float = 1e-5) -> None:
    for key in OUTPUT_KEYS:
        assert got[key].shape == want[key].shape, key
        err = (got[key] - want[key]).abs().max().item()
        assert err <= atol, f"{key}: max difference {err:.2e}"


@pytest.fixture(scope="module")
def model(make_tiny_model):
    return make_tiny_model()


# -------------------------------------------------------------------------- whole model
@pytest.mark.parametrize(("backbone", "shape", "num_captions"), [
    ("small3d", (3, 3, 61, 77), 1),      # one video [T, 3, H, W], odd sizes
    ("small3d", (2, 3, 3, 61, 77), 2),   # a batch [B, T, 3, H, W]
    ("small3d", (1, 3, 64, 48), 1),      # one frame, portrait
    ("resnet50", (2, 1, 3, 61, 77), 2),  # the released backbone at a tiny size, T = 1
])
def test_output_shapes(make_tiny_model, backbone, shape, num_captions):
    model = make_tiny_model(backbone) if backbone != "small3d" else make_tiny_model()
    captions = [SHORT, LONG][:num_captions]
    with torch.no_grad():
        out = model(clip(*shape), captions)
    b, t = (1, shape[0]) if len(shape) == 4 else shape[:2]
    h, w = shape[-2:]
    q = model.config.num_queries
    assert out["pred_logits"].shape == (b, t, q, 1)
    assert out["pred_boxes"].shape == (b, t, q, 4)
    assert out["pred_masks"].shape == (b, t, q, math.ceil(h / 4), math.ceil(w / 4))
    assert out["reference_points"].shape == (b, t, q, 2)
    assert "aux_outputs" not in out and "attention" not in out
    for key in OUTPUT_KEYS:
        assert torch.isfinite(out[key]).all(), key
    for key in ("pred_boxes", "reference_points"):
        assert out[key].min() >= 0 and out[key].max() <= 1, key


def test_every_decoder_layer_reports_its_boxes_and_scores_the_last_being_the_answer(model):
    with torch.no_grad():
        out = model(clip(4, 3, 61, 77), [SHORT])
    layers = model.config.dec_layers
    q = model.config.num_queries
    assert out["layer_boxes"].shape == (layers, 1, 4, q, 4)
    assert out["layer_logits"].shape == (layers, 1, 4, q, 1)
    torch.testing.assert_close(out["layer_boxes"][-1], out["pred_boxes"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out["layer_logits"][-1], out["pred_logits"], atol=1e-6, rtol=0)
    # Refinement moves the boxes: the first layer's are not the last layer's.
    assert (out["layer_boxes"][0] - out["layer_boxes"][-1]).abs().max() > 1e-3


def test_backbone_feature_sizes_are_ceil_divisions(make_tiny_model):
    model = make_tiny_model("resnet50")
    with torch.no_grad():
        features = model.backbone(clip(2, 3, 61, 77), 2)
    for f, stride, channels in zip(features, model.backbone.strides,
                                   model.backbone.num_channels, strict=True):
        assert f.shape == (2, channels, math.ceil(61 / stride), math.ceil(77 / stride))


def test_caption_outputs_do_not_change_when_batched_with_a_longer_caption(model):
    """Padding is masked everywhere words are read (RoBERTa, early fusion, the FPN, the
    word position embedding): the short caption's results are the same alone and padded."""
    frames = clip(2, 3, 40, 56)
    tokens = model.tokenizer([SHORT, LONG], padding="longest", return_tensors="pt")
    assert tokens["attention_mask"][0].eq(0).any(), "the short caption must be padded"
    with torch.no_grad():
        alone = model(frames, [SHORT])
        batched = model(torch.stack([frames, frames]), [SHORT, LONG])
    assert_outputs_close({k: v[:1] for k, v in batched.items()}, alone)
    # ...while the caption does matter.
    assert not torch.allclose(batched["pred_masks"][0], batched["pred_masks"][1], atol=1e-3)


def test_videos_of_a_batch_are_independent(model):
    a, b = clip(2, 3, 40, 56, seed=1), clip(2, 3, 40, 56, seed=2)
    with torch.no_grad():
        batched = model(torch.stack([a, b]), [SHORT, LONG])
        second = model(b, [LONG])
    assert_outputs_close({k: v[1:] for k, v in batched.items()}, second)


def test_encode_video_then_decode_several_captions_equals_separate_forwards(model):
    frames = clip(3, 3, 40, 56)
    captions = [SHORT, LONG, "a dog running on the grass"]
    with torch.no_grad():
        features = model.encode_video(frames)
        together = model.decode(features, captions)
        for i, caption in enumerate(captions):
            alone = model(frames, [caption])
            assert_outputs_close({k: v[i:i + 1] for k, v in together.items()}, alone)


def test_return_attention_changes_no_output_and_has_the_documented_shapes(model):
    frames = clip(2, 2, 3, 61, 77)
    captions = [SHORT, LONG]
    with torch.no_grad():
        plain = model(frames, captions)
        out = model(frames, captions, return_attention=True)
    for key in OUTPUT_KEYS:
        assert torch.equal(out[key], plain[key]), key

    att = out["attention"]
    b, t, q = 2, 2, model.config.num_queries
    tokens = model.tokenizer(captions, padding="longest", return_tensors="pt")
    length = tokens["input_ids"].shape[1]
    assert torch.equal(att["input_ids"], tokens["input_ids"])
    assert torch.equal(att["word_mask"], tokens["attention_mask"].eq(0))

    # Early fusion at strides 8, 16, 32, 64; the FPN at strides 4, 8, 16, 32.
    fusion_sizes = [(ceil_halvings(61, k), ceil_halvings(77, k)) for k in (3, 4, 5, 6)]
    fpn_sizes = [(ceil_halvings(61, k), ceil_halvings(77, k)) for k in (2, 3, 4, 5)]
    for name, sizes in (("fusion", fusion_sizes), ("fpn", fpn_sizes)):
        assert [tuple(a.shape) for a in att[name]] == [(b, t, h, w, length) for h, w in sizes]
        for a in att[name]:
            # A distribution over the caption's words, none on padding.
            torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:-1]))
            assert a[0][..., att["word_mask"][0]].abs().max() == 0

    # Per head: each head is a distribution of its own, and their mean is the map above.
    for name, sizes, heads in (("fusion", fusion_sizes, model.config.fusion_nheads),
                               ("fpn", fpn_sizes, model.config.fpn_nheads)):
        per_heads = att[f"{name}_heads"]
        assert [tuple(a.shape) for a in per_heads] == [(b, heads, t, h, w, length)
                                                       for h, w in sizes]
        for per_head, mean in zip(per_heads, att[name], strict=True):
            torch.testing.assert_close(per_head.sum(-1), torch.ones(per_head.shape[:-1]))
            torch.testing.assert_close(per_head.mean(1), mean)
        assert not torch.allclose(per_heads[0][:, 0], per_heads[0][:, 1])

    heads, levels = model.config.nheads, model.config.num_feature_levels
    points = model.config.dec_n_points
    assert att["sampling_locations"].shape == (b, t, q, heads, levels, points, 2)
    assert att["sampling_weights"].shape == (b, t, q, heads, levels, points)
    torch.testing.assert_close(att["sampling_weights"].sum((-1, -2)), torch.ones(b, t, q, heads))


def test_train_mode_returns_aux_outputs_of_the_earlier_decoder_layers(make_tiny_model):
    model = make_tiny_model(dec_layers=3).train()
    out = model(clip(2, 3, 40, 56), [SHORT])
    aux = out["aux_outputs"]
    assert len(aux) == model.config.dec_layers - 1
    for layer in aux:
        assert set(layer) == {"pred_logits", "pred_boxes", "pred_masks"}
        for key in layer:
            assert layer[key].shape == out[key].shape
    assert not torch.allclose(aux[-1]["pred_masks"], out["pred_masks"])
    out["pred_masks"].sum().backward()  # the graph is intact
    assert model.controller.layers[0].weight.grad is not None


def test_model_without_tokenizer_says_how_to_get_one(make_tiny_model):
    model = make_tiny_model()
    model.tokenizer = None
    with pytest.raises(RuntimeError, match="no tokenizer; load it with load_official"):
        model(clip(1, 3, 32, 32), [SHORT])


# -------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("frames", "captions", "error", "message"), [
    (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), [SHORT], TypeError,
     r"normalised float tensor, got torch.uint8; use rvos.modeling.processing.preprocess"),
    (torch.zeros(3, 32, 32), [SHORT], ValueError,
     r"frames must be \[T, 3, H, W\] or \[B, T, 3, H, W\], got shape \(3, 32, 32\)"),
    (torch.zeros(2, 32, 32, 3), [SHORT], ValueError, r"got shape \(1, 2, 32, 32, 3\)"),
    (torch.zeros(0, 3, 32, 32), [SHORT], ValueError, r"no frame \(T = 0\)"),
    (torch.zeros(2, 3, 32, 32).numpy(), [SHORT], TypeError, "must be a torch.Tensor"),
    (torch.zeros(2, 3, 32, 32), [], ValueError, "expected 1 caption.*got 0"),
    (torch.zeros(2, 2, 3, 32, 32), [SHORT], ValueError, "expected 2 caption.*got 1"),
    (torch.zeros(2, 3, 32, 32), [""], ValueError, "every caption must be a non-empty string"),
    (torch.zeros(2, 3, 32, 32), ["   "], ValueError, "every caption must be a non-empty string"),
    (torch.zeros(2, 3, 32, 32), [None], ValueError, "every caption must be a non-empty string"),
])
def test_bad_input_is_named(model, frames, captions, error, message):
    with pytest.raises(error, match=message):
        model(frames, captions)


def test_decode_with_no_caption_is_refused(model):
    with torch.no_grad():
        features = model.encode_video(clip(1, 3, 32, 32))
    with pytest.raises(ValueError, match="0 captions for 1 videos"):
        model.decode(features, [])


# -------------------------------------------------------------------------- position embeddings
def _sine(angles: torch.Tensor, num_feats: int, temperature: float = 10000.0) -> torch.Tensor:
    """Channel 2k: sin(a / T^(2k/F)); channel 2k+1: cos of the same angle."""
    out = torch.empty(*angles.shape, num_feats)
    for c in range(num_feats):
        freq = temperature ** (2 * (c // 2) / num_feats)
        out[..., c] = torch.sin(angles / freq) if c % 2 == 0 else torch.cos(angles / freq)
    return out


def test_2d_position_embedding_by_hand():
    h, w, feats = 3, 5, 6
    pos = PositionEmbeddingSine2D(feats)(torch.zeros(1, h, w, dtype=torch.bool))
    assert pos.shape == (1, 2 * feats, h, w)
    # Pixel centres of the map, normalised to (0, 2π): y first, then x.
    ys = (torch.arange(h) + 0.5) / h * 2 * math.pi
    xs = (torch.arange(w) + 0.5) / w * 2 * math.pi
    want_y = _sine(ys, feats)[:, None, :].expand(h, w, feats)
    want_x = _sine(xs, feats)[None, :, :].expand(h, w, feats)
    want = torch.cat([want_y, want_x], -1).permute(2, 0, 1)
    torch.testing.assert_close(pos[0], want, atol=1e-5, rtol=0)


def test_2d_position_embedding_counts_only_the_image_part():
    mask = torch.zeros(1, 6, 8, dtype=torch.bool)
    mask[:, 4:, :] = True
    mask[:, :, 5:] = True
    embed = PositionEmbeddingSine2D(8)
    padded = embed(mask)
    alone = embed(torch.zeros(1, 4, 5, dtype=torch.bool))
    torch.testing.assert_close(padded[..., :4, :5], alone)


def test_1d_position_embedding_by_hand_and_ignores_padding():
    embed = PositionEmbeddingSine1D(8)
    mask = torch.tensor([[False] * 4 + [True] * 3, [False] * 7])
    pos = embed(mask)
    assert pos.shape == (2, 7, 8)
    for row, n in ((0, 4), (1, 7)):
        # Word i of n at (i + 1) / n of the way to 2π.
        angles = (torch.arange(n) + 1) / n * 2 * math.pi
        torch.testing.assert_close(pos[row, :n], _sine(angles, 8), atol=1e-5, rtol=0)


# -------------------------------------------------------------------------- deformable attention
def _value_map(h: int = 3, w: int = 4) -> torch.Tensor:
    """v[y, x] = 10·y + x + 1, as [N=1, S=h·w, M=1, D=1]."""
    v = (10 * torch.arange(h)[:, None] + torch.arange(w)[None, :] + 1).float()
    return v.reshape(1, h * w, 1, 1)


def _sample_points(value, shapes, points_xy):
    """One query per point, one head, one level, one point of weight 1."""
    loc = torch.tensor(points_xy, dtype=torch.float32).view(1, -1, 1, 1, 1, 2)
    weights = torch.ones(1, loc.shape[1], 1, 1, 1)
    return ms_deform_attn_sample(value, torch.tensor(shapes), loc, weights)[0, :, 0]


def test_deformable_sampling_is_bilinear_with_zero_padding():
    h, w = 3, 4

    def centre(y: float, x: float) -> tuple[float, float]:
        return ((x + 0.5) / w, (y + 0.5) / h)

    got = _sample_points(_value_map(h, w), [[h, w]], [
        centre(1, 2),           # a pixel centre: that pixel, 10·1 + 2 + 1
        centre(1, 1.5),         # half-way between two centres: their mean
        centre(0.5, 0.5),       # between four centres: their mean
        (0.0, centre(2, 0)[1]),  # on the left border: half the edge pixel (zero outside)
        centre(1, -1),          # one pixel outside: zero
        (1.5, 0.5),             # far outside: zero
    ])
    want = torch.tensor([13.0, 12.5, (1 + 2 + 11 + 12) / 4, 21 / 2, 0.0, 0.0])
    torch.testing.assert_close(got, want)


def test_deformable_sampling_mixes_levels_and_heads_with_the_weights():
    # Two levels (3×4 and 1×2), two heads of width 2: head m, channel d holds (m + 1)·v + d.
    shapes = [[3, 4], [1, 2]]
    v0, v1 = _value_map(3, 4)[0, :, 0, 0], torch.tensor([100.0, 200.0])
    base = torch.cat([v0, v1])  # [S]
    value = torch.stack([torch.stack([(m + 1) * base + d for d in range(2)], -1)
                         for m in range(2)], 1)[None]  # [1, S, M=2, D=2]
    # Head m samples level 0 at pixel (1, 2) and level 1 at its second pixel, weighted.
    loc = torch.tensor([[(2.5 / 4, 1.5 / 3)], [(0.75, 0.5)]]).view(1, 1, 1, 2, 1, 2)
    loc = loc.expand(1, 1, 2, 2, 1, 2)
    weights = torch.tensor([[0.25, 0.75], [0.6, 0.4]]).view(1, 1, 2, 2, 1)
    out = ms_deform_attn_sample(value, torch.tensor(shapes), loc, weights)
    assert out.shape == (1, 1, 4)
    want = []
    for m, (a, b) in enumerate([(0.25, 0.75), (0.6, 0.4)]):
        want += [a * ((m + 1) * 13 + d) + b * ((m + 1) * 200 + d) for d in range(2)]
    torch.testing.assert_close(out[0, 0], torch.tensor(want))


def _identity_attention(offset_xy: tuple[float, float]) -> MSDeformAttn:
    """1 head, 1 level, 1 point, width 2; identity projections, a fixed offset (pixels)."""
    attn = MSDeformAttn(d_model=2, n_levels=1, n_heads=1, n_points=1)
    with torch.no_grad():
        for layer in (attn.value_proj, attn.output_proj):
            layer.weight.copy_(torch.eye(2))
            layer.bias.zero_()
        attn.sampling_offsets.weight.zero_()
        attn.sampling_offsets.bias.copy_(torch.tensor(offset_xy))
    return attn


@pytest.mark.parametrize(("offset", "expected"), [((1.0, 0.0), 13.0), ((0.0, 1.0), 22.0),
                                                  ((-1.0, -1.0), 1.0)])
def test_deformable_offsets_are_pixels_of_the_level_around_a_point(offset, expected):
    """Reference at the centre of pixel (y=1, x=1) of a 3×4 map (value 12)."""
    attn = _identity_attention(offset)
    value = _value_map(3, 4)[0, :, 0, 0]
    src = torch.stack([value, -value], -1)[None]  # [1, S, 2]
    ref = torch.tensor([1.5 / 4, 1.5 / 3]).view(1, 1, 1, 2)
    out, sampling = attn(torch.zeros(1, 1, 2), ref, src, torch.tensor([[3, 4]]),
                         return_sampling=True)
    torch.testing.assert_close(out[0, 0], torch.tensor([expected, -expected]))
    assert sampling[0].shape == (1, 1, 1, 1, 1, 2) and sampling[1].shape == (1, 1, 1, 1, 1)


def test_deformable_offsets_around_a_box_scale_with_its_size():
    """With a box reference, offset 1 (of 1 point) moves half the box width."""
    attn = _identity_attention((1.0, 0.0))
    value = _value_map(3, 4)[0, :, 0, 0]
    src = torch.stack([value, value], -1)[None]
    box = torch.tensor([1.5 / 4, 1.5 / 3, 2 / 4, 1 / 3]).view(1, 1, 1, 4)  # 2 pixels wide
    out, _ = attn(torch.zeros(1, 1, 2), box, src, torch.tensor([[3, 4]]))
    torch.testing.assert_close(out[0, 0], torch.tensor([13.0, 13.0]))


def test_deformable_attention_ignores_padded_values():
    attn = _identity_attention((0.0, 0.0))
    value = _value_map(3, 4)[0, :, 0, 0]
    src = torch.stack([value, value], -1)[None]
    ref = torch.tensor([1.5 / 4, 1.5 / 3]).view(1, 1, 1, 2)
    padding = torch.zeros(1, 12, dtype=torch.bool)
    padding[0, 1 * 4 + 1] = True  # the sampled pixel
    out, _ = attn(torch.zeros(1, 1, 2), ref, src, torch.tensor([[3, 4]]), padding)
    assert out.abs().max() == 0


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunked_ffn_is_the_plain_residual_ffn_and_norm(chunk):
    gen = torch.Generator().manual_seed(7)
    linear1, linear2, norm = torch.nn.Linear(8, 24), torch.nn.Linear(24, 8), torch.nn.LayerNorm(8)
    with torch.no_grad():
        for p in [*linear1.parameters(), *linear2.parameters(), *norm.parameters()]:
            p.copy_(torch.randn(p.shape, generator=gen))
    x = torch.randn(3, 11, 8, generator=gen)
    want = norm(x + linear2(F.relu(linear1(x))))
    with torch.no_grad():
        got = ffn_residual_norm(x, linear1, linear2, norm, chunk=chunk)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _random_sampling(gen, n=2, queries=7, heads=3, dim=4, points=3,
                     shapes=((5, 7), (3, 4), (1, 2))):
    shapes = torch.tensor(shapes)
    s = int((shapes[:, 0] * shapes[:, 1]).sum())
    value = torch.randn(n, s, heads, dim, generator=gen)
    # Locations in [-0.6, 1.6]: inside, across the borders and far outside every level.
    loc = torch.rand(n, queries, heads, len(shapes), points, 2, generator=gen) * 2.2 - 0.6
    weights = torch.rand(n, queries, heads, len(shapes), points, generator=gen)
    return value, shapes, loc, weights / weights.sum((-1, -2), keepdim=True)


def test_gather_sampling_equals_grid_sample_everywhere_including_borders():
    gen = torch.Generator().manual_seed(3)
    value, shapes, loc, weights = _random_sampling(gen)
    # Exact corners and edges of the last level (1×2): x = 0 and 1, y = 0 and 1.
    loc[0, :4, :, -1, 0] = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.5]])[:, None]
    want = ms_deform_attn_grid_sample(value, shapes, loc, weights)
    size = shapes.flip(-1).float()[:, None]
    got = ms_deform_attn_gather(value, shapes, loc * size - 0.5, weights)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_gather_sampling_splits_long_clips_into_chunks_without_changing_them(monkeypatch):
    import rvos.modeling.deformable_attention as deformable

    gen = torch.Generator().manual_seed(4)
    value, shapes, loc, weights = _random_sampling(gen, n=5)
    size = shapes.flip(-1).float()[:, None]
    whole = ms_deform_attn_gather(value, shapes, loc * size - 0.5, weights)
    monkeypatch.setattr(deformable, "_GATHER_CHUNK", 2 * 7 * 3 * 3 * 3)  # two frames a chunk
    chunked = ms_deform_attn_gather(value, shapes, loc * size - 0.5, weights)
    torch.testing.assert_close(chunked, whole, atol=0, rtol=0)


def test_training_samples_with_grid_sample_and_gets_gradients_for_every_input():
    gen = torch.Generator().manual_seed(5)
    value, shapes, loc, weights = (t.requires_grad_() if t.is_floating_point() else t
                                   for t in _random_sampling(gen))
    out = ms_deform_attn_sample(value, shapes, loc, weights)
    torch.testing.assert_close(out, ms_deform_attn_grid_sample(value, shapes, loc, weights))
    out.square().sum().backward()
    for t in (value, loc, weights):
        assert t.grad is not None and t.grad.abs().sum() > 0


def test_deformable_attention_gives_the_same_output_with_and_without_sampling_points():
    gen = torch.Generator().manual_seed(6)
    attn = MSDeformAttn(d_model=12, n_levels=3, n_heads=3, n_points=2)
    with torch.no_grad():
        for p in attn.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    shapes = torch.tensor([[5, 7], [3, 4], [1, 2]])
    src = torch.randn(2, 49, 12, generator=gen)
    for ref in (torch.rand(2, 4, 3, 2, generator=gen), torch.rand(2, 4, 3, 4, generator=gen)):
        with torch.no_grad():
            query = torch.randn(2, 4, 12, generator=gen)
            plain, none = attn(query, ref, src, shapes)
            traced, (locations, _) = attn(query, ref, src, shapes, return_sampling=True)
            grid = ms_deform_attn_grid_sample(
                attn.value_proj(src).view(2, 49, 3, 4), shapes, locations,
                attn.attention_weights(query).view(2, 4, 3, 6).softmax(-1).view(2, 4, 3, 3, 2))
        assert none is None
        assert torch.equal(plain, traced)
        # The returned locations are the points that were sampled.
        torch.testing.assert_close(traced, attn.output_proj(grid), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float16, 5e-3), (torch.bfloat16, 5e-2)])
def test_deformable_attention_in_half_precision_on_cpu(dtype, atol):
    gen = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[6, 8], [3, 4]])
    s = int((shapes[:, 0] * shapes[:, 1]).sum())
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=3)
    with torch.no_grad():
        for p in attn.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    query, src = torch.randn(2, 5, 16, generator=gen), torch.randn(2, s, 16, generator=gen)
    ref = torch.rand(2, 5, 2, 2, generator=gen)
    with torch.no_grad():
        want, _ = attn(query, ref, src, shapes)
        low = attn.to(dtype)
        got, _ = low(query.to(dtype), ref.to(dtype), src.to(dtype), shapes)
    assert got.dtype == dtype
    err = (got.float() - want).abs().max().item()
    assert err <= atol * want.abs().max().item(), f"{dtype}: max difference {err:.2e}"


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float16, 1e-2), (torch.bfloat16, 5e-2)])
def test_whole_model_cast_to_half_precision_runs_and_stays_close(make_tiny_model, dtype, rtol):
    """``model.to(dtype)`` (as on a GPU) keeps every tensor in that dtype end to end; the
    position embeddings, computed in fp32, must follow it."""
    reference = make_tiny_model()
    low = make_tiny_model().to(dtype)
    frames = clip(2, 3, 45, 61)
    with torch.no_grad():
        want = reference(frames, [SHORT])
        got = low(frames.to(dtype), [SHORT])
    for key in OUTPUT_KEYS:
        assert got[key].dtype == dtype, key
        err = (got[key].float() - want[key]).abs().max().item()
        assert err <= rtol * want[key].abs().max().item(), f"{key}: {err:.2e}"


def test_encoder_reference_points_are_pixel_centres():
    shapes = torch.tensor([[2, 4], [1, 2]])
    points = Encoder.reference_points(shapes, torch.ones(1, 2, 2))
    assert points.shape == (1, 8 + 2, 2, 2)
    first = points[0, :8, 0].view(2, 4, 2)
    torch.testing.assert_close(first[..., 0], ((torch.arange(4) + 0.5) / 4).expand(2, 4))
    torch.testing.assert_close(first[..., 1], ((torch.arange(2) + 0.5) / 2)[:, None].expand(2, 4))


def test_inverse_sigmoid_inverts_sigmoid():
    x = torch.linspace(-6, 6, 25)
    torch.testing.assert_close(inverse_sigmoid(x.sigmoid()), x, atol=1e-3, rtol=1e-3)


# -------------------------------------------------------------------------- dynamic mask head
def test_dynamic_mask_parameter_count_of_the_released_config():
    # (256 + 2) · 8 + 8 · 8 + 8 · 1 weights, 8 + 8 + 1 biases.
    assert dynamic_param_count(256, 8, 3, rel_coord=True) == 2153
    assert dynamic_param_count(256, 8, 3, rel_coord=False) == 2137
    assert dynamic_param_count(16, 4, 2, rel_coord=True) == 18 * 4 + 4 + 4 + 1


def test_dynamic_masks_equal_a_per_query_convolution_net():
    """Each query's parameters, read as 1×1 convolutions (all weights, then all biases), run on
    its frame's mask features plus its relative coordinates (reference − cell centre, pixels)."""
    gen = torch.Generator().manual_seed(0)
    b, t, q, c, h, w, ch, layers = 1, 2, 3, 5, 4, 6, 4, 3
    image = (16, 24)
    features = torch.randn(b, t, c, h, w, generator=gen)
    n = dynamic_param_count(c, ch, layers, True)
    params = torch.randn(b, t, q, n, generator=gen) * 0.3
    refs = torch.rand(b, t, q, 2, generator=gen)
    got = dynamic_masks(features, params, refs, image, ch, layers, rel_coord=True)
    assert got.shape == (b, t, q, h, w)

    ins, outs = [c + 2, ch, ch], [ch, ch, 1]
    cells_x = torch.arange(w) * 4 + 2.0
    cells_y = torch.arange(h) * 4 + 2.0
    for ti in range(t):
        for qi in range(q):
            p = params[0, ti, qi]
            rx = refs[0, ti, qi, 0] * image[1] - cells_x[None, :].expand(h, w)
            ry = refs[0, ti, qi, 1] * image[0] - cells_y[:, None].expand(h, w)
            x = torch.cat([features[0, ti], rx[None], ry[None]])[None]
            start = sum(i * o for i, o in zip(ins, outs, strict=True))
            offset = 0
            for k, (i, o) in enumerate(zip(ins, outs, strict=True)):
                weight = p[offset:offset + i * o].view(o, i, 1, 1)
                bias = p[start:start + o]
                offset, start = offset + i * o, start + o
                x = F.conv2d(x, weight, bias)
                if k < layers - 1:
                    x = F.relu(x)
            torch.testing.assert_close(got[0, ti, qi], x[0, 0], atol=1e-4, rtol=1e-4)
