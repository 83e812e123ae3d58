"""ReferFormer: language as queries for referring video object segmentation.

Pipeline (per video of T frames, caption of L tokens):
backbone (strides 4..32) → 1×1 projections to ``hidden_dim`` (+ a stride-2 extra level) →
vision-language early fusion → deformable encoder → decoder on Q queries per frame →
class / box / dynamic-mask-parameter heads → cross-modal FPN mask features → per-query masks.

Every stage but one is per frame (the decoder too: its queries are shared by the frames of a
video only through their common starting point), so a long window runs them `chunk_frames`
frames at a time, each chunk's tensors small enough to be reused rather than allocated afresh
(and mostly cache-resident at the smaller strides). The exception is the cross-modal FPN's
self-attention, which attends over all frames of the clip: it runs on the whole window's
spatially reduced tokens, between two chunked passes. Chunking never changes the function
computed, only the order of operations (outputs agree to float rounding).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rvos.modeling.attention import attend_to_words
from rvos.modeling.backbone import build_backbone
from rvos.modeling.fpn import CrossModalFPN
from rvos.modeling.mask_head import dynamic_masks, dynamic_param_count
from rvos.modeling.position import PositionEmbeddingSine1D, PositionEmbeddingSine2D
from rvos.modeling.precision import autocast, full_precision
from rvos.modeling.roberta import RobertaConfig, RobertaModel
from rvos.modeling.text_encoder import FeatureResizer, tokenize
from rvos.modeling.transformer import MLP, DeformableTransformer, inverse_sigmoid

# Frames per chunk of the per-frame stages at inference (`ReferFormer.chunk_frames`). Five frames
# of 360×640 are ~600 MB of activations at the stride-4 scale; a 36-frame window held at once
# was ~4 GB, every operation's output a fresh allocation that misses the caches.
DEFAULT_CHUNK_FRAMES = 4

# The released models' text encoder, ``roberta-base`` (its published config.json). A bare
# ``RobertaConfig()`` (transformers' defaults) is *not* this: it has 512 positions, 2 token types
# and LayerNorm eps 1e-12, so a model built from it could not load a released checkpoint.
ROBERTA_BASE: dict = {
    "vocab_size": 50265, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 514, "type_vocab_size": 1,
    "initializer_range": 0.02, "layer_norm_eps": 1e-5, "pad_token_id": 1, "bos_token_id": 0,
    "eos_token_id": 2,
}


@dataclass
class ReferFormerConfig:
    """Architecture hyper-parameters; the defaults are those of the released models."""

    backbone: str = "resnet50"
    backbone_kwargs: dict = field(default_factory=dict)
    hidden_dim: int = 256
    num_queries: int = 5
    num_feature_levels: int = 4
    enc_layers: int = 4
    dec_layers: int = 4
    nheads: int = 8
    dim_feedforward: int = 2048
    enc_n_points: int = 4
    dec_n_points: int = 4
    dropout: float = 0.1
    mask_dim: int = 256
    controller_layers: int = 3
    dynamic_mask_channels: int = 8
    rel_coord: bool = True
    fpn_sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
    fpn_dim_feedforward: int = 2048
    fpn_nheads: int = 8
    fusion_nheads: int = 8
    proj_norm_groups: int = 32  # GroupNorm of the input projections
    fpn_norm_groups: int = 8    # GroupNorm of the cross-modal FPN convolutions
    freeze_text_encoder: bool = True
    num_classes: int = 1
    text: dict = field(default_factory=dict)  # a RobertaConfig as a dict; {} = roberta-base

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fpn_sr_ratios"] = list(self.fpn_sr_ratios)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ReferFormerConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "fpn_sr_ratios" in known:
            known["fpn_sr_ratios"] = tuple(known["fpn_sr_ratios"])
        return cls(**known)

    def roberta_config(self) -> RobertaConfig:
        """The text encoder's architecture (``text``, or roberta-base's when empty)."""
        return RobertaConfig.from_dict(self.text or ROBERTA_BASE)


class VisionLanguageFusion(nn.Module):
    """Early fusion: every visual token attends to the words, and the attended text feature
    *multiplies* the visual feature (a gate), rather than being added to it."""

    def __init__(self, d_model: int, nhead: int) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead)

    def forward(self, visual: Tensor, words: Tensor, word_mask: Tensor, word_pos: Tensor,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """visual [N_tok, B, C], words [L, B, C] -> (gated visual [N_tok, B, C], with
        ``need_weights`` the attention of each head [B, heads, N_tok, L]; its mean over heads
        is what the original implementation returns)."""
        attended, attn = attend_to_words(self.multihead_attn, visual, words + word_pos, words,
                                         word_mask, need_weights)
        return visual * attended, attn


@dataclass
class VisualFeatures:
    """Backbone output of ``num_videos`` videos of ``num_frames`` frames (frames of a video
    consecutive along the first axis of every tensor)."""

    features: list[Tensor]   # res2..res5, each [B*T, C_i, h_i, w_i]
    masks: list[Tensor]      # each [B*T, h_i, w_i], True on padding
    pos: list[Tensor]        # each [B*T, hidden_dim, h_i, w_i]
    num_videos: int
    num_frames: int
    image_size: tuple[int, int]

    def repeat(self, n: int) -> VisualFeatures:
        """The same single video n times (several captions on one video)."""
        rep = [lambda x: x.repeat(n, *([1] * (x.dim() - 1)))]
        return VisualFeatures([rep[0](x) for x in self.features], [rep[0](x) for x in self.masks],
                              [rep[0](x) for x in self.pos], n, self.num_frames, self.image_size)


class ReferFormer(nn.Module):
    def __init__(self, config: ReferFormerConfig, tokenizer=None) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        # "fp32", or a faster mode set by `rvos.modeling.precision.prepare_model` (bf16 / fp16 run
        # the visual path under autocast; the text encoder, the heads and the masks stay fp32).
        self.precision = "fp32"
        # Inference runs the per-frame stages this many frames at a time (None: the whole clip
        # at once, as training always does); the outputs do not depend on it.
        self.chunk_frames: int | None = DEFAULT_CHUNK_FRAMES
        c = config.hidden_dim
        if config.num_feature_levels != 4:
            raise ValueError("ReferFormer uses 4 feature levels (3 backbone + 1 extra)")
        self.backbone = build_backbone(config.backbone, **config.backbone_kwargs)
        channels = list(self.backbone.num_channels)
        self.position_embedding = PositionEmbeddingSine2D(c // 2)

        # Levels 0-2 project res3..res5; level 3 is a stride-2 conv on res5.
        self.input_proj = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(ch, c, 1), nn.GroupNorm(config.proj_norm_groups, c))
             for ch in channels[-3:]]
            + [nn.Sequential(nn.Conv2d(channels[-1], c, 3, stride=2, padding=1),
                             nn.GroupNorm(config.proj_norm_groups, c))])

        roberta = config.roberta_config()
        self.text_encoder = RobertaModel(roberta)
        self.resizer = FeatureResizer(roberta.hidden_size, c, config.dropout)
        self.text_pos = PositionEmbeddingSine1D(c)
        self.fusion_module = VisionLanguageFusion(c, config.fusion_nheads)

        self.transformer = DeformableTransformer(
            c, config.nheads, config.enc_layers, config.dec_layers, config.dim_feedforward,
            config.dropout, config.num_feature_levels, config.dec_n_points, config.enc_n_points)
        self.query_embed = nn.Embedding(config.num_queries, c)

        n = config.dec_layers
        self.class_embed = nn.ModuleList(nn.Linear(c, config.num_classes) for _ in range(n))
        self.bbox_embed = nn.ModuleList(MLP(c, c, 4, 3) for _ in range(n))
        # Iterative box refinement: the decoder refines with the same box heads.
        self.transformer.decoder.bbox_embed = self.bbox_embed

        self.pixel_decoder = CrossModalFPN(
            [channels[0], c, c, c], conv_dim=c, mask_dim=config.mask_dim,
            dim_feedforward=config.fpn_dim_feedforward, nhead=config.fpn_nheads,
            sr_ratios=config.fpn_sr_ratios, dropout=config.dropout,
            norm_groups=config.fpn_norm_groups)
        num_params = dynamic_param_count(config.mask_dim, config.dynamic_mask_channels,
                                         config.controller_layers, config.rel_coord)
        self.controller = MLP(c, c, num_params, 3)
        self._reset_heads()

    def _reset_heads(self) -> None:
        prior = 0.01
        for head in self.class_embed:
            nn.init.constant_(head.bias, -math.log((1 - prior) / prior))
        for head in self.bbox_embed:
            nn.init.zeros_(head.layers[-1].weight)
            nn.init.zeros_(head.layers[-1].bias)
            nn.init.constant_(head.layers[-1].bias[2:], -2.0)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)

    def initial_reference_points(self) -> Tensor:
        """[Q, 2] (x, y) in [0, 1]: where the first decoder layer starts each query, the same
        for every frame and sentence (a map of the learned query embeddings)."""
        return self.transformer.initial_reference(self.query_embed.weight)

    def frame_chunks(self, num_frames: int) -> list[tuple[int, int]]:
        """The runs of frames ``[(t0, t1), ...]`` the per-frame stages take at a time: about
        `chunk_frames` each (sizes differ by at most one); one run in training, with autograd
        or when `chunk_frames` is None."""
        size = self.chunk_frames
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)
                                 or size < 1):
            raise ValueError(f"chunk_frames must be None or a whole number >= 1, got {size!r}")
        if size is None or torch.is_grad_enabled() or num_frames <= size:
            return [(0, num_frames)]
        count = -(-num_frames // size)
        bounds = [num_frames * i // count for i in range(count + 1)]
        return list(zip(bounds[:-1], bounds[1:], strict=True))

    # ------------------------------------------------------------------ visual side
    def encode_video(self, frames: Tensor) -> VisualFeatures:
        """frames: normalised [T, 3, H, W] or [B, T, 3, H, W] -> backbone features."""
        frames = _check_frames(frames)
        b, t, _, h, w = frames.shape
        flat = frames.flatten(0, 1)
        with autocast(self.precision, frames.device):
            if getattr(self.backbone, "frames_independent", False):
                # Frames are independent here: any runs of rows will do.
                features = None
                for r0, r1 in self.frame_chunks(b * t):
                    part = self.backbone(flat[r0:r1], r1 - r0)
                    if r1 - r0 == b * t:
                        features = part
                        break
                    if features is None:
                        features = [_empty_rows(x, b * t) for x in part]
                    for whole, x in zip(features, part, strict=True):
                        whole[r0:r1] = x
            else:  # temporal layers (small3d, Video-Swin): the clip at once
                features = self.backbone(flat, t)
        masks = [torch.zeros(f.shape[0], *f.shape[-2:], dtype=torch.bool, device=f.device)
                 for f in features]
        pos = [self.position_embedding(m).to(f.dtype)
               for f, m in zip(features, masks, strict=True)]
        return VisualFeatures(features, masks, pos, b, t, (h, w))

    # ------------------------------------------------------------------ text side
    def encode_text(self, captions: list[str], device) -> tuple[Tensor, Tensor, Tensor, dict]:
        """-> word features [B, L, C], padding mask [B, L] (True = pad), sentence [B, C], tokens."""
        if self.tokenizer is None:
            raise RuntimeError("this model has no tokenizer; load it with load_official or "
                               "load_pretrained, or pass tokenizer= to build_referformer")
        tokens = tokenize(self.tokenizer, captions, device)
        train_text = torch.is_grad_enabled() and not self.config.freeze_text_encoder
        with torch.set_grad_enabled(train_text), full_precision(device):
            hidden, pooled = self.text_encoder(tokens["input_ids"], tokens["attention_mask"])
        dtype = self.resizer.fc.weight.dtype
        words = self.resizer(hidden.to(dtype))
        sentence = self.resizer(pooled.to(dtype))
        return words, tokens["attention_mask"].ne(1), sentence, tokens

    # ------------------------------------------------------------------ full model
    def forward(self, frames: Tensor, captions: list[str], return_attention: bool = False
                ) -> dict:
        """Arguments:
            frames: ImageNet-normalised float [T, 3, H, W] (one video) or [B, T, 3, H, W].
            captions: B strings, caption i for video i.
        Returns a dict with pred_logits [B,T,Q,1], pred_boxes [B,T,Q,4] (cx, cy, w, h in
        [0, 1]), pred_masks [B,T,Q,ceil(H/4),ceil(W/4)] (logits), reference_points [B,T,Q,2];
        layer_boxes [layers,B,T,Q,4] and layer_logits [layers,B,T,Q,1]: every decoder layer's
        boxes and class logits (the last equal to pred_boxes / pred_logits); in training mode
        aux_outputs (earlier decoder layers); with ``return_attention`` an ``attention`` dict
        (see ``decode``).
        """
        features = self.encode_video(frames)
        if isinstance(captions, str):
            captions = [captions]
        if not isinstance(captions, (list, tuple)) or len(captions) != features.num_videos:
            n = len(captions) if isinstance(captions, (list, tuple)) else captions
            raise ValueError(f"expected {features.num_videos} caption(s), one per video, got {n}")
        return self.decode(features, captions, return_attention)

    def decode(self, visual: VisualFeatures, captions: list[str], return_attention: bool = False
               ) -> dict:
        """Everything after the backbone. ``visual`` holds B videos and ``captions`` B strings,
        or ``visual`` holds one video and ``captions`` several (the backbone is shared).

        ``attention`` (when asked): ``fusion`` — per level (strides 8, 16, 32, 64) the early
        fusion word attention [B, T, h, w, L] (mean over heads), ``fusion_heads`` the same per
        head [B, heads, T, h, w, L] (heads specialise: in the built-in model one head reads
        colour words); ``fpn`` — per FPN scale (strides 4, 8, 16, 32) [B, T, h, w, L], and
        ``fpn_heads`` per head; ``sampling_locations`` [B, T, Q, heads, levels, points, 2] (x, y in
        [0, 1]) and ``sampling_weights`` [B, T, Q, heads, levels, points] of the last decoder
        layer; ``input_ids`` / ``word_mask`` [B, L].
        """
        with autocast(self.precision, visual.features[0].device):
            return self._decode(visual, captions, return_attention)

    def _decode(self, visual: VisualFeatures, captions: list[str] | str,
                return_attention: bool) -> dict:
        captions = [captions] if isinstance(captions, str) else list(captions)
        b, t = len(captions), visual.num_frames
        if b != visual.num_videos and not (visual.num_videos == 1 and b > 1):
            raise ValueError(f"{b} captions for {visual.num_videos} videos")
        device = visual.features[0].device
        words, word_mask, sentence, tokens = self.encode_text(captions, device)
        word_pos = self.text_pos(word_mask).to(words.dtype).transpose(0, 1)  # [L, B, C]
        q = self.config.num_queries

        # Pass 1, a chunk of frames at a time: projections, early fusion, encoder, decoder, and
        # the FPN's per-frame inputs (kept), of which its cross-frame attention reads a reduced
        # copy.
        chunks, reduced = [], []
        for t0, t1 in self.frame_chunks(t):
            feats, masks, poses = ([_frames(x, visual.num_videos, b, t, t0, t1) for x in maps]
                                   for maps in (visual.features, visual.masks, visual.pos))
            srcs, src_masks, src_poses, fusion = self._fuse(
                feats, masks, poses, words.transpose(0, 1), word_mask, word_pos, return_attention)
            # Queries: the sentence feature (content) + learned embeddings (position), identical
            # in every frame, so query i means the same object hypothesis throughout the clip.
            tgt = sentence[:, None, None, :].expand(b, t1 - t0, q, -1).flatten(0, 1)
            out = self.transformer(srcs, src_masks, src_poses, tgt, self.query_embed.weight,
                                   return_sampling=return_attention)
            adapted = self.pixel_decoder.adapt(feats[0], out.memory)
            reduced.append(self.pixel_decoder.reduce(adapted, poses))
            chunks.append(_Chunk(t0, t1, out.hs, out.init_reference, out.inter_references,
                                 out.sampling[-1], adapted, poses, fusion))
        # The FPN's self-attention: all frames of each video together, on reduced tokens.
        mixed = self.pixel_decoder.mix_frames(
            [(_join([r[s][0] for r in reduced], b), _join([r[s][1] for r in reduced], b))
             for s in range(len(reduced[0]))], b)
        del reduced

        # The heads and the dynamic masks in the weights' own precision, even under autocast:
        # they are cheap, and the masks' logits are what gets thresholded.
        dtype = self.class_embed[0].weight.dtype
        hs = _join([k.hs for k in chunks], b, dim=1).to(dtype)
        init_reference = _join([k.init_reference for k in chunks], b).to(dtype)
        inter_refs = _join([k.inter_references for k in chunks], b, dim=1).to(dtype)
        with full_precision(device):
            results, mask_params = self._heads(hs, init_reference, inter_refs, b, t)

        # Pass 2, a chunk at a time: the FPN's top-down path, mask features, every query's mask.
        layer_masks: list[list[Tensor]] = [[] for _ in mask_params]
        fpn_attn: list[list[Tensor]] = []
        for k in chunks:
            mask_features, attn = self.pixel_decoder(
                k.adapted, [_frames(m, b, b, t, k.t0, k.t1) for m in mixed], k.poses, words,
                word_mask, return_attention)
            k.adapted = None  # no longer needed: free it before the next chunk
            if return_attention:
                fpn_attn.append([a.view(b, a.shape[1], k.t1 - k.t0, *p.shape[-2:], -1)
                                 for a, p in zip(attn, k.poses, strict=True)])
            mask_features = mask_features.view(b, k.t1 - k.t0, *mask_features.shape[1:])
            with full_precision(device):
                for masks, (params, centres) in zip(layer_masks, mask_params, strict=True):
                    masks.append(dynamic_masks(
                        mask_features.to(dtype), params[:, k.t0:k.t1], centres[:, k.t0:k.t1],
                        visual.image_size, self.config.dynamic_mask_channels,
                        self.config.controller_layers, self.config.rel_coord))
        for result, masks in zip(results, layer_masks, strict=True):
            result["pred_masks"] = masks[0] if len(masks) == 1 else torch.cat(masks, 1)
        with full_precision(device):
            output = self._collect(results, hs, init_reference, inter_refs, b, t)
        if return_attention:
            output["attention"] = self._attention(chunks, fpn_attn, tokens, word_mask, b, t)
        return output

    def _fuse(self, feats: list[Tensor], masks: list[Tensor], poses: list[Tensor],
              words: Tensor, word_mask: Tensor, word_pos: Tensor, want_attention: bool):
        """Input projections and early fusion of some frames of B videos.

        feats / masks / poses: the backbone's, [B*T', ...] each; words / word_pos: [L, B, C].
        Returns per level (strides 8, 16, 32, 64) the fused sources [B*T', C, h, w], padding
        masks and position embeddings, and the fusion's word attention [B, heads, T', h, w, L]
        (with ``want_attention``; else None).
        """
        b = words.shape[1]
        srcs, src_masks, src_poses, attentions = [], [], [], []
        backbone_levels = feats[-3:]
        for level in range(self.config.num_feature_levels):
            if level < len(backbone_levels):
                src = self.input_proj[level](backbone_levels[level])
                mask, pos = masks[-3 + level], poses[-3 + level]
            else:
                src = self.input_proj[level](feats[-1])
                mask = F.interpolate(masks[-1][None].float(), size=src.shape[-2:]
                                     ).to(torch.bool)[0]
                pos = self.position_embedding(mask).to(src.dtype)
            n, c, h, w = src.shape
            tokens_v = src.view(b, n // b, c, h, w).permute(1, 3, 4, 0, 2).reshape(-1, b, c)
            fused, attn = self.fusion_module(tokens_v, words, word_mask, word_pos,
                                             want_attention)
            srcs.append(fused.view(n // b, h, w, b, c).permute(3, 0, 4, 1, 2).reshape(n, c, h, w))
            src_masks.append(mask)
            src_poses.append(pos)
            # A view of the weights attention computed anyway: no copy at stride 8.
            attentions.append(None if attn is None else attn.view(b, attn.shape[1], n // b, h,
                                                                  w, -1))
        return srcs, src_masks, src_poses, attentions

    def _heads(self, hs: Tensor, init_reference: Tensor, inter_refs: Tensor, b: int, t: int
               ) -> tuple[list[dict], list[tuple[Tensor, Tensor]]]:
        """Class and box of every query from the decoder states (the last layer's, or every
        layer's in training), and what its mask needs: the dynamic mask parameters
        [B, T, Q, P] and the mask's centre [B, T, Q, 2] of each of those layers."""
        num_layers, q = hs.shape[0], self.config.num_queries
        layers = range(num_layers) if self.training else [num_layers - 1]
        results, mask_params = [], []
        for lvl in layers:
            reference = init_reference if lvl == 0 else inter_refs[lvl - 1]
            delta = self.bbox_embed[lvl](hs[lvl])
            reference = inverse_sigmoid(reference)
            if reference.shape[-1] == 4:
                coord = delta + reference
            else:
                coord = torch.cat([delta[..., :2] + reference, delta[..., 2:]], -1)
            logits = self.class_embed[lvl](hs[lvl])
            results.append({
                "pred_logits": logits.view(b, t, q, -1),
                "pred_boxes": coord.sigmoid().view(b, t, q, 4),
            })
            # The mask of layer lvl is centred on the box that layer lvl just refined.
            mask_params.append((self.controller(hs[lvl]).view(b, t, q, -1),
                                inter_refs[lvl][..., :2].reshape(b, t, q, 2)))
        return results, mask_params

    def _collect(self, results: list[dict], hs: Tensor, init_reference: Tensor,
                 inter_refs: Tensor, b: int, t: int) -> dict:
        """`forward`'s dict from `_heads`' results (their masks filled in)."""
        num_layers, q = hs.shape[0], self.config.num_queries
        output = dict(results[-1])
        last_input_ref = inter_refs[-2] if num_layers > 1 else init_reference
        output["reference_points"] = last_input_ref[..., :2].reshape(b, t, q, 2)
        # Iterative refinement, layer by layer: each decoder layer's refined boxes are the
        # decoder's own references (the same ops as ``pred_boxes``), and its class logits cost
        # one tiny linear layer each, so they are always returned.
        output["layer_boxes"] = inter_refs.view(num_layers, b, t, q, 4)
        output["layer_logits"] = torch.stack(
            [self.class_embed[i](hs[i]) for i in range(num_layers)]).view(num_layers, b, t, q, -1)
        if self.training:
            output["aux_outputs"] = results[:-1]
        return output

    def _attention(self, chunks: list[_Chunk], fpn_attn: list[list[Tensor]], tokens: dict,
                   word_mask: Tensor, b: int, t: int) -> dict:
        """The maps ``decode`` documents under ``attention``, from every chunk's."""
        fusion_heads = [torch.cat(level, 2) for level in zip(*(k.fusion for k in chunks),
                                                             strict=True)]
        fpn_heads = [torch.cat(stage, 2) for stage in zip(*fpn_attn, strict=True)]
        locations = _join([k.sampling[0] for k in chunks], b)
        weights = _join([k.sampling[1] for k in chunks], b)
        return {
            "fusion": [a.mean(1) for a in fusion_heads],
            "fusion_heads": fusion_heads,
            "fpn_heads": fpn_heads,
            "fpn": [a.mean(1) for a in fpn_heads],
            "sampling_locations": locations.reshape(b, t, *locations.shape[1:]),
            "sampling_weights": weights.reshape(b, t, *weights.shape[1:]),
            "input_ids": tokens["input_ids"],
            "word_mask": word_mask,
        }


@dataclass
class _Chunk:
    """What pass 1 of `ReferFormer.decode` keeps of frames [t0, t1) of every video for the
    heads and for pass 2 (tensors over (video, frame) pairs as ``[B*(t1-t0), ...]``)."""

    t0: int
    t1: int
    hs: Tensor                     # [layers, N, Q, C] decoder states
    init_reference: Tensor         # [N, Q, 2]
    inter_references: Tensor       # [layers, N, Q, 4]
    sampling: tuple | None         # the last decoder layer's (locations, weights), if asked
    adapted: list[Tensor] | None   # the FPN's inputs (`CrossModalFPN.adapt`)
    poses: list[Tensor]            # the backbone's position embeddings, strides 4..32
    fusion: list[Tensor | None]    # early-fusion attention per level [B, heads, T', h, w, L]


def _frames(x: Tensor, videos: int, b: int, t: int, t0: int, t1: int) -> Tensor:
    """Frames [t0, t1) of each of ``b`` videos from ``x`` [videos*T, ...] (a video's frames
    consecutive), as [b*(t1-t0), ...]; ``videos == 1 < b``: one video read by b captions."""
    if videos == 1:
        part = x[t0:t1]
        return part if b == 1 else _like(part[None].expand(b, *part.shape).flatten(0, 1), x)
    if (t0, t1) == (0, t):
        return x
    return _like(x.unflatten(0, (videos, t))[:, t0:t1].flatten(0, 1), x)


def _join(parts: list[Tensor], b: int, dim: int = 0) -> Tensor:
    """Per-chunk tensors whose axis ``dim`` runs over (video, frame of the chunk), b videos ->
    one whose axis ``dim`` runs over (video, frame)."""
    if len(parts) == 1:
        return parts[0]
    if b == 1:
        return torch.cat(parts, dim)
    return torch.cat([p.unflatten(dim, (b, -1)) for p in parts], dim + 1).flatten(dim, dim + 1)


def _channels_last(x: Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)


def _like(y: Tensor, x: Tensor) -> Tensor:
    """``y`` in ``x``'s memory layout (channels-last maps stay channels-last)."""
    return y.contiguous(memory_format=torch.channels_last) if _channels_last(x) else y


def _empty_rows(x: Tensor, n: int) -> Tensor:
    """An uninitialised ``x`` of n rows, in ``x``'s memory layout."""
    fmt = torch.channels_last if _channels_last(x) else torch.contiguous_format
    return torch.empty((n, *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=fmt)


def _check_frames(frames: Tensor) -> Tensor:
    if not isinstance(frames, Tensor):
        raise TypeError(f"frames must be a torch.Tensor, got {type(frames).__name__}")
    if not frames.is_floating_point():
        raise TypeError(
            f"frames must be a normalised float tensor, got {frames.dtype}; "
            "use rvos.modeling.processing.preprocess() on uint8 frames")
    if frames.dim() == 4:
        frames = frames[None]
    if frames.dim() != 5 or frames.shape[2] != 3:
        raise ValueError(
            f"frames must be [T, 3, H, W] or [B, T, 3, H, W], got shape {tuple(frames.shape)}")
    if frames.shape[1] == 0:
        raise ValueError("frames hold no frame (T = 0)")
    return frames


def build_referformer(config: ReferFormerConfig | None = None, tokenizer=None) -> ReferFormer:
    """A randomly initialised ReferFormer (released-model architecture by default)."""
    return ReferFormer(config or ReferFormerConfig(), tokenizer)
