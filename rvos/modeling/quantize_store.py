"""Where a static int8 calibration comes from and where it is kept: the default calibration
clips (the example clips), the key of a model's weights, the safetensors file of activation
ranges beside the packaged weights or in the user cache (`rvos.modeling.quantize` uses them)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from rvos.modeling.processing import model_short_side, preprocess
from rvos.paths import cache_dir

log = logging.getLogger(__name__)

CALIBRATION_FORMAT = "rvos-int8-calibration"
CALIBRATION_VERSION = "3"  # 2: ranges clipped at the CLIP_QUANTILE quantiles; 3: fewer sites
CALIBRATION_FILE = "int8_calibration.safetensors"
PACKAGED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
# The calibration frames ship inside the package (written by tools/make_calibration_frames.py
# from the example clips), so int8 calibrates wherever rvos is installed, not only in a checkout.
CALIBRATION_DIR = PACKAGED_WEIGHTS / "calibration"
# Calibration frames per clip and clips: enough to see every kind of content the examples have
# (one real clip, synthetic shapes), few enough that calibrating costs a few forward passes.
CALIBRATION_FRAMES = 4
CALIBRATION_CLIPS = 3


def example_clips(model: nn.Module, frames: int = CALIBRATION_FRAMES,
                  clips: int = CALIBRATION_CLIPS) -> list[tuple[Tensor, str]]:
    """The default calibration set: ``frames`` frames of each of the first ``clips`` example
    clips (the real clip first) with their first expression, at the model's input size; read
    from the frames packaged in `CALIBRATION_DIR` (lossless copies of the clips' first frames)."""
    listing = CALIBRATION_DIR / "clips.json"
    if not listing.is_file():
        raise FileNotFoundError("the frames rvos calibrates int8 on are not installed "
                                "(rvos/weights/calibration)")
    chosen = json.loads(listing.read_text())["clips"][:clips]
    device = next(model.parameters()).device
    out = []
    for entry in chosen:
        video = np.stack([_read_frame(CALIBRATION_DIR / name)
                          for name in entry["frames"][:frames]])
        x = preprocess(video, model_short_side(model)).to(device)
        out.append((x, entry["expression"]))
    return out


def _read_frame(path: Path) -> np.ndarray:
    """One packaged calibration frame, uint8 RGB [H, W, 3]."""
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise FileNotFoundError(f"unreadable calibration frame {path.name}")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------------------ storage
def model_digest(model: nn.Module) -> str:
    """sha256 of the weights (names, shapes, dtypes, values) and the architecture: the key a
    calibration is stored under."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        h.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_calibration(path: Path, ranges: dict[str, tuple[float, float]], digest: str,
                     source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: torch.tensor(v, dtype=torch.float32) for k, v in sorted(ranges.items())}
    tmp = path.with_suffix(".part")
    save_file(tensors, str(tmp), metadata={
        "format": CALIBRATION_FORMAT, "version": CALIBRATION_VERSION, "model_sha256": digest,
        "source": source})
    tmp.replace(path)


def load_calibration(path: Path, digest: str | None = None
                     ) -> tuple[dict[str, tuple[float, float]], dict[str, str]] | None:
    """(ranges, metadata) from ``path``, or None when it is not a calibration of this format
    (and, with ``digest``, of the model with that digest)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != CALIBRATION_FORMAT or (
                    meta.get("version") != CALIBRATION_VERSION):
                return None
            if digest is not None and meta.get("model_sha256") != digest:
                return None
            names = f.keys()  # safe_open is not iterable itself
            ranges = {k: tuple(float(v) for v in f.get_tensor(k).tolist()) for k in names}
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:  # calibrate again
        log.warning("int8 calibration %s unreadable: %s", path, error)
        return None
    return ranges, meta


def calibration_candidates(digest: str) -> list[Path]:
    """Where a calibration of the model ``digest`` may be: beside the packaged weights, then in
    the user cache (the first is where a new one is written when the package is writable)."""
    return [*sorted(PACKAGED_WEIGHTS.glob(f"*/{CALIBRATION_FILE}")),
            cache_dir() / "int8" / f"{digest[:32]}.safetensors"]
