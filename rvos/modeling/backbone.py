"""Visual backbones: ResNet-50/101 with frozen batch norm (the released ResNet models).

Every backbone maps a batch of frames ``[N, 3, H, W]`` (N = B*T, frames of a video consecutive)
to four feature maps at strides 4, 8, 16 and 32 and exposes ``strides`` and ``num_channels``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rvos.modeling.small_backbone import SmallVideoBackbone
from rvos.modeling.swin import SWIN_CONFIGS, build_swin

RESNET_DEPTHS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters (buffers, never trained).

    The released models were trained with frozen ImageNet statistics; keeping them as buffers
    makes the state dict identical to the official one (``weight/bias/running_mean/var``).
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def scale_shift(self) -> tuple[Tensor, Tensor]:
        """The affine map this layer applies, ``x * scale + shift`` per channel: [C], [C]."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        scale, shift = self.scale_shift()
        return x * scale[None, :, None, None].to(x.dtype) + shift[None, :, None, None].to(x.dtype)


def conv_frozen_bn(conv: nn.Conv2d, bn: FrozenBatchNorm2d, x: Tensor) -> Tensor:
    """``bn(conv(x))`` as one convolution, the norm folded into the kernel and a bias.

    Without autograd only (the caller checks). Folding costs one pass over the weights per call
    (~25 M values for ResNet-50, tens of milliseconds) and saves two passes over every feature
    map, which at 360×640 are ~50× larger; recomputing it each call means it can never be stale.
    """
    scale, shift = bn.scale_shift()
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return F.conv2d(x, weight.to(x.dtype), bias.to(x.dtype), conv.stride, conv.padding,
                    conv.dilation, conv.groups)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: the stride sits on the 3×3 convolution."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = FrozenBatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = FrozenBatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = FrozenBatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                FrozenBatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + identity)
        # Inference: the same function with every norm folded into its convolution.
        identity = x if self.downsample is None else conv_frozen_bn(*self.downsample, x)
        out = F.relu(conv_frozen_bn(self.conv1, self.bn1, x), inplace=True)
        out = F.relu(conv_frozen_bn(self.conv2, self.bn2, out), inplace=True)
        out = conv_frozen_bn(self.conv3, self.bn3, out)
        return F.relu(out.add_(identity), inplace=True)


class ResNetBody(nn.Module):
    def __init__(self, depths: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = 64
        for i, (depth, width) in enumerate(zip(depths, (64, 128, 256, 512), strict=False), start=1):
            blocks = []
            for j in range(depth):
                stride = 2 if (j == 0 and i > 1) else 1
                blocks.append(Bottleneck(in_channels, width, stride))
                in_channels = width * Bottleneck.expansion
            setattr(self, f"layer{i}", nn.Sequential(*blocks))

    def forward(self, x: Tensor) -> list[Tensor]:
        x = (self.bn1(self.conv1(x)) if torch.is_grad_enabled()
             else conv_frozen_bn(self.conv1, self.bn1, x))
        x = self.maxpool(self.relu(x))
        features = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            features.append(x)
        return features


class ResNetBackbone(nn.Module):
    """ResNet-50/101 returning res2..res5 (strides 4, 8, 16, 32)."""

    strides = [4, 8, 16, 32]
    num_channels = [256, 512, 1024, 2048]
    # Every frame is computed alone: a long clip may go through a few frames at a time.
    frames_independent = True

    def __init__(self, name: str = "resnet50") -> None:
        super().__init__()
        if name not in RESNET_DEPTHS:
            raise ValueError(f"unknown ResNet {name!r}; expected one of {sorted(RESNET_DEPTHS)}")
        self.body = ResNetBody(RESNET_DEPTHS[name])

    def forward(self, frames: Tensor, num_frames: int) -> list[Tensor]:
        """frames: [B*T, 3, H, W] -> 4 maps [B*T, C_i, H/s_i, W/s_i] (ceil); frames are
        independent.

        The maps come out channels-last (``torch.channels_last``): convolutions run faster in
        that layout on CPUs and GPUs, and it is the layout every later stage reads, as
        tokens with the channels innermost, so their flattening needs no copy."""
        return self.body(frames.contiguous(memory_format=torch.channels_last))


def build_backbone(name: str, **kwargs) -> nn.Module:
    """Backbone by name: ``resnet50``, ``resnet101``, the released Swin / Video-Swin backbones
    (``swin_{t,s,b,l}_p4w7``, ``video_swin_{t,s,b}_p4w7``; ``kwargs`` may change fields of their
    `rvos.modeling.swin.SwinConfig`), or ``small3d`` (the built-in model's)."""
    if name in RESNET_DEPTHS:
        return ResNetBackbone(name)
    if name in SWIN_CONFIGS:
        return build_swin(name, **kwargs)
    if name == "small3d":
        return SmallVideoBackbone(**kwargs)
    raise ValueError(
        f"backbone {name!r} is not supported; rvos builds "
        f"{', '.join([*RESNET_DEPTHS, *SWIN_CONFIGS])} and small3d"
    )
