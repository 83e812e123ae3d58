"""ReferFormer: language as queries for referring video object segmentation.

Pipeline (per video of T frames, caption of L tokens):
backbone (strides 4..32) → 1×1 projections to ``hidden_dim`` (+ a stride-2 extra level) →
vision-language early fusion → deformable encoder → decoder on Q queries per frame →
class / box / dynamic-mask-parameter heads → cross-modal FPN mask features → per-query masks.
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
        # the
        # visual path under autocast; the text encoder, the heads and the masks stay fp32).
        self.precision = "fp32"
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

    # ------------------------------------------------------------------ visual side
    def encode_video(self, frames: Tensor) -> VisualFeatures:
        """frames: normalised [T, 3, H, W] or [B, T, 3, H, W] -> backbone features."""
        frames = _check_frames(frames)
        b, t, _, h, w = frames.shape
        flat = frames.flatten(0, 1)
        with autocast(self.precision, frames.device):
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
        if isinstance(captions, str):
            captions = [captions]
        if visual.num_videos == 1 and len(captions) > 1:
            visual = visual.repeat(len(captions))
        if len(captions) != visual.num_videos:
            raise ValueError(f"{len(captions)} captions for {visual.num_videos} videos")
        b, t = visual.num_videos, visual.num_frames
        device = visual.features[0].device
        words, word_mask, sentence, tokens = self.encode_text(list(captions), device)
        word_pos = self.text_pos(word_mask).to(words.dtype).transpose(0, 1)  # [L, B, C]
        words_lb = words.transpose(0, 1)

        srcs, masks, poses, fusion_attn, fusion_heads = [], [], [], [], []
        backbone_levels = visual.features[-3:]
        for level in range(self.config.num_feature_levels):
            if level < len(backbone_levels):
                src = self.input_proj[level](backbone_levels[level])
                mask = visual.masks[-3 + level]
                pos = visual.pos[-3 + level]
            else:
                src = self.input_proj[level](visual.features[-1])
                mask = F.interpolate(visual.masks[-1][None].float(), size=src.shape[-2:]
                                     ).to(torch.bool)[0]
                pos = self.position_embedding(mask).to(src.dtype)
            n, c, h, w = src.shape
            tokens_v = src.view(b, t, c, h, w).permute(1, 3, 4, 0, 2).reshape(-1, b, c)
            fused, attn = self.fusion_module(tokens_v, words_lb, word_mask, word_pos,
                                             return_attention)
            src = fused.view(t, h, w, b, c).permute(3, 0, 4, 1, 2).reshape(n, c, h, w)
            srcs.append(src)
            masks.append(mask)
            poses.append(pos)
            if return_attention:
                # A view of the weights attention computed anyway: no copy at stride 8.
                fusion_heads.append(attn.view(b, attn.shape[1], t, h, w, -1))
                fusion_attn.append(attn.mean(1).reshape(b, t, h, w, -1))

        q = self.config.num_queries
        # Queries: the sentence feature (content) + learned embeddings (position), identical in
        # every frame, so query i means the same object hypothesis throughout the clip.
        tgt = sentence[:, None, None, :].expand(b, t, q, -1).reshape(b * t, q, -1)
        out = self.transformer(srcs, masks, poses, tgt, self.query_embed.weight,
                               return_sampling=return_attention)
        mask_features, fpn_attn = self.pixel_decoder(
            visual.features[0], out.memory, visual.pos, words, word_mask, t, return_attention)
        mask_features = mask_features.view(b, t, *mask_features.shape[1:])
        # The heads and the dynamic masks in the weights' own precision, even under autocast:
        # they are cheap, and the masks' logits are what gets thresholded.
        dtype = self.class_embed[0].weight.dtype
        with full_precision(device):
            output = self._heads(out.hs.to(dtype), out.init_reference.to(dtype),
                                 out.inter_references.to(dtype), mask_features.to(dtype),
                                 visual.image_size, b, t)
        if return_attention:
            output["attention"] = self._attention(out, fpn_attn, visual, fusion_attn,
                                                  fusion_heads, tokens, word_mask, b, t)
        return output

    def _heads(self, hs: Tensor, init_reference: Tensor, inter_refs: Tensor,
               mask_features: Tensor, image_size: tuple[int, int], b: int, t: int) -> dict:
        """Class, box and mask of every query from the decoder states (the last layer's, or
        every layer's in training)."""
        num_layers, q = hs.shape[0], self.config.num_queries
        layers = range(num_layers) if self.training else [num_layers - 1]
        results = []
        for lvl in layers:
            reference = init_reference if lvl == 0 else inter_refs[lvl - 1]
            delta = self.bbox_embed[lvl](hs[lvl])
            reference = inverse_sigmoid(reference)
            if reference.shape[-1] == 4:
                coord = delta + reference
            else:
                coord = torch.cat([delta[..., :2] + reference, delta[..., 2:]], -1)
            logits = self.class_embed[lvl](hs[lvl])
            params = self.controller(hs[lvl]).view(b, t, q, -1)
            # The mask of layer lvl is centred on the box that layer lvl just refined.
            centres = inter_refs[lvl][..., :2].reshape(b, t, q, 2)
            pred_masks = dynamic_masks(
                mask_features, params, centres, image_size,
                self.config.dynamic_mask_channels, self.config.controller_layers,
                self.config.rel_coord)
            results.append({
                "pred_logits": logits.view(b, t, q, -1),
                "pred_boxes": coord.sigmoid().view(b, t, q, 4),
                "pred_masks": pred_masks,
            })

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

    def _attention(self, out, fpn_attn: list[Tensor], visual: VisualFeatures,
                   fusion_attn: list[Tensor], fusion_heads: list[Tensor], tokens: dict,
                   word_mask: Tensor, b: int, t: int) -> dict:
        """The maps ``decode`` documents under ``attention``."""
        locations, weights = out.sampling[-1]
        fpn_maps, fpn_heads = [], []
        for attn, feat in zip(fpn_attn, [visual.features[0]] + out.memory, strict=False):
            h, w = feat.shape[-2:]
            fpn_heads.append(attn.view(b, attn.shape[1], t, h, w, -1))
            fpn_maps.append(attn.mean(1).reshape(b, t, h, w, -1))
        return {
            "fusion": fusion_attn,
            "fusion_heads": fusion_heads,
            "fpn_heads": fpn_heads,
            "fpn": fpn_maps,
            "sampling_locations": locations.reshape(b, t, *locations.shape[1:]),
            "sampling_weights": weights.reshape(b, t, *weights.shape[1:]),
            "input_ids": tokens["input_ids"],
            "word_mask": word_mask,
        }


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
