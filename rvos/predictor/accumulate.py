"""Collecting one expression's per-window outputs into an ExpressionResult."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from rvos.modeling.box_ops import box_cxcywh_to_xyxy
from rvos.modeling.presence_head import PresenceHead
from rvos.modeling.processing import (
    postprocess_masks,
    select_query,
)
from rvos.predictor.objects import ObjectBuilder, link_objects, select_objects
from rvos.predictor.windows import WindowPlan, link_query
from rvos.result.objects import compose_labels
from rvos.result.records import AttentionMaps, SamplingPoints, WindowChoice
from rvos.result.rle import decode_rle, encode_rle_batch, quantize_logits, rle_area
from rvos.result.video_result import ExpressionResult, is_found

__all__ = ["ATTENTION_STRIDES"]


# Word-attention levels kept by return_attention: the early fusion and the cross-modal FPN, in
# the order the model returns them (`ReferFormer.decode`'s ``attention``).
ATTENTION_STRIDES = {"fusion": (8, 16, 32, 64), "fpn": (4, 8, 16, 32)}


# Full-size masks are computed this many pixels at a time (64 MB of float32 logits).
_MASK_PIXELS_PER_STEP = 1 << 24


class _Expression:
    """Per-expression state while windows stream by: the linking memory and the per-frame
    results reported so far (all on the CPU, all compact)."""

    def __init__(self, text: str, words: list[str], groups: list[list[int]],
                 size: tuple[int, int], threshold: float, overlap: int, keep_logits: bool,
                 keep_attention: bool, keep_sampling: bool, keep_heads: bool = False,
                 keep_query_masks: bool = False,
                 initial_reference: np.ndarray | None = None,
                 presence_threshold: float = 0.0, objects: str = "best",
                 presence_head: PresenceHead | None = None,
                 presence_text: Tensor | None = None) -> None:
        self.text, self.words, self.groups = text, words, groups
        self.size, self.threshold, self.overlap = size, threshold, overlap
        self.keep_logits = keep_logits
        self.keep_attention, self.keep_sampling = keep_attention, keep_sampling
        self.keep_heads = keep_heads
        self.keep_query_masks = keep_query_masks
        self.presence_threshold = presence_threshold
        self.objects = objects
        # With a presence head (`rvos.modeling.presence_head`), its probabilities are the
        # frames' presence; ``presence_text`` is the sentence as the head encodes it.
        self.presence_head, self.presence_text = presence_head, presence_text
        self.presence: list[float] = []
        self.tracks: list[ObjectBuilder] = []  # objects="all": the further objects
        h0, w0 = size
        # [Q, 2] in [0, 1] -> source pixels; None: the model has no learned first references.
        self.initial_reference = (None if initial_reference is None else
                                  np.asarray(initial_reference, np.float32) * [w0, h0])
        self.layer_boxes: list[np.ndarray] = []  # per frame [Q, L, 4]
        self.layer_scores: list[np.ndarray] = []  # per frame [Q, L]
        self.query_lowres: list[bytes] = []  # per frame, int8 [Q, h, w] compressed
        self.previous: Tensor | None = None  # bool [overlap, h, w]: chosen masks, last frames
        self.choices: list[WindowChoice] = []
        self.chosen: list[int] = []
        self.window_index: list[int] = []
        self.scores: list[np.ndarray] = []
        self.boxes: list[np.ndarray] = []
        self.refs: list[np.ndarray] = []
        self.rle: list[np.ndarray] = []
        self.areas: list[int] = []
        self.absent: dict[int, np.ndarray] = {}  # frame -> the mask of a frame not found
        self.lowres: list[bytes] = []
        self.lowres_shape: tuple[int, int] | None = None
        self.attention: dict[str, list[np.ndarray]] = {}
        self.num_heads = 0  # > 0 when each head's maps are kept
        self.sampling: list[tuple[np.ndarray, np.ndarray]] = []
        self.sampling_layout: tuple[np.ndarray, np.ndarray] | None = None

    def add_window(self, plan: WindowPlan, out: dict[str, Any],
                   frames: np.ndarray | None = None) -> None:
        """Choose the query of window ``plan`` and keep its reported frames. ``out`` is
        `ReferFormer.decode`'s output for this expression alone (batch of 1); ``frames`` the
        window's input frames (uint8 ``[Tw, H, W, 3]``, resized), which a presence head
        looks at."""
        logits = out["pred_logits"][0]  # [Tw, Q, K]
        masks = out["pred_masks"][0]  # [Tw, Q, h, w]
        scores = logits.float().sigmoid().max(-1).values  # [Tw, Q]
        n_shared = min(self.overlap, masks.shape[0]) if plan.index > 0 else 0
        if self.previous is None or n_shared == 0:
            query, iou, how = select_query(logits), None, "score"
        else:
            candidates = masks[:n_shared].float().sigmoid() > self.threshold
            query, iou, how = link_query(self.previous[-n_shared:], candidates, scores.mean(0))
        self.choices.append(WindowChoice(plan.index, plan.start, plan.end, query, how, iou))
        if self.overlap:
            self.previous = (masks[-self.overlap:, query].float().sigmoid() > self.threshold).cpu()

        a, b = plan.keep_start - plan.start, plan.keep_end - plan.start
        h0, w0 = self.size
        scale = torch.tensor([w0, h0, w0, h0], dtype=torch.float32, device=masks.device)
        boxes = box_cxcywh_to_xyxy(out["pred_boxes"][0, a:b].float()) * scale
        refs = out["reference_points"][0, a:b].float() * scale[:2]
        self.scores.extend(scores[a:b].cpu().numpy())
        self.boxes.extend(boxes.cpu().numpy())
        self.refs.extend(refs.cpu().numpy())
        self._add_layers(out, a, b, scale, boxes, scores[a:b])
        self.chosen.extend([query] * (b - a))
        self.window_index.extend([plan.index] * (b - a))
        self.lowres_shape = tuple(masks.shape[-2:])
        if self.objects == "all":
            self._add_objects(masks, scores, query, n_shared, a, b)
        chosen = masks[a:b, query]  # [n, h, w]
        if self.presence_head is not None and frames is not None:
            presence = self.presence_head.window_presence(
                self.presence_text, frames, masks[:, query], scores.cpu().numpy(), query)[a:b]
        else:
            presence = scores[a:b, query].cpu().numpy()
        self.presence.extend(presence.tolist())
        # Below the presence threshold a frame's mask is empty; its mask is kept aside.
        found = is_found(presence, self.presence_threshold)
        empty = np.array([h0 * w0], dtype=np.uint32)
        # A few frames at a time: a window of 4K masks as floats would be gigabytes.
        step = max(1, _MASK_PIXELS_PER_STEP // (h0 * w0))
        for i in range(0, b - a, step):
            full = postprocess_masks(chosen[i:i + step], self.size, self.threshold)
            for j, counts in enumerate(encode_rle_batch(full)):
                if not found[i + j]:
                    self.absent[len(self.rle)] = counts
                    counts = empty
                self.rle.append(counts)
                self.areas.append(rle_area(counts))
        if self.keep_logits:
            self.lowres.extend(quantize_logits(chosen))
        if self.keep_query_masks:
            # One block per frame: [n, Q, h, w] -> n maps of [Q * h, w].
            self.query_lowres.extend(quantize_logits(masks[a:b].flatten(1, 2)))
        if self.keep_attention:
            self._add_attention(out["attention"], a, b)
        if self.keep_sampling:
            self._add_sampling(out["attention"], a, b)

    def _add_objects(self, masks: Tensor, scores: Tensor, query: int, shared: int, a: int,
                     b: int) -> None:
        """objects="all": the window's further objects (`rvos.predictor.objects`), each linked to
        the object it continues, or a new one. Called before the window's frames are added."""
        binary = masks.float().sigmoid() > self.threshold  # [Tw, Q, h, w]
        mean = scores.mean(0)
        kept = select_objects(mean, binary, query)[1:]
        taken = link_objects(self.tracks, kept, binary, mean, shared)
        for q in kept:
            if q not in taken.values():
                self.tracks.append(ObjectBuilder(len(self.rle), self.size, self.threshold,
                                                 self.overlap, self.keep_logits,
                                                 _MASK_PIXELS_PER_STEP))
                taken[len(self.tracks) - 1] = q
        for i, track in enumerate(self.tracks):
            track.add_window(taken.get(i), masks, a, b)

    def frame_mask(self, t: int) -> np.ndarray:
        """Frame t's mask for the files written while predicting: `ExpressionResult.frame_mask`
        (bool, or a label map of several objects)."""
        best = decode_rle(self.rle[t], self.size)
        if not self.tracks:
            return best
        masks = [best]
        for track in self.tracks:
            q = track.query[t]
            found = q >= 0 and bool(is_found(self.scores[t][q], self.presence_threshold))
            masks.append(track.mask(t) if found else np.zeros(self.size, dtype=bool))
        return compose_labels(masks)

    def _add_layers(self, out: dict[str, Any], a: int, b: int, scale: Tensor, boxes: Tensor,
                    scores: Tensor) -> None:
        """Every decoder layer's boxes and scores of frames ``[a, b)`` of the window. The last
        layer is the reported ``boxes`` / ``scores`` themselves (the model computes it by the
        same ops), so the two agree exactly, in memory and in result.json."""
        layer_boxes = out.get("layer_boxes")
        if layer_boxes is None:  # a model that returns the last layer only
            self.layer_boxes.extend(boxes[:, :, None].cpu().numpy())
            self.layer_scores.extend(scores[:, :, None].cpu().numpy())
            return
        # [L, 1, Tw, Q, 4] -> [n, Q, L, 4]
        lb = box_cxcywh_to_xyxy(layer_boxes[:, 0, a:b].float()).permute(1, 2, 0, 3) * scale
        ls = out["layer_logits"][:, 0, a:b].float().sigmoid().max(-1).values.permute(1, 2, 0)
        lb[:, :, -1], ls[:, :, -1] = boxes, scores
        self.layer_boxes.extend(lb.cpu().numpy())
        self.layer_scores.extend(ls.cpu().numpy())

    def _add_attention(self, attn: dict[str, Any], a: int, b: int) -> None:
        heads = self.keep_heads
        for kind, strides in ATTENTION_STRIDES.items():
            for stride, maps in zip(strides, attn[f"{kind}_heads" if heads else kind],
                                    strict=True):
                # [n, h, w, L], or per head [heads, n, h, w, L] -> [n, h, w, heads, L]
                tokens = (maps[0, :, a:b].movedim(0, -2) if heads else maps[0, a:b]).float()
                per_word = [tokens[..., g].mean(-1) for g in self.groups]
                stacked = (torch.stack(per_word, 1) if per_word
                           else tokens.new_zeros(b - a, 0, *tokens.shape[1:-1]))
                if heads:  # [n, words, h, w, heads] -> [n, words, heads, h, w]
                    self.num_heads = stacked.shape[-1]
                    stacked = stacked.permute(0, 1, 4, 2, 3)
                self.attention.setdefault(f"{kind}/{stride}", []).extend(
                    stacked.to(torch.float16).cpu().numpy())

    def _add_sampling(self, attn: dict[str, Any], a: int, b: int) -> None:
        loc = attn["sampling_locations"][0, a:b].float()  # [n, Q, M, L, P, 2]
        wts = attn["sampling_weights"][0, a:b].float()  # [n, Q, M, L, P]
        n, q, heads, levels, points, _ = loc.shape
        h0, w0 = self.size
        pix = loc.reshape(n, q, -1, 2) * torch.tensor([w0, h0], dtype=torch.float32,
                                                      device=loc.device)
        # Weights sum to 1 per head; dividing by the head count makes them sum to 1 per query.
        wts = wts.reshape(n, q, -1) / heads
        for t in range(n):
            self.sampling.append((pix[t].cpu().numpy(), wts[t].cpu().numpy()))
        grid = np.indices((heads, levels, points)).reshape(3, -1)
        self.sampling_layout = (grid[1].astype(np.int16), grid[0].astype(np.int16))

    def finish(self) -> ExpressionResult:
        n = len(self.rle)
        q = self.scores[0].shape[-1] if self.scores else 0
        layers = self.layer_boxes[0].shape[1] if self.layer_boxes else 1
        initial = self.initial_reference
        if initial is None:
            # A stand-in model without learned first references (tests' scripted models): with
            # one decoder layer the last layer's input reference is the first one.
            initial = self.refs[0] if self.refs else np.zeros((q, 2), np.float32)
        attention = None
        if self.attention:
            levels = list(self.attention)
            attention = AttentionMaps(list(self.words), levels,
                                      [np.stack(self.attention[k]) for k in levels],
                                      num_heads=self.num_heads)
        sampling = None
        if self.sampling and self.sampling_layout is not None:
            sampling = SamplingPoints(np.stack([p for p, _ in self.sampling]),
                                      np.stack([w for _, w in self.sampling]),
                                      *self.sampling_layout)
        return ExpressionResult(
            text=self.text,
            words=list(self.words),
            size=self.size,
            threshold=self.threshold,
            chosen_query=np.asarray(self.chosen, dtype=np.int64).reshape(n),
            window_index=np.asarray(self.window_index, dtype=np.int32).reshape(n),
            scores=np.asarray(self.scores, dtype=np.float32).reshape(n, q),
            boxes=np.asarray(self.boxes, dtype=np.float32).reshape(n, q, 4),
            reference_points=np.asarray(self.refs, dtype=np.float32).reshape(n, q, 2),
            layer_boxes=np.asarray(self.layer_boxes, dtype=np.float32).reshape(n, q, layers, 4),
            layer_scores=np.asarray(self.layer_scores, dtype=np.float32).reshape(n, q, layers),
            initial_reference_points=np.asarray(initial, dtype=np.float32).reshape(q, 2),
            mask_areas=np.asarray(self.areas, dtype=np.int64).reshape(n),
            windows=list(self.choices),
            rle=list(self.rle),
            lowres_logits=list(self.lowres) if self.keep_logits else None,
            lowres_shape=self.lowres_shape,
            attention=attention,
            sampling=sampling,
            query_logits=list(self.query_lowres) if self.keep_query_masks else None,
            presence_threshold=self.presence_threshold,
            presence_scores=(np.asarray(self.presence, dtype=np.float32).reshape(n)
                             if self.presence_head is not None else None),
            absent_rle=dict(self.absent),
            extra_objects=[track.finish() for track in self.tracks],
        )
