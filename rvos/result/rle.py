"""Run-length masks and int8 logits: how a result stores masks compactly."""

from __future__ import annotations

import zlib

import numpy as np
import torch

__all__ = [
    "decode_rle",
    "encode_rle",
    "encode_rle_batch",
    "quantize_logits",
    "rle_area",
    "dequantize_logits",
]


# int8 logits in steps of 1/16: ±8 covers probabilities 0.0003..0.9997, i.e. every threshold a
# person would pick, and the step moves a probability near 0.5 by at most 0.008.
_LOGIT_STEP = 1.0 / 16.0


def encode_rle(mask: np.ndarray) -> np.ndarray:
    """Run-length encode a bool mask ``[H, W]`` in row-major order.

    Returns uint32 run lengths alternating background/object, starting with background (a zero
    first run when the first pixel is object); they sum to ``H * W``.
    """
    flat = np.ascontiguousarray(mask, dtype=bool).reshape(-1)
    if flat.size == 0:
        return np.zeros(1, dtype=np.uint32)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds)
    if flat[0]:
        counts = np.concatenate(([0], counts))
    return counts.astype(np.uint32)


def encode_rle_batch(masks: torch.Tensor) -> list[np.ndarray]:
    """`encode_rle` of every mask of a bool tensor ``[N, H, W]``, on the tensor's device.

    Only the positions where a mask changes value leave the device, so a GPU sends a few kB per
    frame to the host instead of the whole mask.
    """
    n = masks.shape[0]
    flat = masks.reshape(n, -1)
    size = flat.shape[1]
    frame, pos = torch.nonzero(flat[:, 1:] != flat[:, :-1], as_tuple=True)
    first = flat[:, 0].cpu().numpy()
    frame, pos = frame.cpu().numpy(), pos.cpu().numpy() + 1
    splits = np.searchsorted(frame, np.arange(1, n))
    out = []
    for i, change in enumerate(np.split(pos, splits)):
        counts = np.diff(np.concatenate(([0], change, [size])))
        if first[i]:
            counts = np.concatenate(([0], counts))
        out.append(counts.astype(np.uint32))
    return out


def decode_rle(counts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of `encode_rle`: bool ``[H, W]``."""
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts.astype(np.int64))
    if flat.size != shape[0] * shape[1]:
        raise ValueError(f"run lengths cover {flat.size} pixels, not {shape[0]}×{shape[1]}")
    return flat.reshape(shape)


def rle_area(counts: np.ndarray) -> int:
    """Object pixels of an `encode_rle` mask."""
    return int(counts[1::2].sum(dtype=np.int64))


def quantize_logits(logits: np.ndarray | torch.Tensor) -> list[bytes]:
    """float ``[N, h, w]`` mask logits -> per map, zlib-compressed int8 in steps of 1/16
    (clamped to ±8). Rounds on the tensor's device; only int8 leaves it."""
    x = torch.as_tensor(logits).detach()
    q = torch.clamp(torch.round(x.float() / _LOGIT_STEP), -128, 127).to(torch.int8)
    return [zlib.compress(m.tobytes(), 1) for m in q.cpu().numpy()]


def dequantize_logits(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of `quantize_logits`: float32 of ``shape`` (``[h, w]``, or ``[Q, h, w]`` for a
    block of every query's logits)."""
    q = np.frombuffer(zlib.decompress(data), dtype=np.int8).reshape(shape)
    return q.astype(np.float32) * _LOGIT_STEP
