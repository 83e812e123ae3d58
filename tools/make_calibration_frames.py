"""Write the int8 calibration frames that ship inside the package (rvos/weights/calibration/).

    python tools/make_calibration_frames.py

The first CALIBRATION_FRAMES frames of each of the first CALIBRATION_CLIPS example clips (the
real clip first, then the synthetic ones, as examples/examples.json lists them), decoded with
OpenCV and stored as lossless WebP (decoding them gives the very same pixels), with each clip's
first expression in clips.json. `rvos.modeling.quantize_store` calibrates on them, so int8
works wherever rvos is installed, not only in a checkout that has examples/.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rvos.modeling.quantize_store import (  # noqa: E402
    CALIBRATION_CLIPS,
    CALIBRATION_DIR,
    CALIBRATION_FRAMES,
)


def main() -> int:
    listing = json.loads((ROOT / "examples" / "examples.json").read_text())
    chosen = (listing.get("real", []) + listing.get("synthetic", []))[:CALIBRATION_CLIPS]
    CALIBRATION_DIR.mkdir(parents=True, exist_ok=True)
    for old in CALIBRATION_DIR.glob("*.webp"):
        old.unlink()
    clips = []
    for i, entry in enumerate(chosen):
        capture = cv2.VideoCapture(str(ROOT / "examples" / entry["video"]))
        names = []
        while len(names) < CALIBRATION_FRAMES:
            ok, frame = capture.read()
            if not ok:
                break
            ok, data = cv2.imencode(".webp", frame, [cv2.IMWRITE_WEBP_QUALITY, 101])
            assert ok and (cv2.imdecode(data, cv2.IMREAD_COLOR) == frame).all(), "not lossless"
            name = f"{i}_{len(names)}.webp"
            (CALIBRATION_DIR / name).write_bytes(data.tobytes())
            names.append(name)
        capture.release()
        clips.append({"source": entry["video"], "expression": entry["expressions"][0],
                      "frames": names})
    (CALIBRATION_DIR / "clips.json").write_text(json.dumps({"clips": clips}, indent=1) + "\n")
    print(f"wrote {sum(len(c['frames']) for c in clips)} frames to {CALIBRATION_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
