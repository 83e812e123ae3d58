"""Static int8: the convolutions and the large linear layers of the visual path in 8 bits, with
activation ranges calibrated once on a few real frames and stored with the model.

What runs in int8 (per-output-channel symmetric int8 weights, per-tensor asymmetric uint8
activations):

* the backbone's convolutions: ResNet end to end (`Int8ResNetBody`: batch norm folded into each
  convolution, activations stay uint8 from the stem to res5, the residual sum and its ReLU fused
  into the last convolution of each block); any other backbone's ``nn.Conv2d`` layers one by one
  (the built-in model's (2+1)-D backbone: its 3-D temporal convolutions stay fp32);
* the cross-modal FPN's convolutions and the mask-feature convolution (`Int8Conv2d`: fp32 in
  and out, the norm after it fp32);
* the encoder's and the FPN's FFNs (the hidden activation uint8 between the two products, the
  ReLU fused into the first), the encoder's value projections and the decoder's value
  projection (`Int8Linear`).

What stays fp32, because accuracy needs it or because it costs little: the layers that predict
where deformable attention samples and with which weights (an 8-bit pixel offset is off by
pixels), the encoder's output projections and the input projections (the two groups that
moved the parity clip's masks most in int8, for a few per cent of the products), every
attention's own products and softmax, the norms, the text encoder, the decoder's queries and
the heads.

The products run on oneDNN's int8 kernels (``torch.ops.onednn.qconv2d_pointwise`` /
``qlinear_pointwise``: the kernels torch's x86 PT2E quantisation lowers to, on plain uint8/int8
tensors; torch's quantised tensor types serve only to convert, `_to_u8`): VNNI or AMX where
the CPU has them, AVX2 elsewhere (1×1 convolutions as linear products where that kernel is the
faster, `POINTWISE_AS_LINEAR`). `static_int8_available` tells whether this torch build has them.

Calibration (`calibrate`) runs the fp32 model on a few frames of the example clips shipped
with rvos and records every quantised input's range (its 0.01 % and 99.99 % quantiles). The
ranges are stored as safetensors (`save_calibration`) under the model's weight digest
(`model_digest`): beside the packaged weights for the built-in model
(``rvos/weights/builtin/int8_calibration.safetensors``), in the user cache
(``<cache>/int8/<digest>.safetensors``) for the others, and read back (`load_calibration`,
tensors only) instead of calibrating again.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rvos.modeling.backbone import ResNetBody
from rvos.modeling.cpu_features import cpu_features
from rvos.modeling.quantize_store import (
    calibration_candidates,
    example_clips,
    load_calibration,
    model_digest,
    save_calibration,
)

log = logging.getLogger(__name__)

# Activation ranges leave out this share of the values at each end: a rare outlier then clips
# instead of coarsening the step for every other value. On the parity clip the final-mask IoU
# against fp32 rose from 88.3 % (min / max) to 91.8 % with 1e-4.
CLIP_QUANTILE = 1e-4
# The linear layers' fp32 inputs quantised with each call's own range (one min / max pass over
# the rows) rather than the calibrated one; the FFNs' hidden layer stays calibrated. Off: it
# left the parity clip's IoU where it was (88.3 %).
LINEAR_INPUT_RANGE_PER_CALL = False

# Linear layers quantised, by the end of their module path (see the module docstring).
_LINEAR_PARTS = ("transformer.encoder.", "transformer.decoder.", "pixel_decoder.")
# The encoder's output projection stays fp32: of every group of layers it moved the parity
# clip's masks most (final-mask IoU vs fp32 96.2 % with it alone in int8, 99.1 % for the value
# projection), and it is one of the smallest products (256 × 256 per token).
_LINEAR_NAMES = ("value_proj",)
_DECODER_LINEARS = ("cross_attn.value_proj",)  # the decoder reads every encoder token once
# The input projections stay fp32: in int8 they moved the parity clip's masks more than the whole
# FPN (IoU 97.5 % alone), as their inputs, res3..res5, are already rounded to the backbone's
# uint8 steps and would be rounded again to their own; they are ~3 % of the multiply-adds.
_CONV_PARTS = ("backbone.", "pixel_decoder.")
# 1×1 convolutions of stride 1 as oneDNN's int8 *linear* product on the channels-last rows (the
# same integers, bit for bit). With AVX-512 VNNI the convolution kernel was up to 10× slower on
# small maps (res5's 1×1 layers, 5 frames of 12×20: 28 ms against 2.8), never faster; under the
# AVX2 cap it was the faster (8 against 33 ms for 64 to 256 channels at 90×160). None: by the CPU
# (linear with AVX-512 VNNI, the one measured); True / False: always / never.
POINTWISE_AS_LINEAR: bool | None = None


def _pointwise_as_linear() -> bool:
    if POINTWISE_AS_LINEAR is not None:
        return POINTWISE_AS_LINEAR
    return cpu_features().int8_unit == "AVX-512 VNNI"


# ------------------------------------------------------------------------------ numerics
def _qparams(lo: float, hi: float) -> tuple[float, int]:
    """(scale, zero point) of uint8 covering [lo, hi] (widened to hold 0, exact for ReLU
    outputs: lo = 0 gives zero point 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("an int8 site was never calibrated (no frame reached it)")
    scale = max(hi - lo, 1e-8) / 255.0
    return scale, int(min(255, max(0, round(-lo / scale))))


# torch 2.13 marks its quantised tensor types deprecated (a warning on first use); `_to_u8` /
# `_from_u8` use them only as one-pass converters to and from plain uint8, and fall back to
# elementwise arithmetic where they are gone.
_QUANTISER = hasattr(torch, "quantize_per_tensor") and hasattr(
    torch, "_make_per_tensor_quantized_tensor")
warnings.filterwarnings("ignore", r"torch\.quantize_per_tensor, torch\.quantize_per_channel",
                        UserWarning)


def _to_u8(x: Tensor, scale: float, zero_point: int) -> Tensor:
    """fp32 -> uint8 (round to nearest, saturating), keeping ``x``'s memory format.

    One pass: torch's quantiser writes a quint8 tensor whose bytes are then read as the plain
    uint8 tensor oneDNN's kernels take (no copy). The elementwise form (scale, shift, round,
    clamp, cast) costs ten times as long, and was a tenth of the int8 pass."""
    if _QUANTISER:
        q = torch.quantize_per_tensor(x.float(), scale, zero_point, torch.quint8)
        return torch.empty(0, dtype=torch.uint8, device=x.device).set_(
            q.untyped_storage(), q.storage_offset(), q.size(), q.stride())
    y = torch.mul(x, 1.0 / scale)
    if zero_point:
        y.add_(zero_point)
    return y.round_().clamp_(0, 255).to(torch.uint8)


def _from_u8(x: Tensor, scale: float, zero_point: int) -> Tensor:
    """uint8 (``scale``, ``zero_point``) -> fp32, keeping the memory format."""
    if _QUANTISER:
        return torch._make_per_tensor_quantized_tensor(x, scale, zero_point).dequantize()
    y = x.to(torch.float32)
    if zero_point:
        y.sub_(zero_point)
    return y.mul_(scale)


def _int8_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Per-output-channel symmetric int8 weight and its scales [O]."""
    flat = weight.detach().float().reshape(weight.shape[0], -1)
    scales = flat.abs().amax(1).clamp(min=1e-12) / 127.0
    shape = (-1,) + (1,) * (weight.dim() - 1)
    q = torch.round(weight.detach().float() / scales.view(shape)).clamp(-127, 127)
    return q.to(torch.int8), scales


class _Range:
    """The range of what passes a site during calibration: over every batch, the lowest and
    highest `CLIP_QUANTILE` quantiles (the extreme min / max when it is 0)."""

    def __init__(self) -> None:
        self.lo, self.hi = math.inf, -math.inf

    def observe(self, x: Tensor) -> None:
        flat = x.detach().reshape(-1).float()
        if CLIP_QUANTILE > 0 and flat.numel() * CLIP_QUANTILE >= 8:
            step = max(1, flat.numel() >> 22)  # torch.quantile takes at most 2^24 values
            q = torch.tensor([CLIP_QUANTILE, 1 - CLIP_QUANTILE])
            lo, hi = torch.quantile(flat[::step], q).tolist()
        else:
            lo, hi = (float(v) for v in torch.aminmax(flat))
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)

    def qparams(self) -> tuple[float, int]:
        return _qparams(self.lo, self.hi)


class _Site(nn.Module):
    """A quantised layer: fp32 and observing until `freeze`, int8 after."""

    def ranges(self) -> dict[str, _Range]:
        raise NotImplementedError

    def freeze(self) -> None:
        raise NotImplementedError


def _conv_args(conv: nn.Conv2d) -> dict:
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError("only zero-padded convolutions with explicit padding are quantised")
    return {"stride": list(conv.stride), "padding": list(conv.padding),
            "dilation": list(conv.dilation), "groups": conv.groups}


class _Conv:
    """One convolution's int8 form (weight, bias, geometry), shared by the modules below."""

    def __init__(self, weight: Tensor, bias: Tensor | None, args: dict) -> None:
        self.weight, self.bias, self.args = weight.detach().float(), bias, args
        self.packed: Tensor | None = None
        self.as_linear = False  # set by `pack`: `packed` is then a linear layer's weight

    def fp32(self, x: Tensor) -> Tensor:
        a = self.args
        return F.conv2d(x, self.weight, self.bias, a["stride"], a["padding"], a["dilation"],
                        a["groups"])

    def pack(self, x_q: tuple[float, int]) -> None:
        q, self.w_scales = _int8_weight(self.weight)
        self.w_zps = torch.zeros(q.shape[0], dtype=torch.long)
        self.x_q = x_q
        a = self.args
        self.as_linear = (q.shape[2:] == (1, 1) and a["stride"] == [1, 1] and a["groups"] == 1
                          and a["padding"] == [0, 0] and _pointwise_as_linear())
        if self.as_linear:
            self.packed = torch.ops.onednn.qlinear_prepack(q.reshape(q.shape[0], -1), None)
        else:
            self.packed = torch.ops.onednn.qconv_prepack(
                q, self.w_scales, x_q[0], x_q[1], a["stride"], a["padding"], a["dilation"],
                a["groups"], None)
        self.bias = None if self.bias is None else self.bias.detach().float().contiguous()
        self.weight = None  # only the packed int8 copy is kept

    def int8(self, xq: Tensor, out_q: tuple[float, int] | None, relu: bool = False,
             accum: tuple[Tensor, float, int] | None = None) -> Tensor:
        """uint8 in (``x_q``'s scale and zero point) -> uint8 (``out_q``) or fp32 (None);
        ``accum``: a uint8 tensor added before the ReLU (a residual)."""
        a = self.args
        scale, zp = out_q if out_q is not None else (1.0, 0)
        dtype = None if out_q is not None else torch.float32
        if self.as_linear:
            return self._int8_rows(xq, scale, zp, dtype, relu, accum)
        geometry = (a["stride"], a["padding"], a["dilation"], a["groups"])
        if accum is None:
            return torch.ops.onednn.qconv2d_pointwise(
                xq, *self.x_q, self.packed, self.w_scales, self.w_zps, self.bias, *geometry,
                scale, zp, dtype, "relu" if relu else "none", [], "")
        other, a_scale, a_zp = accum
        return torch.ops.onednn.qconv2d_pointwise.binary(
            xq, *self.x_q, self.packed, self.w_scales, self.w_zps, other, self.bias, *geometry,
            scale, zp, dtype, a_scale, a_zp, "sum", 1.0, "relu" if relu else "none", [], "")

    def _int8_rows(self, xq: Tensor, scale: float, zp: int, dtype: torch.dtype | None,
                   relu: bool, accum: tuple[Tensor, float, int] | None) -> Tensor:
        """`int8` as a linear product on the rows [N·H·W, C] of a channels-last map (a view)."""
        n, c, h, w = xq.shape
        rows = xq.permute(0, 2, 3, 1).reshape(-1, c)
        post = "relu" if relu else "none"
        if accum is None:
            y = torch.ops.onednn.qlinear_pointwise(
                rows, *self.x_q, self.packed, self.w_scales, self.w_zps, self.bias, scale, zp,
                dtype, post, [], "")
        else:
            other, a_scale, a_zp = accum
            other = other.permute(0, 2, 3, 1).reshape(-1, other.shape[1])
            y = torch.ops.onednn.qlinear_pointwise.binary(
                rows, *self.x_q, self.packed, self.w_scales, self.w_zps, other, self.bias,
                scale, zp, dtype, a_scale, a_zp, "sum", 1.0, post, [], "")
        return y.view(n, h, w, -1).permute(0, 3, 1, 2)


# ------------------------------------------------------------------------------ modules
class Int8Conv2d(_Site):
    """``relu(norm(conv(x)))`` with the convolution in int8: fp32 in and out.

    Replaces an ``nn.Conv2d`` (``norm`` None, no ReLU) or the FPN's ``ConvNorm`` (its ``norm``
    child and ``relu`` flag carried over)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = _Conv(conv.weight, None if conv.bias is None else conv.bias.detach().float(),
                          _conv_args(conv))
        self.norm = getattr(conv, "norm", None)
        self.relu = bool(getattr(conv, "relu", False))
        self.out_channels = conv.out_channels
        self.x_range = _Range()

    def ranges(self) -> dict[str, _Range]:
        return {"in": self.x_range}

    def freeze(self) -> None:
        self.conv.pack(self.x_range.qparams())

    def forward(self, x: Tensor) -> Tensor:
        if self.conv.packed is None:
            self.x_range.observe(x)
            y = self.conv.fp32(x)
        else:
            xq = _to_u8(x, *self.conv.x_q).contiguous(memory_format=torch.channels_last)
            y = self.conv.int8(xq, None)
        if self.norm is not None:
            y = self.norm(y)
        return F.relu(y) if self.relu else y


class Int8Linear(_Site):
    """``nn.Linear`` with an int8 product: fp32 (any leading shape) in and out.

    The first layer of an FFN (``feeds`` = its second layer) instead returns the hidden
    activation as uint8 with the ReLU fused, in the second layer's input scale, and the second
    layer takes it as it is: ``linear2(linear1(x).relu_())`` (`ffn_residual_norm`) then moves
    uint8 rather than fp32 through the 2048-wide hidden layer (``relu_`` on it is a no-op).
    """

    def __init__(self, linear: nn.Linear, feeds: Int8Linear | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._weight = linear.weight.detach().float()
        self.bias = None if linear.bias is None else linear.bias.detach().float().contiguous()
        self.feeds = [feeds] if feeds is not None else []  # a list: not a child module
        self.x_range = _Range()
        self.packed: Tensor | None = None
        self.fed = False  # True for an FFN's second layer: its input arrives quantised

    def weight(self) -> Tensor:
        """The weight as the int8 product sees it (a method, as torch's quantised layers have,
        so that code reading ``.weight`` as a tensor knows this layer is replaced)."""
        if self.packed is None:
            return self._weight
        return self._q.float() * self.w_scales[:, None]

    def ranges(self) -> dict[str, _Range]:
        return {"in": self.x_range}

    def freeze(self) -> None:
        self._q, self.w_scales = _int8_weight(self._weight)
        self.w_zps = torch.zeros(self.out_features, dtype=torch.long)
        self.x_q = self.x_range.qparams()
        self.packed = torch.ops.onednn.qlinear_prepack(self._q, None)
        self._weight = None

    def forward(self, x: Tensor) -> Tensor:
        if self.packed is None:  # calibrating
            self.x_range.observe(x)
            return F.linear(x, self._weight, self.bias)
        shape = x.shape
        rows = x.reshape(-1, shape[-1])
        x_q = self.x_q
        if x.dtype != torch.uint8:
            if LINEAR_INPUT_RANGE_PER_CALL:
                x_q = _qparams(*(float(v) for v in torch.aminmax(rows)))
            rows = _to_u8(rows, *x_q)
        elif not self.fed:
            raise TypeError("uint8 input for a layer that does not take it quantised")
        if self.feeds:
            out = torch.ops.onednn.qlinear_pointwise(
                rows, *x_q, self.packed, self.w_scales, self.w_zps, self.bias,
                *self.feeds[0].x_q, None, "relu", [], "")
        else:
            out = torch.ops.onednn.qlinear_pointwise(
                rows, *x_q, self.packed, self.w_scales, self.w_zps, self.bias, 1.0, 0,
                torch.float32, "none", [], "")
        return out.view(*shape[:-1], self.out_features)


class _FoldedConv(nn.Module):
    """A ResNet convolution with its frozen batch norm folded in; records its output range."""

    def __init__(self, conv: nn.Conv2d, bn: nn.Module) -> None:
        super().__init__()
        scale, shift = bn.scale_shift()
        weight = conv.weight.detach() * scale.view(-1, 1, 1, 1)
        bias = shift if conv.bias is None else conv.bias.detach() * scale + shift
        self.conv = _Conv(weight, bias.detach().float(), _conv_args(conv))
        self.out_range = _Range()
        self.out_q: tuple[float, int] | None = None

    def fp32(self, x: Tensor, relu: bool, add: Tensor | None = None) -> Tensor:
        y = self.conv.fp32(x)
        if add is not None:
            y = y.add_(add)
        if relu:
            y = F.relu(y, inplace=True)
        self.out_range.observe(y)
        return y


class Int8ResNetBody(_Site):
    """A `rvos.modeling.backbone.ResNetBody` in int8 from the image to res5: [N, 3, H, W] fp32
    -> res2..res5 fp32 (channels-last), as the fp32 body returns them."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.stem = _FoldedConv(body.conv1, body.bn1)
        self.x_range = _Range()
        self.stages = nn.ModuleList()
        for i in range(1, 5):
            blocks = nn.ModuleList()
            for block in getattr(body, f"layer{i}"):
                parts = nn.ModuleDict({
                    "conv1": _FoldedConv(block.conv1, block.bn1),
                    "conv2": _FoldedConv(block.conv2, block.bn2),
                    "conv3": _FoldedConv(block.conv3, block.bn3)})
                if block.downsample is not None:
                    parts["downsample"] = _FoldedConv(*block.downsample)
                blocks.append(parts)
            self.stages.append(blocks)
        self.frozen = False

    def _convs(self) -> Iterator[tuple[str, _FoldedConv]]:
        yield "stem", self.stem
        for name, module in self.stages.named_modules():
            if isinstance(module, _FoldedConv):
                yield f"stages.{name}", module

    def ranges(self) -> dict[str, _Range]:
        return {"in": self.x_range, **{f"{n}.out": c.out_range for n, c in self._convs()}}

    def freeze(self) -> None:
        x_q = self.x_range.qparams()
        self.stem.conv.pack(x_q)
        self.stem.out_q = self.stem.out_range.qparams()
        prev = self.stem.out_q
        for blocks in self.stages:
            for parts in blocks:
                for key in ("conv1", "conv2", "conv3", "downsample"):
                    if key in parts:
                        conv = parts[key]
                        src = {"conv2": parts["conv1"].out_q, "conv3": parts["conv2"].out_q}
                        conv.conv.pack(src.get(key, prev))
                        conv.out_q = conv.out_range.qparams()
                prev = parts["conv3"].out_q
        self.frozen = True

    def forward(self, x: Tensor) -> list[Tensor]:
        x = x.contiguous(memory_format=torch.channels_last)
        if not self.frozen:
            return self._calibrate(x)
        h = self.stem.conv.int8(_to_u8(x, *self.stem.conv.x_q), self.stem.out_q, relu=True)
        h = _max_pool_3x3_s2_u8(h)  # uint8, same scale: max commutes with the affine map
        features = []
        for blocks in self.stages:
            for parts in blocks:
                if "downsample" in parts:
                    down = parts["downsample"]
                    identity = (down.conv.int8(h, down.out_q), *down.out_q)
                else:
                    identity = (h, *parts["conv1"].conv.x_q)
                y = parts["conv1"].conv.int8(h, parts["conv1"].out_q, relu=True)
                y = parts["conv2"].conv.int8(y, parts["conv2"].out_q, relu=True)
                h = parts["conv3"].conv.int8(y, parts["conv3"].out_q, relu=True, accum=identity)
            features.append(_from_u8(h, *parts["conv3"].out_q))
        return features

    def _calibrate(self, x: Tensor) -> list[Tensor]:
        self.x_range.observe(x)
        h = F.max_pool2d(self.stem.fp32(x, relu=True), 3, 2, 1)
        features = []
        for blocks in self.stages:
            for parts in blocks:
                identity = parts["downsample"].fp32(h, relu=False) if "downsample" in parts else h
                y = parts["conv1"].fp32(h, relu=True)
                y = parts["conv2"].fp32(y, relu=True)
                h = parts["conv3"].fp32(y, relu=True, add=identity)
            features.append(h)
        return features


def _max_pool_3x3_s2_u8(x: Tensor) -> Tensor:
    """``F.max_pool2d(x, 3, 2, 1)`` of a uint8 channels-last map [N, C, H, W], bit for bit: the
    maximum of 9 strided views of a zero-padded copy (0, uint8's least value, never wins). torch
    2.13's uint8 pooling refuses such maps channels-last ("input_depth * input_height *
    input_width <= max") and took 78 ms for 5 frames in NCHW with its copies; this, 2 ms."""
    n, c, h, w = x.shape
    ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    padded = x.new_zeros(n, h + 2, w + 2, c).permute(0, 3, 1, 2)  # channels-last
    padded[:, :, 1:h + 1, 1:w + 1] = x
    out = padded[:, :, 0:2 * ho:2, 0:2 * wo:2].clone(memory_format=torch.channels_last)
    for dy in range(3):
        for dx in range(3):
            if dy or dx:
                torch.maximum(out, padded[:, :, dy:dy + 2 * ho:2, dx:dx + 2 * wo:2], out=out)
    return out


# ------------------------------------------------------------------------------ model
def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def install_sites(model: nn.Module) -> dict[str, _Site]:
    """Replace the layers the module docstring lists by their int8 forms, still fp32 and
    observing (`calibrate`, then `freeze_sites`); returns them by module path."""
    sites: dict[str, _Site] = {}
    modules = dict(model.named_modules())
    for name, module in modules.items():
        if isinstance(module, ResNetBody):
            sites[name] = Int8ResNetBody(module)
    taken = tuple(f"{n}." for n in sites)
    for name, module in modules.items():
        if (isinstance(module, nn.Conv2d) and name.startswith(_CONV_PARTS)
                and not name.startswith(taken)):
            sites[name] = Int8Conv2d(module)
    for name, module in modules.items():
        if not name.startswith(_LINEAR_PARTS) or name in sites:
            continue
        decoder = name.startswith("transformer.decoder.")
        if isinstance(getattr(module, "linear1", None), nn.Linear) and not decoder:
            second = Int8Linear(module.linear2)
            second.fed = True
            sites[f"{name}.linear2"] = second
            sites[f"{name}.linear1"] = Int8Linear(module.linear1, feeds=second)
        elif type(module) is nn.Linear and (
                name.endswith(_DECODER_LINEARS) if decoder else name.endswith(_LINEAR_NAMES)):
            sites[name] = Int8Linear(module)
    for name, site in sites.items():
        _set(model, name, site)
    return sites


def site_ranges(sites: dict[str, _Site]) -> dict[str, _Range]:
    return {f"{name}:{key}": r for name, site in sites.items()
            for key, r in site.ranges().items()}


def freeze_sites(sites: dict[str, _Site]) -> None:
    # The second layer of an FFN first: the first layer writes in its input scale.
    for site in sorted(sites.values(), key=lambda s: not getattr(s, "fed", False)):
        site.freeze()


def calibrate(model: nn.Module, clips: Iterable[tuple[Tensor, str]],
              sites: dict[str, _Site]) -> int:
    """Run ``model`` (its `install_sites` not yet frozen) in fp32 on ``clips`` (normalised
    frames [T, 3, H, W], caption); returns the frames seen."""
    seen = 0
    with torch.inference_mode():
        for frames, caption in clips:
            model(frames, [caption])
            seen += frames.shape[0]
    missing = [k for k, r in site_ranges(sites).items() if not math.isfinite(r.lo)]
    if missing:
        raise ValueError(f"calibration never reached {missing[0]}")
    return seen


@functools.lru_cache(maxsize=1)
def static_int8_available() -> bool:
    """Whether this torch build runs oneDNN's int8 convolution and linear kernels."""
    try:
        with torch.random.fork_rng():  # the probe leaves the caller's random state alone
            torch.manual_seed(0)
            conv, linear = nn.Conv2d(4, 4, 3, padding=1), nn.Linear(4, 4)
            x, rows = torch.randn(1, 4, 5, 5), torch.randn(3, 4)
        sites = {"c": Int8Conv2d(conv), "l": Int8Linear(linear)}
        sites["c"](x)
        sites["l"](rows)
        freeze_sites(sites)
        with torch.inference_mode():
            sites["c"](x)
            sites["l"](rows)
        return True
    except (RuntimeError, AttributeError, NotImplementedError) as error:
        log.info("static int8 unavailable in this torch build: %s", error)
        return False


def quantize_static(model: nn.Module, clips: Iterable[tuple[Tensor, str]] | None = None,
                    store: bool = True, path: Path | None = None) -> dict[str, str]:
    """Quantise ``model`` (a `rvos.modeling.ReferFormer` in fp32) to static int8 in place.

    The activation ranges come from the calibration stored for this model's weights when there
    is one (and ``clips`` is None); else from running it on ``clips`` (default `example_clips`),
    then stored (``store``) in the user cache, or at ``path`` (how the packaged model's file is
    written). Returns where they came from: ``source``
    (``"stored"`` or ``"calibrated"``), ``path`` (the file read or written, "" if none),
    ``digest``.
    """
    digest = model_digest(model)
    found = None
    if clips is None:
        for candidate in calibration_candidates(digest):
            loaded = load_calibration(candidate, digest) if candidate.is_file() else None
            if loaded is not None:
                found = candidate, loaded[0]
                break
    sites = install_sites(model)
    ranges = site_ranges(sites)
    if found is not None and set(found[1]) != set(ranges):
        log.warning("int8 calibration %s does not match this model's layers; calibrating",
                    found[0])
        found = None
    if found is not None:
        for key, (lo, hi) in found[1].items():
            ranges[key].lo, ranges[key].hi = lo, hi
        info = {"source": "stored", "path": str(found[0]), "digest": digest}
    else:
        default = clips is None
        frames = calibrate(model, example_clips(model) if default else clips, sites)
        path = path or calibration_candidates(digest)[-1]
        source = (f"example clips, {frames} frames" if default
                  else f"given clips, {frames} frames")
        written = ""
        if store:
            try:
                save_calibration(path, {k: (r.lo, r.hi) for k, r in ranges.items()}, digest,
                                 source)
                written = str(path)
            except OSError as error:
                log.warning("could not store the int8 calibration in %s: %s", path, error)
        info = {"source": "calibrated", "path": written, "digest": digest, "clips": source}
    freeze_sites(sites)
    return info
