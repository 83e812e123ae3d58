"""A small (2+1)-D convolutional video backbone for the built-in model.

ReferFormer decodes queries frame by frame: class scores, boxes and masks of frame t are computed
from frame t's features alone (the queries are shared over frames, but nothing else mixes time
after the backbone apart from the cross-modal FPN). So an expression about motion ("the square
moving up") can only be resolved if the backbone already encodes motion in each frame's
features. The released models get that from Video-Swin; this backbone gets it cheaply by
following every per-frame 3×3 convolution with a temporal convolution over neighbouring frames
(a "(2+1)-D" factorisation, Tran et al., 2018). Stacked over the four stages, frame t sees frames
t-4 .. t+4 at stride 32.

Clips are padded with zeros in time, so a one-frame clip (T = 1) works and sees no motion.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["SmallVideoBackbone"]


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"norm must be 'bn' or 'gn', got {kind!r}")


class TemporalConv(nn.Module):
    """1-D convolution over the frames of each video, applied at every pixel.

    Input/output ``[B*T, C, H, W]`` with the T frames of a video consecutive.
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"temporal kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv3d(
            channels,
            channels,
            kernel_size=(kernel_size, 1, 1),
            padding=(kernel_size // 2, 0, 0),
            bias=False,
        )

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        n, c, h, w = x.shape
        b = n // num_frames
        video = x.view(b, num_frames, c, h, w).transpose(1, 2)  # [B, C, T, H, W]
        out = self.conv(video)
        return out.transpose(1, 2).reshape(n, c, h, w)


class Block21D(nn.Module):
    """Residual block: 3×3 spatial conv → norm → ReLU → temporal conv → norm, plus identity."""

    def __init__(self, channels: int, temporal_kernel: int, norm: str) -> None:
        super().__init__()
        self.spatial = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm1 = _norm(norm, channels)
        self.temporal = TemporalConv(channels, temporal_kernel)
        self.norm2 = _norm(norm, channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        y = self.relu(self.norm1(self.spatial(x)))
        y = self.norm2(self.temporal(y, num_frames))
        return self.relu(x + y)


class Stage(nn.Module):
    """Stride-2 3×3 conv (channel change) followed by ``depth`` (2+1)-D residual blocks."""

    def __init__(
        self, in_channels: int, out_channels: int, depth: int, temporal_kernel: int, norm: str
    ) -> None:
        super().__init__()
        self.down = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.ModuleList(
            Block21D(out_channels, temporal_kernel, norm) for _ in range(depth)
        )

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        x = self.down(x)
        for block in self.blocks:
            x = block(x, num_frames)
        return x


class SmallVideoBackbone(nn.Module):
    """Four-stage (2+1)-D conv net returning feature maps at strides 4, 8, 16 and 32.

    Arguments:
        channels: output channels of the four stages (``num_channels``).
        depths: number of (2+1)-D residual blocks per stage.
        stem_channels: width of the stride-2 stem convolution.
        temporal_kernel: odd number of frames each temporal convolution sees.
        norm: ``"bn"`` (batch norm; fastest) or ``"gn"`` (group norm; batch-size independent).
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 128, 192),
        depths: Sequence[int] = (1, 1, 1, 1),
        stem_channels: int = 16,
        temporal_kernel: int = 3,
        norm: str = "bn",
    ) -> None:
        super().__init__()
        if len(channels) != 4 or len(depths) != 4:
            raise ValueError(
                f"channels and depths need 4 entries (one per stride 4/8/16/32), "
                f"got {list(channels)} and {list(depths)}"
            )
        self.strides = [4, 8, 16, 32]
        self.num_channels = [int(c) for c in channels]
        # Stride 2 stem; the first stage's stride-2 conv brings it to stride 4.
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_channels, 3, stride=2, padding=1, bias=False),
            _norm(norm, stem_channels),
            nn.ReLU(inplace=True),
        )
        in_ch = stem_channels
        stages = []
        for out_ch, depth in zip(self.num_channels, depths, strict=True):
            stages.append(Stage(in_ch, out_ch, int(depth), temporal_kernel, norm))
            in_ch = out_ch
        self.stages = nn.ModuleList(stages)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, frames: Tensor, num_frames: int) -> list[Tensor]:
        """Arguments:
            frames: ``[B*T, 3, H, W]``, the T frames of each video consecutive.
            num_frames: T.
        Returns:
            4 tensors ``[B*T, C_i, ceil(H/s_i), ceil(W/s_i)]`` for strides ``s_i`` 4, 8, 16, 32.
        """
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be [B*T, 3, H, W], got {tuple(frames.shape)}")
        if num_frames < 1 or frames.shape[0] % num_frames != 0:
            raise ValueError(
                f"num_frames={num_frames} does not divide the {frames.shape[0]} frames given"
            )
        x = self.stem(frames)
        features = []
        for stage in self.stages:
            x = stage(x, num_frames)
            features.append(x)
        return features
