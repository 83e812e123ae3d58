"""Label masks on disk, one way for every writer (rvos predict, the app, rvos dataset, the
synthetic splits): the DAVIS palette, label PNGs (palette images whose pixel values are object
ids: 0 background, k the k-th object), and zipped mask folders."""

from __future__ import annotations

import functools
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from rvos.media.probe import PathLike

__all__ = [
    "PNG_LEVEL",
    "davis_palette",
    "label_image",
    "label_png_bytes",
    "read_label_png",
    "write_label_png",
    "zip_folder",
]

# zlib level of the mask PNGs: a 640×360 mask takes 1 ms at level 1 and 2.9 ms at the default 6,
# for 2.4 kB instead of 1.9 kB; every frame of every expression writes one.
PNG_LEVEL = 1


@functools.cache
def _davis_palette() -> np.ndarray:
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        # PASCAL VOC bit-interleaved colour map: bit j of channel c comes from bit 3*j + c of i.
        c, rgb = i, [0, 0, 0]
        for j in range(8):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << (7 - j)
            c >>= 3
        pal[i] = rgb
    # The DAVIS palette file differs from VOC in two ways: 191 instead of 192 in its first 22
    # entries, and a gray ramp (i, i, i) from entry 22 on.
    pal[:22][pal[:22] == 192] = 191
    pal[22:] = np.arange(22, 256, dtype=np.uint8)[:, None]
    return pal


def davis_palette() -> np.ndarray:
    """The DAVIS mask palette: ``uint8 [256, 3]`` RGB, entry 0 black (background). The one
    palette of every mask rvos writes and of the colours it draws objects in
    (`rvos.viz.colors.palette`)."""
    return _davis_palette().copy()


def label_image(labels: np.ndarray) -> Image.Image:
    """A label map ``[H, W]`` (integers 0..255) as a palette ("P") image in the DAVIS palette."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D [H, W] array, got shape {labels.shape}")
    if labels.dtype != np.uint8:
        out_of_range = labels.size > 0 and (labels.min() < 0 or labels.max() > 255)
        if labels.dtype.kind not in "biu" or out_of_range:
            raise ValueError(f"labels must be integers in 0..255 (uint8), got dtype {labels.dtype}")
        labels = labels.astype(np.uint8)
    height, width = labels.shape
    image = Image.frombytes("P", (width, height), np.ascontiguousarray(labels).tobytes())
    image.putpalette(_davis_palette().reshape(-1).tolist())
    return image


def write_label_png(path: PathLike, labels: np.ndarray) -> Path:
    """Save a label map as a palette PNG.

    Arguments:
        path: output ``.png`` path (parent folders are created).
        labels: ``uint8 [H, W]``: 0 is background, ``k >= 1`` the k-th object, so object k has
            the colour ``rvos.viz.colors.palette(n)[k - 1]``.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    label_image(labels).save(out, format="PNG", compress_level=PNG_LEVEL)
    return out


def label_png_bytes(labels: np.ndarray) -> bytes:
    """`write_label_png`'s file, in memory."""
    buffer = io.BytesIO()
    label_image(labels).save(buffer, format="PNG", compress_level=PNG_LEVEL)
    return buffer.getvalue()


def read_label_png(path: PathLike) -> np.ndarray:
    """Object ids ``uint8 [H, W]`` of a palette, greyscale or bilevel PNG (the palette itself
    is ignored: any DAVIS-style annotation reads)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Mask file not found: {str(p)!r}")
    with Image.open(p) as image:
        if image.mode not in ("P", "L", "1"):
            raise ValueError(
                f"{str(p)!r} is a {image.mode} image; expected a palette (P) or greyscale (L) "
                "PNG whose pixel values are object ids"
            )
        return np.array(image, dtype=np.uint8)


def zip_folder(folder: PathLike, zip_path: PathLike) -> Path:
    """Zip every file under ``folder`` (paths stored relative to it, sorted for reproducibility)."""
    src = Path(folder)
    if not src.is_dir():
        raise FileNotFoundError(f"Folder to zip not found: {str(src)!r}")
    out = Path(zip_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.resolve() != out.resolve())
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for file in files:
            zf.write(file, file.relative_to(src).as_posix())
    return out
