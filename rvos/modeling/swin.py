"""Swin (image) and Video-Swin (video) transformer backbones of the released ReferFormer models.

Swin Transformer (Liu et al., ICCV 2021) and Video Swin Transformer (Liu et al., CVPR 2022) share
one design, written here once over a ``[B, D, H, W, C]`` token grid:

- a patch embedding (a convolution with stride = kernel = patch size, then LayerNorm);
- four stages of transformer blocks whose self-attention stays inside non-overlapping windows and
  carries a learned relative position bias; every second block shifts the windows by half a
  window (a cyclic roll plus a mask, so tokens only attend to tokens that were neighbours before
  the roll);
- patch merging between stages: each 2×2 spatial neighbourhood is concatenated (4C), normalised
  and projected to 2C, halving the resolution.

The image Swin is this grid with D = 1 and windows of 1×7×7: every frame is its own image (the
released ``swin_*_p4w7`` models run frame by frame). Video-Swin uses patches of 1×4×4 (no
temporal downsampling) and 8×7×7 windows over the whole clip, so attention mixes frames.

Both return four maps at strides 4, 8, 16, 32. Module and parameter names follow the official
checkpoints (``patch_embed``, ``layers.i.blocks.j.attn.relative_position_bias_table``, ...), so
their state dicts load without renaming.

Memory: attention is computed window by window, in chunks (``ATTENTION_CHUNK_ELEMENTS``), so
nothing quadratic in the number of tokens of a clip is ever held, only quadratic in a window.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "SWIN_CONFIGS",
    "SwinBackbone",
    "SwinConfig",
    "SwinTransformer",
    "VideoSwinTransformer",
    "WindowAttention",
    "build_swin",
    "relative_position_index",
]

Window = tuple[int, int, int]

# Attention logits of one chunk of windows stay below this many elements (2^24 floats = 64 MB in
# fp32). A 36-frame Video-Swin clip at 360×640 has ~1500 windows of 392 tokens in its first
# stage: all at once, Video-Swin-T's 3 heads would hold 2.8 GB of fp32 logits.
ATTENTION_CHUNK_ELEMENTS = 1 << 24

# Additive logit for token pairs that a shifted window joins but that were not neighbours before
# the cyclic roll. The original models use -100 rather than -inf: exp(-100) ≈ 4e-44 is
# negligible next to any real weight, and keeping the same number keeps the same function.
SHIFT_MASK_VALUE = -100.0


@dataclass(frozen=True)
class SwinConfig:
    """Architecture of one Swin / Video-Swin backbone."""

    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    video: bool = False
    window_size: tuple[int, ...] = (7, 7)   # (h, w) for images, (t, h, w) for video
    patch_size: tuple[int, ...] = (4, 4)    # (h, w) for images, (t, h, w) for video
    mlp_ratio: float = 4.0


def _image(embed_dim: int, depths: tuple[int, ...], heads: tuple[int, ...]) -> SwinConfig:
    return SwinConfig(embed_dim, depths, heads)


def _video(embed_dim: int, depths: tuple[int, ...], heads: tuple[int, ...]) -> SwinConfig:
    return SwinConfig(embed_dim, depths, heads, video=True, window_size=(8, 7, 7),
                      patch_size=(1, 4, 4))


# The released backbones ("p4w7": patch 4, window 7), checked against the official state dicts
# (parity manifests.json). Head width is 32 everywhere.
SWIN_CONFIGS: dict[str, SwinConfig] = {
    "swin_t_p4w7": _image(96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "swin_s_p4w7": _image(96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "swin_b_p4w7": _image(128, (2, 2, 18, 2), (4, 8, 16, 32)),
    "swin_l_p4w7": _image(192, (2, 2, 18, 2), (6, 12, 24, 48)),
    "video_swin_t_p4w7": _video(96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "video_swin_s_p4w7": _video(96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "video_swin_b_p4w7": _video(128, (2, 2, 18, 2), (4, 8, 16, 32)),
}


# ---------------------------------------------------------------------------- window helpers
def relative_position_index(window: Window) -> Tensor:
    """[N, N] int64 (N = t·h·w): row of the bias table for each (query, key) pair of a window.

    Tokens are numbered in (t, h, w) row-major order; the table has one row per possible offset
    (dt, dh, dw), (2t-1)(2h-1)(2w-1) rows.
    """
    grids = torch.meshgrid(*(torch.arange(n) for n in window), indexing="ij")
    coords = torch.stack(grids).flatten(1)                       # [3, N]
    offsets = coords[:, :, None] - coords[:, None, :]            # [3, N, N]
    index = torch.zeros(offsets.shape[1:], dtype=torch.long)
    for axis, n in enumerate(window):
        index = index * (2 * n - 1) + offsets[axis] + (n - 1)
    return index


def _pad_to_multiple(x: Tensor, window: Window) -> Tensor:
    """[B, D, H, W, C] -> zero-padded at the end of D, H, W to multiples of ``window``."""
    d, h, w = x.shape[1:4]
    pd, ph, pw = ((-n) % k for n, k in zip((d, h, w), window, strict=True))
    if pd or ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph, 0, pd))
    return x


def window_partition(x: Tensor, window: Window) -> Tensor:
    """[B, D, H, W, C] (sizes multiples of ``window``) -> [B, nW, N, C]."""
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.view(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, -1, wd * wh * ww, c)


def window_merge(windows: Tensor, window: Window, size: Window) -> Tensor:
    """Inverse of `window_partition`: [B, nW, N, C] -> [B, D, H, W, C]."""
    b, _, _, c = windows.shape
    d, h, w = size
    wd, wh, ww = window
    x = windows.view(b, d // wd, h // wh, w // ww, wd, wh, ww, c)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d, h, w, c)


def shift_regions(size: Window, window: Window, shift: Window, device: torch.device) -> Tensor:
    """[nW, N] int: for a padded grid ``size`` rolled by ``-shift``, the region each token came
    from. Tokens of one window may attend to each other only within the same region.

    Along a shifted axis of length L the rolled grid holds three regions: [0, L-window), the
    window-wide band before the wrapped part, and the last ``shift`` positions (which wrapped
    around from the start).
    """
    ids = torch.zeros(size, dtype=torch.long, device=device)
    bands = [[slice(0, n - k), slice(n - k, n - s), slice(n - s, n)] if s else [slice(0, n)]
             for n, k, s in zip(size, window, shift, strict=True)]
    for region, (sd, sh, sw) in enumerate(itertools.product(*bands)):
        ids[sd, sh, sw] = region
    return window_partition(ids[None, ..., None], window)[0, ..., 0]


# ---------------------------------------------------------------------------- modules
class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative position bias.

    The bias table holds one value per head for every relative offset inside the largest window
    (``window``); smaller (clipped) windows read the entries of their own offsets.
    """

    def __init__(self, dim: int, num_heads: int, window: Window) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.window = window
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros(math.prod(2 * n - 1 for n in window), num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # Persistent: the official checkpoints carry it (the loader is strict).
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def relative_bias(self, window: Window) -> Tensor:
        """[heads, N, N] bias for a window of size ``window`` (at most ``self.window``)."""
        index = self.relative_position_index
        if window != self.window:
            # Offsets are translation invariant, so a sub-window's pairs are the pairs of its
            # tokens inside the full window's layout. For a clip shorter than the temporal window
            # (checked by the parity fixture, T = 5) these are the first N tokens. Spatial clips
            # happen only for maps of at most 7 tokens (inputs under ~225 px); no fixture has
            # one, tests/test_swin.py checks them against a token-by-token definition.
            full = torch.arange(index.shape[0], device=index.device).view(self.window)
            keep = full[: window[0], : window[1], : window[2]].reshape(-1)
            index = index[keep][:, keep]
        n = index.shape[0]
        bias = self.relative_position_bias_table[index.reshape(-1)].view(n, n, -1)
        return bias.permute(2, 0, 1)

    def forward(self, x: Tensor, window: Window, regions: Tensor | None = None) -> Tensor:
        """x: [B, nW, N, C] tokens of each window (N = prod(window)); regions: [nW, N] from
        `shift_regions` for shifted windows, else None. Returns [B, nW, N, C]."""
        b, nw, n, c = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).view(b, nw, n, 3, heads, c // heads).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv.unbind(0)                                  # each [B, nW, heads, N, c/h]
        bias = self.relative_bias(window).to(x.dtype)            # [heads, N, N]
        out = torch.empty_like(q)
        step = max(1, ATTENTION_CHUNK_ELEMENTS // (b * heads * n * n))
        for start in range(0, nw, step):
            part = slice(start, min(start + step, nw))
            count = part.stop - part.start
            # 4-D inputs let fused attention kernels run on GPUs; the chunk bounds the copies.
            flat = [t[:, part].reshape(b * count, heads, n, -1) for t in (q, k, v)]
            mask = bias[None]                                    # broadcast over windows
            if regions is not None:
                ids = regions[part]
                apart = (ids[:, :, None] != ids[:, None, :]).to(x.dtype) * SHIFT_MASK_VALUE
                mask = (mask + apart[:, None]).repeat(b, 1, 1, 1)  # [B*count, heads, N, N]
            out[:, part] = F.scaled_dot_product_attention(*flat, attn_mask=mask).view(
                b, count, heads, n, -1)
        return self.proj(out.permute(0, 1, 3, 2, 4).reshape(b, nw, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm block: x + WindowAttention(LN(x)), then x + MLP(LN(x)).

    Stochastic depth (drop path) is the identity at inference and is not implemented.
    """

    def __init__(self, dim: int, num_heads: int, window: Window, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, window: Window, shift: Window, regions: Tensor | None) -> Tensor:
        """x: [B, D, H, W, C]; ``window``/``shift`` already adapted to the grid; ``regions``
        from `shift_regions` when ``shift`` is non-zero. Returns [B, D, H, W, C]."""
        size = x.shape[1:4]
        # Padding comes *after* the norm: padded tokens are zeros in the normalised space and,
        # as in the original models, stay visible as keys (their keys are the qkv bias).
        y = _pad_to_multiple(self.norm1(x), window)
        padded = tuple(y.shape[1:4])
        shifted = any(shift)
        if shifted:
            y = torch.roll(y, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        y = self.attn(window_partition(y, window), window, regions if shifted else None)
        y = window_merge(y, window, padded)
        if shifted:
            y = torch.roll(y, shifts=shift, dims=(1, 2, 3))
        x = x + y[:, : size[0], : size[1], : size[2]]
        return x + self.mlp(self.norm2(x))


class SwinStage(nn.Module):
    """``depth`` blocks, alternating regular and shifted windows; the image Swin keeps the
    following patch merging in ``downsample`` (its official key layout), Video-Swin outside."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: Window, mlp_ratio: float,
                 clip_windows: bool, downsample: bool) -> None:
        super().__init__()
        self.window = window
        self.clip_windows = clip_windows
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, mlp_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim) if downsample else None

    def windows_for(self, size: Window) -> tuple[Window, Window]:
        """(window, shift of the shifted blocks) for a grid of ``size`` = (D, H, W).

        Video-Swin clips a window to an axis no longer than it, and then does not shift along
        that axis (a 5-frame clip gets 5×7×7 windows, one window in time). The image Swin keeps
        7×7 and pads instead.
        """
        window, shift = list(self.window), [n // 2 for n in self.window]
        if self.clip_windows:
            for axis, n in enumerate(size):
                if n <= window[axis]:
                    window[axis], shift[axis] = n, 0
        return tuple(window), tuple(shift)

    def forward(self, x: Tensor) -> Tensor:
        """[B, D, H, W, C] -> [B, D, H, W, C] (no downsampling here)."""
        window, shift = self.windows_for(tuple(x.shape[1:4]))
        regions = None
        if any(shift):
            padded = tuple(n + (-n) % k for n, k in zip(x.shape[1:4], window, strict=True))
            regions = shift_regions(padded, window, shift, x.device)
        zero = (0, 0, 0)
        for i, block in enumerate(self.blocks):
            x = block(x, window, shift if i % 2 else zero, regions)
        return x


class PatchMerging(nn.Module):
    """2×2 spatial neighbourhoods -> one token: concat (4C) -> LayerNorm -> linear to 2C.

    Odd heights/widths are zero-padded at the bottom/right, so sizes halve rounding up.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """[B, D, H, W, C] -> [B, D, ceil(H/2), ceil(W/2), 2C]."""
        h, w = x.shape[2:4]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        # Concatenation order of the released weights: (even row, even col), (odd, even),
        # (even, odd), (odd, odd).
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2],
                       x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: zero-pad to multiples of the patch, conv, LayerNorm."""

    def __init__(self, patch: tuple[int, ...], dim: int) -> None:
        super().__init__()
        self.patch = tuple(patch)
        conv = nn.Conv3d if len(patch) == 3 else nn.Conv2d
        self.proj = conv(3, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        """[B, 3, H, W] (image) or [B, 3, T, H, W] (video) -> tokens [B, D, H', W', C]
        (D = 1 for images)."""
        pads: list[int] = []
        for n, p in zip(reversed(x.shape[2:]), reversed(self.patch), strict=True):
            pads += [0, (-n) % p]
        if any(pads):
            x = F.pad(x, pads)
        x = self.proj(x)
        if x.dim() == 4:
            x = x.unsqueeze(2)
        return self.norm(x.permute(0, 2, 3, 4, 1))


def _check_stages(config: SwinConfig) -> None:
    if len(config.depths) != 4 or len(config.num_heads) != 4:
        raise ValueError(f"a Swin backbone has 4 stages: got depths {config.depths} and "
                         f"num_heads {config.num_heads}")
    dims = len(config.window_size), len(config.patch_size)
    if dims != ((3, 3) if config.video else (2, 2)):
        raise ValueError(f"window_size {config.window_size} and patch_size {config.patch_size} "
                         f"must have {'3 (t, h, w)' if config.video else '2 (h, w)'} entries")


class SwinTransformer(nn.Module):
    """Image Swin over a batch of frames, with a LayerNorm on each stage's output (``norm0`` ..
    ``norm3``, as in the detection variant whose outputs ReferFormer consumes)."""

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        _check_stages(config)
        c = config.embed_dim
        window = (1, *config.window_size)
        self.patch_embed = PatchEmbed(config.patch_size, c)
        self.layers = nn.ModuleList(
            SwinStage(c * 2**i, depth, heads, window, config.mlp_ratio, clip_windows=False,
                      downsample=i < 3)
            for i, (depth, heads) in enumerate(zip(config.depths, config.num_heads, strict=True)))
        for i in range(4):
            self.add_module(f"norm{i}", nn.LayerNorm(c * 2**i))

    def forward(self, images: Tensor) -> list[Tensor]:
        """images [N, 3, H, W] -> 4 maps [N, C·2^i, ceil(H/2^(i+2)), ceil(W/2^(i+2))]."""
        x = self.patch_embed(images)
        outs = []
        for i, stage in enumerate(self.layers):
            x = stage(x)
            outs.append(getattr(self, f"norm{i}")(x)[:, 0].permute(0, 3, 1, 2))
            if stage.downsample is not None:
                x = stage.downsample(x)
        return outs


class VideoSwinTransformer(nn.Module):
    """Video-Swin over whole clips; patch merging lives in ``downsamples`` (official layout).

    Unlike the image Swin there are no per-stage output norms: ReferFormer consumes the raw
    residual stream of each stage (the released checkpoints hold no such parameters, and the
    parity fixture's outputs are the un-normalised stage outputs).
    """

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        _check_stages(config)
        if config.patch_size[0] != 1:
            raise ValueError("rvos needs one feature map per frame: the temporal patch size "
                             f"must be 1, got patch_size {config.patch_size}")
        c = config.embed_dim
        self.patch_embed = PatchEmbed(config.patch_size, c)
        self.layers = nn.ModuleList(
            SwinStage(c * 2**i, depth, heads, tuple(config.window_size), config.mlp_ratio,
                      clip_windows=True, downsample=False)
            for i, (depth, heads) in enumerate(zip(config.depths, config.num_heads, strict=True)))
        self.downsamples = nn.ModuleList(PatchMerging(c * 2**i) for i in range(3))

    def forward(self, clips: Tensor) -> list[Tensor]:
        """clips [B, 3, T, H, W] -> 4 maps [B, C·2^i, T, ceil(H/2^(i+2)), ceil(W/2^(i+2))]."""
        x = self.patch_embed(clips)
        outs = []
        for i, stage in enumerate(self.layers):
            x = stage(x)
            outs.append(x.permute(0, 4, 1, 2, 3))
            if i < len(self.downsamples):
                x = self.downsamples[i](x)
        return outs


class SwinBackbone(nn.Module):
    """Swin or Video-Swin with the interface of every rvos backbone.

    ``forward(frames [B*T, 3, H, W], num_frames=T)`` -> 4 maps ``[B*T, C_i, ceil(H/s), ceil(W/s)]``
    for s = 4, 8, 16, 32 and C_i = embed_dim·2^i. The image Swin treats frames independently;
    Video-Swin regroups them into B clips of T frames.
    """

    strides = [4, 8, 16, 32]

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        self.config = config
        self.num_channels = [config.embed_dim * 2**i for i in range(4)]
        self.body = VideoSwinTransformer(config) if config.video else SwinTransformer(config)

    @property
    def frames_independent(self) -> bool:
        """Whether a long clip may go through a few frames at a time: yes for the image Swin;
        not for Video-Swin, whose windows span frames (8 of them, shifted by 4 in every other
        block), so a chunk would need its neighbours' frames to give the same features."""
        return not self.config.video

    def forward(self, frames: Tensor, num_frames: int) -> list[Tensor]:
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be [B*T, 3, H, W], got {tuple(frames.shape)}")
        if not self.config.video:
            return self.body(frames)
        n = frames.shape[0]
        if num_frames < 1 or n % num_frames:
            raise ValueError(f"{n} frames do not split into clips of {num_frames} frames")
        clips = frames.view(n // num_frames, num_frames, *frames.shape[1:]).transpose(1, 2)
        return [f.transpose(1, 2).flatten(0, 1) for f in self.body(clips)]


def build_swin(name: str, **overrides) -> SwinBackbone:
    """A released Swin / Video-Swin backbone by name (``swin_t_p4w7``, ``video_swin_b_p4w7``,
    ...), optionally with fields of its `SwinConfig` changed (e.g. a small ``embed_dim``)."""
    if name not in SWIN_CONFIGS:
        raise ValueError(f"unknown Swin backbone {name!r}; expected one of {sorted(SWIN_CONFIGS)}")
    fields = {**SWIN_CONFIGS[name].__dict__, **overrides}
    unknown = set(overrides) - set(SWIN_CONFIGS[name].__dict__)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for {name}; "
                         f"valid: {sorted(SWIN_CONFIGS[name].__dict__)}")
    for key in ("depths", "num_heads", "window_size", "patch_size"):
        fields[key] = tuple(fields[key])
    return SwinBackbone(SwinConfig(**fields))

