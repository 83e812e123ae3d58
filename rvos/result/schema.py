"""The JSON schema of result.json."""

from __future__ import annotations

from typing import Any

from rvos.result.result_json import RESULT_FORMAT, RESULT_VERSION

__all__ = ["RESULT_SCHEMA"]


_NUM = {"type": "number"}


_INT = {"type": "integer"}


_NONNEG = {"type": "integer", "minimum": 0}


_BOX = {"type": "array", "items": _NUM, "minItems": 4, "maxItems": 4}


_POINT = {"type": "array", "items": _NUM, "minItems": 2, "maxItems": 2}


_PROB = {"type": "number", "minimum": 0, "maximum": 1}


def _object(props: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": props,
            "required": [k for k in props if k not in optional], "additionalProperties": False}


RESULT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "rvos prediction result",
    **_object({
        "format": {"const": RESULT_FORMAT},
        "version": {"const": RESULT_VERSION},
        "model": {"type": ["string", "null"]},
        "source": _object({
            "path": {"type": ["string", "null"]},
            "width": {"type": "integer", "minimum": 1},
            "height": {"type": "integer", "minimum": 1},
            "fps": {"type": "number", "exclusiveMinimum": 0},
            "frame_rate": {"type": "string", "pattern": r"^\d+/\d+$"},
            "num_frames": {"type": "integer", "minimum": 1},
            "source_fps": {"type": "number", "exclusiveMinimum": 0},
            "source_num_frames": {"type": ["integer", "null"]},
            "has_audio": {"type": "boolean"},
            "rotation": {"enum": [0, 90, 180, 270]},
            "variable_frame_rate": {"type": "boolean"},
        }, optional=("variable_frame_rate",)),
        "settings": _object({
            "window": {"type": "integer", "minimum": 1},
            "overlap": _NONNEG,
            "short_side": {"type": ["integer", "null"]},
            "threshold": _PROB,
            "input_size": {"type": "array", "items": _INT, "minItems": 2, "maxItems": 2},
            "mask_size": {"type": "array", "items": _INT, "minItems": 2, "maxItems": 2},
            "num_queries": {"type": "integer", "minimum": 1},
            "device": {"type": "string"},
            "precision": {"enum": ["fp32", "bf16", "fp16", "int8"]},
            "presence_threshold": _PROB,
            "objects": {"enum": ["best", "all"]},
        }, optional=("precision", "presence_threshold", "objects")),
        "timings": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0},
                    "required": ["read_s", "model_s", "postprocess_s", "total_s"]},
        "windows": {"type": "array", "minItems": 1, "items": _object(
            {"index": _NONNEG, "start": _NONNEG, "end": {"type": "integer", "minimum": 1}})},
        "expressions": {"type": "array", "minItems": 1, "items": _object({
            "index": _NONNEG,
            "text": {"type": "string", "minLength": 1},
            "words": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "masks": {"type": "string"},
            "presence_threshold": _PROB,
            "presence_from": {"enum": ["score", "presence head"]},
            "found_frames": _NONNEG,
            "initial_reference_points": {"type": "array", "items": _POINT, "minItems": 1},
            "windows": {"type": "array", "minItems": 1, "items": _object({
                "index": _NONNEG,
                "chosen_query": _NONNEG,
                "linked_by": {"enum": ["score", "overlap"]},
                "overlap_iou": {"type": ["number", "null"]},
            })},
            "frames": {"type": "array", "minItems": 1, "items": _object({
                "frame": _NONNEG,
                "time_s": {"type": "number", "minimum": 0},
                "window": _NONNEG,
                "chosen_query": _NONNEG,
                "score": _PROB,
                "presence": _PROB,
                "found": {"type": "boolean"},
                "box": _BOX,
                "mask_area": _NONNEG,
                "scores": {"type": "array", "items": _PROB, "minItems": 1},
                "boxes": {"type": "array", "items": _BOX, "minItems": 1},
                "reference_points": {"type": "array", "items": _POINT, "minItems": 1},
                # [query][layer]: one entry per query, each the L decoder layers in order.
                "layer_boxes": {"type": "array", "minItems": 1, "items": {
                    "type": "array", "items": _BOX, "minItems": 1}},
                "layer_scores": {"type": "array", "minItems": 1, "items": {
                    "type": "array", "items": _PROB, "minItems": 1}},
            }, optional=("presence", "found"))},
            "objects": {"type": "array", "minItems": 1, "items": _object({
                "object": _NONNEG,
                "label": {"type": "integer", "minimum": 1},
                "frames": {"type": "array", "minItems": 1, "items": _object({
                    "frame": _NONNEG,
                    "query": {"type": ["integer", "null"], "minimum": 0},
                    "score": {"type": ["number", "null"]},
                    "found": {"type": "boolean"},
                    "mask_area": _NONNEG,
                    "rle": _object({
                        "size": {"type": "array", "items": _NONNEG, "minItems": 2,
                                 "maxItems": 2},
                        "counts": {"type": "array", "items": _NONNEG, "minItems": 1},
                    }),
                })},
            })},
        }, optional=("presence_threshold", "presence_from", "found_frames", "objects"))},
        "outputs": _object({"overlay": {"type": "string"}, "masks": {"type": "string"},
                            "masks_zip": {"type": "string"}},
                           optional=("overlay", "masks", "masks_zip")),
    }, optional=("outputs",)),
}
