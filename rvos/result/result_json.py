"""result.json: the document a prediction is written as, and how a result becomes it.

result.json (`video_json`, which ``VideoResult.to_json()`` returns; schema ``RESULT_SCHEMA``,
format ``rvos-result`` v2)::

    {
      "format": "rvos-result", "version": 2,
      "model": "builtin",                          # model name, or null
      "source": {                                  # the video as processed
        "path": "in.mp4" | null,                   # file name only; null for in-memory frames
        "width": 1920, "height": 1080,             # frame size (display orientation)
        "fps": 29.97, "frame_rate": "30000/1001",  # rate of the processed frames
        "num_frames": 900,                         # processed frames (after fps / max_frames)
        "source_fps": 29.97, "source_num_frames": 900 | null,
        "has_audio": true, "rotation": 90,         # rotation already applied to the frames
        "variable_frame_rate": false               # true: a VFR source, read at the constant
      },                                           #   rate "fps" (frame i at i / fps)
      "settings": {"window": 36, "overlap": 8, "short_side": 360, "threshold": 0.5,
                   "presence_threshold": 0.0,      # (older results lack it)
                   "objects": "all",               # only with Predictor(objects="all")
                   "input_size": [360, 640],       # model input (H, W)
                   "mask_size": [90, 160],         # model mask logits (h, w)
                   "num_queries": 5, "device": "cpu",
                   "precision": "fp32"}, # rvos.modeling.precision (older results lack it)
      "timings": {"read_s": ..., "model_s": ..., "postprocess_s": ..., "total_s": ...,
                  "frames_per_second": ...},
      "windows": [{"index": 0, "start": 0, "end": 36}, ...],   # frame ranges [start, end)
      "expressions": [{
        "index": 0, "text": "a dog running", "words": ["a", "dog", "running"],
        "masks": "masks/0",                        # folder of this expression's PNGs
        "presence_threshold": 0.0,                 # frames whose presence is below it are
        "found_frames": 900,                       #   "not found" (empty mask); how many are
                                                   #   found (older results lack both)
        "presence_from": "score",                  # or "presence head": what "presence" is
                                                   #   (older results lack it)
        "windows": [{"index": 0, "chosen_query": 2, "linked_by": "score",
                     "overlap_iou": null}, ...],   # how each window chose its query
        "frames": [{
          "frame": 0, "time_s": 0.0, "window": 0,
          "chosen_query": 2,                       # query index *within that window*
          "score": 0.93,                           # sigmoid score of the chosen query
          "presence": 0.93, "found": true,         # the chosen query's score, or with a
                                                   #   presence head its probability;
                                                   #   whether it reaches presence_threshold
          "box": [x0, y0, x1, y1],                 # chosen query's box, source pixels
          "mask_area": 12345,                      # mask pixels at the source size
          "scores": [Q floats], "boxes": [Q × [x0, y0, x1, y1]],
          "reference_points": [Q × [x, y]],        # pixels: the last layer's input reference
          "layer_boxes": [Q × [L × [x0, y0, x1, y1]]],  # each query's box after each decoder
                                                   # layer, in layer order; [q][-1] == boxes[q]
          "layer_scores": [Q × [L floats]]         # the same for scores; [q][-1] == scores[q]
        }, ...]
      }, ...],
      "outputs": {"overlay": "overlay.mp4", "masks": "masks", "masks_zip": "masks.zip"}
    }

With ``objects="all"`` (`rvos.predictor.objects`) each expression also has ``"objects"``: one
entry per object, object 0 the chosen query above, each kept apart::

    "objects": [{"object": 1, "label": 2,          # its value in the mask PNGs
                 "frames": [{"frame": 0, "query": 3 | null,   # null: no query on this frame
                             "score": 0.61 | null, "found": true, "mask_area": 812,
                             "rle": {"size": [H, W], "counts": [...]}}, ...]}, ...]

``counts`` are rvos's run lengths (`rvos.result.rle.encode_rle`: row-major, alternating
background / object, starting with background). The mask PNGs then hold a label per pixel:
0 background, ``label`` the object (the chosen query's where objects overlap).

Decoder layers (``L`` of them) refine every query's box in turn: layer ``l`` starts from a
reference point and moves it. Layer 1's reference point is a learned point of each query
(``initial_reference_points``, the same in every frame and for every sentence); layer ``l > 1``
starts from the centre of the box layer ``l - 1`` returned. So each query's path through the
decoder is ``initial_reference_points[q]`` followed by the centres of ``layer_boxes[q]``.
Version 2 added ``layer_boxes``, ``layer_scores`` and ``initial_reference_points``.

``outputs`` is present when the file was written by `write_outputs`. Mask files are
``masks/<expression index>/<frame index, 5 digits>.png``: DAVIS palette PNGs, 0 background and
1 the object (with ``objects="all"``, each object's ``label``); ``frame`` counts processed
frames (``time_s = frame / fps``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from rvos.media.probe import partial_path
from rvos.result.objects import rle_json
from rvos.result.rle import rle_area

__all__ = ["RESULT_FORMAT", "RESULT_VERSION", "expression_json", "video_json", "write_json"]


RESULT_FORMAT = "rvos-result"


RESULT_VERSION = 2


def video_json(result: Any) -> dict[str, Any]:
    """The result.json document of a `rvos.result.video_result.VideoResult` (see the module
    docstring; the data model imports this module to write itself)."""
    every = result.settings.get("objects") == "all"
    expressions = [expression_json(e, i, result.source.fps, objects=every)
                   for i, e in enumerate(result.expressions)]
    return {
        "format": RESULT_FORMAT,
        "version": RESULT_VERSION,
        "model": result.model_name,
        "source": result.source.to_json(),
        "settings": jsonable(result.settings),
        "timings": {k: round(float(v), 4) for k, v in result.timings.items()},
        "windows": [{"index": i, "start": s, "end": e}
                    for i, (s, e) in enumerate(result.windows)],
        "expressions": expressions,
    }


def expression_json(e: Any, index: int, fps: float, *, objects: bool = False) -> dict[str, Any]:
    """An `rvos.result.video_result.ExpressionResult` as expression ``index``'s part of
    result.json; ``fps`` is the processed frame rate, for the frame times; ``objects``: write
    ``objects`` even for one object (a run with ``objects="all"``)."""
    frames = []
    # The same rounding of the same float32 numbers: layer_boxes[q][-1] == boxes[q] holds
    # in the file too.
    rows = zip(e.chosen_query.tolist(), e.window_index.tolist(),
               _round(e.scores, 4), _round(e.boxes, 1),
               _round(e.reference_points, 1), e.mask_areas.tolist(),
               _round(e.layer_boxes, 1), _round(e.layer_scores, 4),
               _round(e.presence, 4), e.found.tolist(), strict=True)
    for t, (q, w, scores, boxes, refs, area, layer_boxes, layer_scores, presence,
            found) in enumerate(rows):
        frames.append({
            "frame": t, "time_s": round(t / fps, 6), "window": w, "chosen_query": q,
            "score": scores[q], "presence": presence, "found": found,
            "box": boxes[q], "mask_area": area, "scores": scores, "boxes": boxes,
            "reference_points": refs, "layer_boxes": layer_boxes,
            "layer_scores": layer_scores,
        })
    doc = {
        "index": index,
        "text": e.text,
        "words": list(e.words),
        "masks": f"masks/{index}",
        "presence_threshold": e.presence_threshold,
        "presence_from": "score" if e.presence_scores is None else "presence head",
        "found_frames": int(e.found.sum()),
        "initial_reference_points": _round(e.initial_reference_points, 1),
        "windows": [
            {"index": w.index, "chosen_query": w.chosen_query, "linked_by": w.linked_by,
             "overlap_iou": None if w.overlap_iou is None else round(w.overlap_iou, 4)}
            for w in e.windows
        ],
        "frames": frames,
    }
    if objects or e.extra_objects:
        doc["objects"] = _objects_json(e)
    return doc

def _objects_json(e: Any) -> list[dict[str, Any]]:
    """result.json's ``objects`` (``objects="all"``): each object's query, score, whether
    it was found, and its mask (run lengths) on every frame; object 0 is the chosen
    query."""
    out = []
    for j in range(e.num_objects):
        if j == 0:
            query, scores = e.chosen_query, e.chosen_scores
            rle = e.rle
        else:
            track = e.extra_objects[j - 1]
            query, scores, rle = track.query, track.scores(e.scores), track.rle
        found = e.object_found(j)
        empty = np.array([e.size[0] * e.size[1]], dtype=np.uint32)
        frames = []
        for t in range(e.num_frames):
            counts = rle[t] if found[t] else empty
            frames.append({
                "frame": t, "query": int(query[t]) if query[t] >= 0 else None,
                "score": None if query[t] < 0 else round(float(scores[t]), 4),
                "found": bool(found[t]), "mask_area": rle_area(counts),
                "rle": rle_json(counts, e.size),
            })
        out.append({"object": j, "label": j + 1, "frames": frames})
    return out


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    """Write ``doc`` under a temporary name, then rename it to ``path`` (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        tmp.write_text(json.dumps(doc, separators=(",", ":")))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value


def _round(a: np.ndarray, digits: int) -> list:
    return np.round(a.astype(np.float64), digits).tolist()
