"""Draw a training run's loss curve and validation J&F as a PNG (OpenCV only, no matplotlib).

    python benchmarks/train_plot.py docs/builtin_loss.png runs/builtin/gpu/log.jsonl \
        runs/builtin/cpu/log.jsonl --smooth 15
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

W, H = 900, 420
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 70, 70, 40, 50
LOSS_COLOUR = (200, 90, 30)  # BGR
VAL_COLOUR = (40, 140, 40)
GRID = (225, 225, 225)
TEXT = (40, 40, 40)


def read_log(
    path: Path, offset: int = 0
) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(clips seen, training loss) and (clips seen, val J&F in percent) from a ``log.jsonl``.

    Clips (step × batch size), not steps: stages with different batch sizes share one axis. A
    resumed run logs some steps twice; the later record wins.
    """
    loss: dict[int, float] = {}
    val: dict[int, float] = {}
    batch = None
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r.get("event") == "start":
            batch = int(r["config"]["batch_size"])
        elif "loss" in r and "step" in r:
            loss[int(r["step"])] = float(r["loss"])
        elif r.get("event") == "val":
            val[int(r["step"])] = float(r["overall/J&F"])
    if not loss:
        raise ValueError(f"{path} holds no loss records")
    if batch is None:
        raise ValueError(f"{path} has no start record (batch size unknown)")
    return ([(offset + s * batch, v) for s, v in sorted(loss.items())],
            [(offset + s * batch, v) for s, v in sorted(val.items())])


def smooth(points: list[tuple[int, float]], window: int) -> list[tuple[int, float]]:
    """Moving average over ``window`` records (centred; shorter at the ends)."""
    values = np.array([v for _, v in points])
    half = window // 2
    out = [float(values[max(0, i - half):i + half + 1].mean()) for i in range(len(values))]
    return [(s, v) for (s, _), v in zip(points, out, strict=True)]


def read_logs(paths: list[Path], window: int = 1):
    """Concatenate several logs; returns (loss, val, clips where each later log starts)."""
    loss, val, starts = [], [], []
    offset = 0
    for i, path in enumerate(paths):
        part_loss, part_val = read_log(path, offset)
        if i:
            starts.append(offset)
        # A short log (a few records) is drawn as it is.
        loss += smooth(part_loss, window) if len(part_loss) >= 3 * window else part_loss
        val += part_val
        offset = part_loss[-1][0]
    return loss, val, starts


def nice_tick(raw: float) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``raw`` (>= 1)."""
    power = 10 ** max(0, int(np.floor(np.log10(max(raw, 1.0)))))
    return int(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def _put(img, text, org, colour=TEXT, scale=0.45):
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def plot(logs: list[Path], png: Path, title: str | None = None, window: int = 1) -> Path:
    loss, val, starts = read_logs(logs, window)
    img = np.full((H, W, 3), 255, np.uint8)
    x0, x1, y0, y1 = MARGIN_L, W - MARGIN_R, MARGIN_T, H - MARGIN_B
    max_step = max(s for s, _ in loss + val)
    lo = min(v for _, v in loss)
    hi = max(v for _, v in loss)
    lo, hi = 0.0, hi * 1.05

    def sx(step):
        return int(x0 + (x1 - x0) * step / max(max_step, 1))

    def sy_loss(v):
        return int(y1 - (y1 - y0) * (v - lo) / max(hi - lo, 1e-9))

    def sy_val(v):
        return int(y1 - (y1 - y0) * v / 100)

    for i in range(6):
        y = int(y0 + (y1 - y0) * i / 5)
        cv2.line(img, (x0, y), (x1, y), GRID, 1)
        _put(img, f"{hi - (hi - lo) * i / 5:.1f}", (8, y + 4), LOSS_COLOUR)
        _put(img, f"{100 - 20 * i}", (x1 + 10, y + 4), VAL_COLOUR)
    tick = nice_tick(max_step / 5)
    for step in range(0, max_step + 1, tick):
        _put(img, f"{step / 1000:g}k" if step else "0", (sx(step) - 12, y1 + 20))
    cv2.rectangle(img, (x0, y0), (x1, y1), (150, 150, 150), 1)
    for start in starts:
        for y in range(y0, y1, 8):
            cv2.line(img, (sx(start), y), (sx(start), min(y + 4, y1)), (120, 120, 120), 1)
    pts = np.array([(sx(s), sy_loss(v)) for s, v in loss], np.int32)
    cv2.polylines(img, [pts], False, LOSS_COLOUR, 2, cv2.LINE_AA)
    if val:
        vpts = np.array([(sx(s), sy_val(v)) for s, v in val], np.int32)
        cv2.polylines(img, [vpts], False, VAL_COLOUR, 2, cv2.LINE_AA)
        for p in vpts:
            cv2.circle(img, tuple(int(c) for c in p), 4, VAL_COLOUR, -1, cv2.LINE_AA)
    _put(img, title or "built-in ReferFormer training", (x0, 25), TEXT, 0.55)
    _put(img, "training loss (weighted sum, all decoder layers)", (x0 + 260, 25), LOSS_COLOUR)
    _put(img, "val J&F %", (x1 - 80, 25), VAL_COLOUR)
    _put(img, "clips seen (dashed: the next stage starts)", ((x0 + x1) // 2 - 120, H - 12))
    png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(png), img):
        raise OSError(f"could not write {png}")
    return png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("png", type=Path)
    parser.add_argument("logs", type=Path, nargs="+")
    parser.add_argument("--title", default=None)
    parser.add_argument("--smooth", type=int, default=1,
                        help="moving average over this many loss records")
    args = parser.parse_args()
    print(plot(args.logs, args.png, args.title, args.smooth))


if __name__ == "__main__":
    main()
