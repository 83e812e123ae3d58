"""COCO run-length masks (the ``{"size": [h, w], "counts": ...}`` objects of MeViS's
``mask_dict.json``), read and written without pycocotools.

The format, as the COCO mask API defines it:

* **Runs.** The mask is flattened in column-major order (down the first column, then the
  next); ``counts`` are the lengths of its alternating runs, starting with background, so a
  mask whose first pixel is object starts with a run of 0. The runs sum to ``h * w``.
* **Compressed string.** Each run from the fourth on is stored as the difference from the run
  two places before it (runs of the same kind change little). Every value is then written as
  a little-endian sequence of 5-bit groups, one ASCII character per group: the character is
  ``48 + group``, plus 32 when another group follows. A value is signed: the top bit (16) of
  its last group is the sign, so the last group stops once the rest of the value is all sign
  bits (0 for a positive value, -1 for a negative one).

The uncompressed form, ``counts`` as a list of integers, is read too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "RleError",
    "counts_from_string",
    "counts_to_string",
    "decode_coco_rle",
    "encode_coco_rle",
]


class RleError(ValueError):
    """A run-length mask that does not follow the COCO format."""


def counts_to_string(counts: Sequence[int]) -> str:
    """Runs → COCO's compressed string (see the module docstring)."""
    out: list[str] = []
    for i, run in enumerate(counts):
        x = int(run) - (int(counts[i - 2]) if i > 2 else 0)
        while True:
            group = x & 0x1F
            x >>= 5  # arithmetic shift: a negative value tends to -1
            more = x != -1 if group & 0x10 else x != 0
            out.append(chr(48 + group + (0x20 if more else 0)))
            if not more:
                break
    return "".join(out)


def counts_from_string(text: str) -> list[int]:
    """COCO's compressed string → runs. Raises RleError on a character outside the code or a
    value cut off at the end."""
    counts: list[int] = []
    x = shift = 0
    for pos, char in enumerate(text):
        c = ord(char) - 48
        if not 0 <= c < 64:
            raise RleError(f"character {char!r} at {pos} is not part of the COCO RLE code")
        x |= (c & 0x1F) << shift
        shift += 5
        if c & 0x20:
            continue
        if c & 0x10:
            x -= 1 << shift  # the last group's top bit is the sign
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
        x = shift = 0
    if shift:
        raise RleError("the RLE string ends inside a value")
    return counts


def encode_coco_rle(mask: np.ndarray) -> dict:
    """A bool-like mask ``[h, w]`` → ``{"size": [h, w], "counts": <compressed string>}``."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected an [h, w] mask, got shape {mask.shape}")
    flat = mask.astype(bool).reshape(-1, order="F")
    if flat.size == 0:
        counts = [0]
    else:
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        runs = np.diff(np.concatenate(([0], change, [flat.size])))
        counts = ([0] if flat[0] else []) + runs.tolist()
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts_to_string(counts)}


def decode_coco_rle(rle: Mapping) -> np.ndarray:
    """``{"size": [h, w], "counts": str | bytes | list}`` → bool ``[h, w]``.

    Raises RleError when the object is not a COCO RLE or its runs do not cover ``h * w``
    pixels exactly.
    """
    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise RleError('expected {"size": [h, w], "counts": ...}')
    size = rle["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and v >= 0 for v in size)
    ):
        raise RleError(f"size must be [h, w] with h, w >= 0, got {size!r}")
    h, w = size
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if isinstance(counts, str):
        runs = counts_from_string(counts)
    elif isinstance(counts, list) and all(isinstance(v, int) for v in counts):
        runs = counts
    else:
        raise RleError("counts must be a string (compressed) or a list of integers")
    if any(r < 0 for r in runs) or sum(runs) != h * w:
        raise RleError(f"the runs cover {sum(runs)} pixels (some negative?), the size {h}x{w}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape((w, h)).T.copy()
