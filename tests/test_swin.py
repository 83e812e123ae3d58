"""Swin and Video-Swin backbones: parity with the original implementation, the official key
layout, the shifted-window rules in time, and whole ReferFormer models built on them.

``<parity>/swin_backbone_reduced`` and ``video_swin_backbone_reduced`` record the original
backbones (embed_dim 32, depths 2-2-2-2, heads 1-2-4-8, seeded fp16 weights with the official
key names) on a real 360×440 clip: 3 frames for Swin, 5 for Video-Swin (so its 8-frame temporal
window clips to 5). ``manifests.json`` gives the full-size layouts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from rvos.modeling import ReferFormerConfig, build_referformer
from rvos.modeling import swin as swin_module
from rvos.modeling.backbone import build_backbone
from rvos.modeling.processing import normalize
from rvos.modeling.swin import SWIN_CONFIGS, build_swin, relative_position_index
from rvos.zoo.checkpoint import IGNORED_KEYS, detect_backbone, load_official, rename_official_key

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

FIXTURES = {"swin_t_p4w7": "swin_backbone_reduced",
            "video_swin_t_p4w7": "video_swin_backbone_reduced"}
PARITY_ATOL = 1e-4  # fixture README: max abs difference per level, fp32 CPU
SMALL = {"embed_dim": 16, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 4, 8)}


def small_backbone(name: str, seed: int = 0, **changes):
    torch.manual_seed(seed)
    return build_swin(name, **{**SMALL, **changes}).eval()


# ------------------------------------------------------------------------------- parity
@pytest.fixture(scope="module", params=list(FIXTURES))
def parity_case(request, parity_dir: Path):
    """(backbone with the fixture's weights, model input [T, 3, H, W], recorded features)."""
    folder = parity_dir / FIXTURES[request.param]
    if not folder.is_dir():
        pytest.skip(f"no {FIXTURES[request.param]} fixture at {folder}")
    weights = torch.load(folder / "weights.pth", weights_only=True)
    inputs = torch.load(folder / "inputs.pt", weights_only=True)
    outputs = torch.load(folder / "outputs.pt", weights_only=True)
    cfg = inputs["config"]
    overrides = {"embed_dim": cfg["embed_dim"], "depths": cfg["depths"],
                 "num_heads": cfg["num_heads"], "mlp_ratio": cfg["mlp_ratio"]}
    window = cfg["window_size"]
    overrides["window_size"] = tuple(window) if isinstance(window, (list, tuple)) else (window,) * 2
    if "patch_size" in cfg:
        overrides["patch_size"] = tuple(cfg["patch_size"])
    backbone = build_swin(request.param, **overrides).eval()
    # Official names through the loader's own rename table, then relative to the backbone.
    state = {rename_official_key(k).removeprefix("backbone."): v for k, v in weights.items()}
    return backbone, state, normalize(inputs["resized_uint8"]), outputs["features"]


def test_backbone_matches_the_original_on_every_level(parity_case):
    backbone, state, frames, expected = parity_case
    backbone.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    with torch.no_grad():
        got = backbone(frames, num_frames=frames.shape[0])
    assert len(got) == len(expected) == 4
    for level, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g.shape == e.shape, level
        diff = (g - e.float()).abs().max().item()
        assert diff <= PARITY_ATOL, f"level {level} (stride {4 << level}): max abs diff {diff}"


def test_relative_position_index_is_the_official_buffer(parity_case):
    backbone, state, _, _ = parity_case
    ours = backbone.state_dict()
    keys = [k for k in state if k.endswith("relative_position_index")]
    assert keys
    for key in keys:
        assert torch.equal(ours[key], state[key].long()), key


# ------------------------------------------------------------------------------- layout
@pytest.fixture(scope="module")
def manifests(parity_dir: Path) -> dict[str, dict[str, tuple[int, ...]]]:
    raw = json.loads((parity_dir / "manifests.json").read_text())
    return {name: {k: tuple(s) for k, s in keys.items()} for name, keys in raw.items()}


@pytest.mark.parametrize("backbone", list(SWIN_CONFIGS))
def test_full_size_model_has_exactly_the_official_keys_and_shapes(manifests, backbone):
    """Released configuration (roberta-base text encoder), built on the meta device: after the
    rename table, key for key and shape for shape the official state_dict."""
    official = {rename_official_key(k): s for k, s in manifests[backbone].items()
                if k not in IGNORED_KEYS}
    with torch.device("meta"):
        model = build_referformer(ReferFormerConfig(backbone=backbone))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(official) - set(ours)) == []
    assert sorted(set(ours) - set(official)) == []
    assert {k: s for k, s in ours.items() if official[k] != s} == {}
    assert model.backbone.num_channels[0] == manifests[backbone][
        "backbone.0.body.patch_embed.proj.weight"][0]


def test_relative_position_index_layout():
    """Offsets (dt, dh, dw) number the table rows t-major: an 8×7×7 window has 15·13·13 rows,
    and a pair's row depends only on its offset."""
    index = relative_position_index((8, 7, 7))
    assert index.shape == (392, 392)
    assert int(index.min()) == 0 and int(index.max()) == 15 * 13 * 13 - 1
    assert int(index[0, 0]) == 7 * 169 + 6 * 13 + 6  # zero offset: the table's centre
    # token (t=1, h=2, w=3) vs (t=0, h=0, w=0) and (t=2, h=2, w=3) vs (t=1, h=0, w=0)
    assert index[1 * 49 + 2 * 7 + 3, 0] == index[2 * 49 + 2 * 7 + 3, 1 * 49]


# ------------------------------------------------------------------------------- behaviour
def test_image_swin_treats_frames_independently():
    backbone = small_backbone("swin_t_p4w7")
    frames = torch.randn(3, 3, 37, 50, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        together = backbone(frames, num_frames=3)
        alone = backbone(frames[1:2], num_frames=1)
    for a, b in zip(together, alone, strict=True):
        torch.testing.assert_close(a[1:2], b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("num_frames", [12, 16])
def test_video_windows_shift_and_pad_in_time_beyond_8_frames(num_frames):
    """8-frame windows, shifted by 4 in every second block; the clip is padded to 16 frames.
    After the first stage's two blocks, a change in the last frame reaches frames 4..T-1 (its
    regular window [8, 16), then the shifted window of frames 4..11) but not frames 0..3.
    With T = 16 frames 0..3 share a shifted window with frames 12..15 across the cyclic roll,
    and only the shift mask keeps them apart; with T = 12 that window holds padding there."""
    backbone = small_backbone("video_swin_t_p4w7")
    frames = torch.randn(num_frames, 3, 28, 28, generator=torch.Generator().manual_seed(2))
    changed = frames.clone()
    changed[-1] += 1.0
    with torch.no_grad():
        before = backbone(frames, num_frames)[0]
        after = backbone(changed, num_frames)[0]
    moved = (after - before).flatten(1).abs().amax(1)
    assert moved[:4].max() < 1e-5, moved
    assert moved[4:].min() > 1e-3, moved


def test_video_window_clips_to_a_short_clip():
    """T = 5 <= 8: one temporal window of 5 frames, not shifted, so every frame sees every
    other frame already in the first block."""
    stage = small_backbone("video_swin_t_p4w7").body.layers[0]
    assert stage.windows_for((5, 20, 30)) == ((5, 7, 7), (0, 3, 3))
    assert stage.windows_for((8, 20, 30)) == ((8, 7, 7), (0, 3, 3))
    assert stage.windows_for((9, 5, 30)) == ((8, 5, 7), (4, 0, 3))
    image_stage = small_backbone("swin_t_p4w7").body.layers[3]
    assert image_stage.windows_for((1, 2, 3)) == ((1, 7, 7), (0, 3, 3))  # image Swin pads


def _reference_block(block, x: torch.Tensor, window, shift) -> torch.Tensor:
    """One Swin block written out token by token from the papers' definitions, for a clip of
    any length: no rolling, no partitioning. Padded grid of size L per axis (a multiple of the
    window k); token p sits in window ``((p - s) mod L) // k`` at offset ``((p - s) mod L) % k``
    of the cyclically shifted grid, and two tokens of one window attend to each other only if
    both or neither wrapped around (p < s). Padded tokens are zeros after the norm and stay
    visible as keys."""
    size = x.shape[1:4]
    padded = [n + (-n) % k for n, k in zip(size, window, strict=True)]
    y = torch.zeros(1, *padded, x.shape[-1])
    y[:, : size[0], : size[1], : size[2]] = block.norm1(x)
    pos = torch.stack(torch.meshgrid(*(torch.arange(n) for n in padded), indexing="ij"), -1)
    pos = pos.reshape(-1, 3)
    lengths, k, s = (torch.tensor(v) for v in (padded, window, shift))
    rolled = (pos - s) % lengths
    win, off, wrapped = rolled // k, rolled % k, pos < s
    allowed = ((win[:, None] == win[None]) & (wrapped[:, None] == wrapped[None])).all(-1)
    attn = block.attn
    # The bias table covers every offset of the full window, also when the window is clipped.
    full = torch.tensor(attn.window)
    d = off[:, None] - off[None] + (full - 1)  # query offset - key offset, per axis
    index = (d[..., 0] * (2 * full[1] - 1) + d[..., 1]) * (2 * full[2] - 1) + d[..., 2]
    heads = attn.num_heads
    bias = attn.relative_position_bias_table[index].permute(2, 0, 1)  # [heads, N, N]
    tokens = y.reshape(-1, y.shape[-1])
    q, kk, v = attn.qkv(tokens).view(len(tokens), 3, heads, -1).permute(1, 2, 0, 3)
    logits = q @ kk.transpose(-1, -2) / q.shape[-1] ** 0.5 + bias
    out = logits.masked_fill(~allowed, float("-inf")).softmax(-1) @ v  # [heads, N, c/h]
    out = attn.proj(out.permute(1, 0, 2).reshape(len(tokens), -1)).view(1, *padded, -1)
    x = x + out[:, : size[0], : size[1], : size[2]]
    return x + block.mlp(block.norm2(x))


@pytest.mark.parametrize("size", [(10, 5, 9), (17, 4, 9), (9, 8, 3)])
def test_video_blocks_on_clips_longer_than_the_window_match_the_definition(size):
    """No fixture has a clip longer than Video-Swin's 8 frames, yet the app feeds it 36-frame
    windows: then time is padded, split into windows of 8 and shifted by 4 in every other block,
    like the spatial axes. Each block (plain and shifted) must equal the token-by-token
    definition above, on grids that are padded, clipped (5 <= 7 rows) and shifted at once."""
    stage = small_backbone("video_swin_t_p4w7", seed=7).body.layers[0]
    window, shift = stage.windows_for(size)
    assert window[0] == 8 and shift[0] == 4  # time is windowed and shifted, not clipped
    padded = tuple(n + (-n) % k for n, k in zip(size, window, strict=True))
    regions = swin_module.shift_regions(padded, window, shift, torch.device("cpu"))
    x = torch.randn(1, *size, stage.blocks[0].norm1.normalized_shape[0],
                    generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        for block, block_shift in zip(stage.blocks, [(0, 0, 0), shift], strict=True):
            got = block(x, window, block_shift, regions)
            want = _reference_block(block, x, window, block_shift)
            torch.testing.assert_close(got, want, atol=2e-5, rtol=0)


@pytest.mark.parametrize("name", list(FIXTURES))
def test_attention_in_chunks_equals_attention_at_once(monkeypatch, name):
    """The window chunking that bounds memory on long clips changes nothing."""
    backbone = small_backbone(name)
    frames = torch.randn(10, 3, 60, 44, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        whole = backbone(frames, 10)
        monkeypatch.setattr(swin_module, "ATTENTION_CHUNK_ELEMENTS", 3 * 392 * 392)
        chunked = backbone(frames, 10)
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(FIXTURES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_runs_on_cpu(name, dtype):
    backbone = small_backbone(name)
    frames = torch.randn(9, 3, 45, 67, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = backbone(frames, 9)
        half = backbone.to(dtype)(frames.to(dtype), 9)
    for r, h in zip(ref, half, strict=True):
        assert h.dtype == dtype and torch.isfinite(h).all()
        assert (h.float() - r).abs().max() < 0.1 * r.abs().max()


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="unknown option.*'depth'"):
        build_backbone("swin_t_p4w7", depth=(2, 2, 2, 2))
    with pytest.raises(ValueError, match="4 stages"):
        build_swin("swin_t_p4w7", depths=(2, 2, 2))
    with pytest.raises(ValueError, match="temporal patch size must be 1"):
        build_swin("video_swin_t_p4w7", patch_size=(2, 4, 4))
    backbone = small_backbone("video_swin_t_p4w7")
    with pytest.raises(ValueError, match="7 frames do not split into clips of 2"):
        backbone(torch.zeros(7, 3, 32, 32), num_frames=2)
    with pytest.raises(ValueError, match=r"frames must be \[B\*T, 3, H, W\]"):
        backbone(torch.zeros(2, 32, 32), num_frames=2)


# ------------------------------------------------------------------------------- whole model
@pytest.mark.parametrize("name", list(FIXTURES))
@pytest.mark.parametrize("num_frames", [1, 10])
def test_referformer_runs_end_to_end_on_a_swin_backbone(make_tiny_model, name, num_frames):
    """Odd frame sizes, a single frame and a clip longer than the 8-frame window."""
    model = make_tiny_model(backbone=name, backbone_kwargs=dict(SMALL))
    h, w = 45, 67
    frames = torch.randn(num_frames, 3, h, w, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = model(frames, ["the red ball on the left"])
    assert out["pred_logits"].shape == (1, num_frames, 5, 1)
    assert out["pred_boxes"].shape == (1, num_frames, 5, 4)
    assert out["pred_masks"].shape == (1, num_frames, 5, (h + 3) // 4, (w + 3) // 4)
    for key in ("pred_logits", "pred_boxes", "pred_masks", "reference_points"):
        assert torch.isfinite(out[key]).all(), key


@pytest.mark.parametrize("backbone", list(FIXTURES))
def test_load_official_round_trip_of_a_full_size_swin_checkpoint(tiny_text_folder, tmp_path,
                                                                 backbone):
    """A released-format file (official key names, Namespace args) of a full-size backbone with a
    small text encoder: detected, loaded strictly, every tensor in its place. Each tensor is a
    stride-0 view of its own number, so a key loaded into another's place would show."""
    text = json.loads((tiny_text_folder / "config.json").read_text())
    with torch.device("meta"):
        layout = build_referformer(ReferFormerConfig(backbone=backbone, text=text)).state_dict()
    # The decoder shares the box heads (official files store the tied tensors twice, equal).
    tied = "transformer.decoder."
    names = sorted({k.removeprefix(tied) for k in layout})
    state = {}
    for key, value in layout.items():
        i = names.index(key.removeprefix(tied))
        official = key.replace("backbone.body.", "backbone.0.body.", 1)
        if key.endswith("relative_position_index"):
            state[official] = relative_position_index(
                (8, 7, 7) if backbone.startswith("video") else (1, 7, 7))
        else:
            state[official] = torch.tensor(float(i % 1000) / 1000).expand(value.shape)
    assert detect_backbone(state) == backbone
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": state, "args": argparse.Namespace(backbone=backbone), "epoch": 5}, path)
    model = load_official(path, text_encoder=tiny_text_folder)
    assert not model.training and model.config.backbone == backbone
    loaded = model.state_dict()
    for key, value in state.items():
        mine = rename_official_key(key)
        assert torch.equal(loaded[mine], value.to(loaded[mine].dtype)), key
