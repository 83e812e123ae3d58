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
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Calibration frames per clip and clips: enough to see every kind of content the examples have
# (one real clip, synthetic shapes), few enough that calibrating costs a few forward passes.
CALIBRATION_FRAMES = 4
CALIBRATION_CLIPS = 3


def example_clips(model: nn.Module, frames: int = CALIBRATION_FRAMES,
                  clips: int = CALIBRATION_CLIPS) -> list[tuple[Tensor, str]]:
    """The default calibration set: ``frames`` frames of each of the first ``clips`` example
    clips (the real clip first) with their first expression, at the model's input size."""
    listing = EXAMPLES / "examples.json"
    if not listing.is_file():
        raise FileNotFoundError("the example clips rvos calibrates int8 on are not installed")
    entries = json.loads(listing.read_text())
    chosen = (entries.get("real", []) + entries.get("synthetic", []))[:clips]
    device = next(model.parameters()).device
    out = []
    for entry in chosen:
        video = _first_frames(EXAMPLES / entry["video"], frames)
        x = preprocess(video, model_short_side(model)).to(device)
        out.append((x, entry["expressions"][0]))
    return out


def _first_frames(path: Path, count: int) -> np.ndarray:
    """The first ``count`` frames of the video at ``path``, uint8 RGB [T, H, W, 3] (OpenCV's
    decoder: calibration needs pixels only, not `rvos.media`'s timing, which sits a layer
    above the model)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise FileNotFoundError(f"no frames in the calibration clip {path.name}")
    return np.stack(frames)


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
