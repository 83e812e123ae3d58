"""A presence head: does the chosen query's mask show what the sentence names?

ReferFormer answers on every frame. Its class score says how sure it is, but in the built-in
model that score hardly separates "there" from "not there" (README, "Saying 'not there'"): the
query that best matches "the green star" in a clip with a green circle and a red star still
scores like a right answer. The presence head is a second, small network that looks at the
answer the way a person checks it: the pixels under the chosen mask (a 24×24 crop of the frame
and of the mask around the mask's box), the mask's geometry and movement, every query's score,
and the sentence's words. It gives each frame a probability that the referred object is what
the mask shows, which becomes the frame's presence (`rvos.predictor.presence`).

The head never changes a mask or the chosen query: only which frames count as "found". It judges
only sentences made of the words it was trained on (`PresenceHead.reads`); for any other the
presence stays the chosen query's score. A model
folder carries one as ``presence_head.safetensors`` with its settings under ``presence_head``
in ``config.json`` (`load_presence_head`); a model without one (every released checkpoint) keeps
the class score as its presence.

Per frame the evidence is `frame_evidence`: the crop (RGB and mask, uint8) and `num_scalars`
numbers. Per window the head's logits are averaged with their mean over the window's frames
(``window_mix``), since a sentence that names nothing names nothing on every frame.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

__all__ = [
    "CROP",
    "HEAD_FILE",
    "PresenceHead",
    "PresenceHeadConfig",
    "chosen_probs",
    "frame_evidence",
    "load_presence_head",
    "save_presence_head",
]


HEAD_FILE = "presence_head.safetensors"
CONFIG_KEY = "presence_head"

_PUNCTUATION = ".,;:!?\"'()"

# The crop's side in pixels: the mask's box, squared, widened by a fifth, resampled to this.
CROP = 24


@dataclass(frozen=True)
class PresenceHeadConfig:
    vocab_size: int
    num_queries: int
    word_dim: int  # the model's word features (its hidden size)
    pad_token_id: int = 1
    unk_token_id: int = 3
    dim: int = 64
    max_words: int = 24
    window_mix: float = 0.5  # weight of a frame's own logit against the window's mean
    # The words of the sentences it was trained on; it judges only sentences made of them
    # (`PresenceHead.reads`). Empty: any sentence.
    vocabulary: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "vocabulary", tuple(self.vocabulary))


def num_scalars(num_queries: int) -> int:
    """Per frame: the chosen query's score there and its window mean, every query's score
    (sorted), three area terms, the box, touching the border, the mask's peak and mean
    probability, the mean and spread of its colour, and how far it moved from its neighbours."""
    return 2 + num_queries + 3 + 4 + 1 + 2 + 6 + 2


def frame_evidence(frames: np.ndarray, probs: np.ndarray, scores: np.ndarray, query: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """What the head sees of one window's answer.

    Arguments:
        frames: uint8 ``[T, H, W, 3]`` the model's input frames (resized, not normalised).
        probs: float ``[T, H, W]`` the chosen query's mask probabilities at the frames' size.
        scores: float ``[T, Q]`` every query's sigmoid score per frame.
        query: the chosen query.

    Returns crops uint8 ``[T, CROP, CROP, 4]`` (RGB and mask around the mask's box; zeros where
    the mask is empty) and float32 scalars ``[T, num_scalars(Q)]``.
    """
    t_len, h, w = probs.shape
    mask = probs > 0.5
    crops = np.zeros((t_len, CROP, CROP, 4), np.uint8)
    areas = mask.reshape(t_len, -1).mean(1)
    median = float(np.median(areas)) + 1e-6
    rows, centres = [], []
    for t in range(t_len):
        ys, xs = np.nonzero(mask[t])
        if len(ys):
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
            side = max(y1 - y0, x1 - x0) * 1.2 + 2
            k = CROP / side
            warp = np.array([[k, 0, CROP / 2 - cx * k], [0, k, CROP / 2 - cy * k]], np.float32)
            flags = cv2.INTER_AREA if side > CROP else cv2.INTER_LINEAR
            crops[t, ..., :3] = cv2.warpAffine(frames[t], warp, (CROP, CROP), flags=flags)
            crops[t, ..., 3] = cv2.warpAffine((mask[t] * 255).astype(np.uint8), warp,
                                              (CROP, CROP), flags=cv2.INTER_LINEAR)
            pixels = frames[t][mask[t]].astype(np.float32) / 255
            mean, spread = pixels.mean(0), pixels.std(0)
            box = [cx / w, cy / h, (x1 - x0) / w, (y1 - y0) / h]
            border = float(y0 == 0 or x0 == 0 or y1 == h or x1 == w)
            centres.append((cx / w, cy / h))
            confidence = float(probs[t][mask[t]].mean())
        else:
            mean = spread = np.zeros(3, np.float32)
            box, border, confidence = [0.5, 0.5, 0.0, 0.0], 0.0, 0.0
            centres.append(None)
        ranked = np.sort(scores[t])[::-1]
        rows.append([scores[t, query], scores[:, query].mean(), *ranked, areas[t],
                     areas[t] / median, np.log(areas[t] + 1e-4), *box, border,
                     float(probs[t].max()), confidence, *mean, *spread])
    moved = np.zeros((t_len, 2), np.float32)
    for t in range(t_len):
        steps = [np.hypot(centres[t][0] - centres[u][0], centres[t][1] - centres[u][1])
                 for u in (t - 1, t + 1)
                 if 0 <= u < t_len and centres[t] is not None and centres[u] is not None]
        moved[t] = [max(steps) if steps else 1.0, float(bool(steps))]
    return crops, np.concatenate([np.asarray(rows, np.float32), moved], 1)


class PresenceHead(nn.Module):
    """Sentence × answer → a logit per frame that the answer shows the sentence's object."""

    def __init__(self, config: PresenceHeadConfig) -> None:
        super().__init__()
        self.config = c = config
        d = c.dim
        self.embed = nn.Embedding(c.vocab_size, d, padding_idx=c.pad_token_id)
        self.word_proj = nn.Linear(c.word_dim, d)
        self.slots = nn.Parameter(torch.randn(4, d) * 0.1)  # four attention poolings of the words
        self.text_out = nn.Linear(4 * d, d)
        self.crop_net = nn.Sequential(
            nn.Conv2d(4, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU())
        self.crop_out = nn.Linear(128, d)
        self.scalar_net = nn.Sequential(nn.Linear(num_scalars(c.num_queries), d), nn.ReLU(),
                                        nn.Linear(d, d))
        self.scalar_to_visual = nn.Linear(d, d)
        self.classifier = nn.Sequential(nn.Linear(4 * d, 128), nn.ReLU(), nn.Linear(128, 1))
        n = num_scalars(c.num_queries)
        self.register_buffer("scalar_mean", torch.zeros(n))
        self.register_buffer("scalar_std", torch.ones(n))

    def reads(self, text: str) -> bool:
        """Whether the head can judge ``text``: every word (lower-cased, without surrounding
        punctuation) is one of its training sentences' words. A head trained on the built-in
        model's synthetic sentences knows nothing of "the grey rabbit": it would answer at
        random, so it leaves such a sentence to the class score."""
        if not self.config.vocabulary:
            return True
        known = set(self.config.vocabulary)
        words = [w.strip(_PUNCTUATION) for w in text.lower().split()]
        return all(w in known for w in words if w)

    def encode_sentences(self, model: nn.Module, texts: list[str],
                         device: str | torch.device) -> Tensor:
        """``texts`` as the head reads them ``[B, dim]``: their tokens and ``model``'s word
        features (`ReferFormer.encode_text`) through `encode_text`."""
        words, _, _, tokens = model.encode_text(list(texts), device)
        return self.encode_text(tokens["input_ids"], words)

    def encode_text(self, input_ids: Tensor, words: Tensor) -> Tensor:
        """input_ids ``[B, L]`` (padded with ``pad_token_id``), the model's word features
        ``[B, L, word_dim]`` -> ``[B, dim]``."""
        ids = input_ids[:, :self.config.max_words]
        words = words[:, :self.config.max_words]
        x = self.embed(ids) + self.word_proj(words.float())
        pad = ids.eq(self.config.pad_token_id)
        weights = torch.einsum("kd,bld->bkl", self.slots, x)
        weights = weights.masked_fill(pad[:, None], -1e4).softmax(-1)
        return self.text_out(torch.einsum("bkl,bld->bkd", weights, x).flatten(1))

    def forward(self, text: Tensor, crops: Tensor, scalars: Tensor) -> Tensor:
        """text ``[N, dim]`` (`encode_text`, one row per frame), crops uint8 ``[N, CROP, CROP,
        4]``, raw scalars ``[N, S]`` -> logits ``[N]``."""
        x = crops.permute(0, 3, 1, 2).float() / 255 - 0.5
        f = self.crop_net(x)
        visual = self.crop_out(torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1))
        s = self.scalar_net((scalars - self.scalar_mean) / self.scalar_std)
        visual = visual + self.scalar_to_visual(s)
        return self.classifier(torch.cat([text * visual, text, visual, s], 1))[:, 0]

    @torch.inference_mode()
    def window_presence(self, text: Tensor, frames: np.ndarray, mask_logits: Tensor,
                        scores: np.ndarray, query: int) -> np.ndarray:
        """float32 ``[T]`` presence of one window's frames: ``text`` ``[1, dim]`` from
        `encode_sentences`, the chosen query's low-resolution mask logits ``[T, h, w]``
        (`chosen_probs` brings them to the frames' size) and `frame_evidence`'s other
        arguments; each frame's logit mixed with the window's mean logit, through a sigmoid."""
        probs = chosen_probs(mask_logits, frames.shape[1:3])
        crops, scalars = frame_evidence(frames, probs, scores, query)
        device = self.scalar_mean.device
        logits = self(text.to(device).expand(len(crops), -1), torch.from_numpy(crops).to(device),
                      torch.from_numpy(scalars).to(device)).float()
        a = self.config.window_mix
        mixed = a * logits + (1 - a) * logits.mean()
        return mixed.sigmoid().cpu().numpy().astype(np.float32)


def chosen_probs(mask_logits: Tensor, size: tuple[int, int]) -> np.ndarray:
    """A query's low-resolution mask logits ``[T, h, w]`` -> probabilities ``[T, H, W]`` at the
    input frames' size (bilinear, as `rvos.modeling.processing.postprocess_masks` resizes)."""
    up = F.interpolate(mask_logits[None].float(), size=tuple(size), mode="bilinear",
                       align_corners=False)[0]
    return up.sigmoid().cpu().numpy()


def save_presence_head(head: PresenceHead, folder: str | os.PathLike) -> Path:
    """Write ``presence_head.safetensors`` into ``folder`` and its settings into the folder's
    config.json (which must exist: the model's own)."""
    folder = Path(folder)
    config_path = folder / "config.json"
    meta = json.loads(config_path.read_text())
    save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()},
              str(folder / HEAD_FILE))
    meta[CONFIG_KEY] = {**asdict(head.config), "vocabulary": list(head.config.vocabulary)}
    config_path.write_text(json.dumps(meta, indent=2) + "\n")
    return folder / HEAD_FILE


def load_presence_head(folder: str | os.PathLike, metadata: dict) -> PresenceHead | None:
    """The presence head of a model folder, or None when it has none (no ``presence_head`` in
    its config.json, or no weights file). Weights that do not fit the settings raise
    ``ValueError``."""
    settings = metadata.get(CONFIG_KEY)
    path = Path(folder) / HEAD_FILE
    if not isinstance(settings, dict) or not path.is_file():
        return None
    head = PresenceHead(PresenceHeadConfig(**settings))
    head.load_state_dict(load_file(str(path)), strict=True)
    return head.eval()
