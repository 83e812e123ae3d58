"""Training clips from the official Ref-YouTube-VOS, Ref-DAVIS17 and MeViS layouts.

An *item* is one expression of one video with an anchor frame, as in ReferFormer's released
data loader: every expression of a video gives one item per ``frames`` frames of the video
(anchors 0, frames, 2 * frames, ...), so an epoch sees every expression about once per clip
length of video. One expression per item (not all of the clip's expressions at once, as the
synthetic training does): this is the paper's sampling, and it keeps the number of clips per
step, and therefore the step time, fixed.

Frame sampling (the paper's): the anchor, one frame 1-3 frames before it and one 1-3 after
(clamped to the video), and the rest of the clip drawn at random from the frames outside that
window (from the whole video when too few remain; with repeats when the video is shorter than
the clip); sorted in time. When the referred object is visible in none of them, the clip is
drawn again around a frame where it is visible.

Augmentations (`rvos.training.recipe.Recipe`): horizontal flip that swaps the words "left" and
"right" in the sentence; photometric jitter (brightness, contrast, saturation, hue, one draw per
clip); multi-scale resize (one short side per step, shared by every clip and rank of that step,
long side capped); with some probability a random crop before the resize.

Every random choice of an item is drawn from a generator seeded by ``(seed, epoch, index)``, so
a clip is the same whichever rank or worker loads it, and a resumed run loads exactly the clips
the uninterrupted run would have.

Ground truth: ytvos / davis read ``<split>/Annotations/<video>/<frame>.png`` (indexed PNGs,
pixel value = the expression's ``obj_id``); MeViS the union of the expression's objects in
``<split>/mask_dict.json`` (the MeViS ReferFormer baseline trains on the union as one target).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, DistributedSampler, Sampler

from rvos.data.coco_rle import RleError, decode_coco_rle
from rvos.data.layouts import DatasetError, DatasetVideo, read_frames, read_split
from rvos.data.mevis import mask_dict_path, read_mask_dict
from rvos.modeling.processing import normalize

__all__ = ["ClipBatches", "OfficialClips", "collate_clips", "swap_left_right"]

_LEFT_RIGHT = re.compile(r"\b(left|right)(?=\b|most\b|ward)", re.IGNORECASE)


def swap_left_right(sentence: str) -> str:
    """The sentence of a mirrored video: "left" and "right" (also in "leftmost", "rightward")
    swap, keeping their case; other words that contain them ("bright") stay."""

    def swap(m: re.Match) -> str:
        word = m.group(1)
        new = "right" if word.lower() == "left" else "left"
        if word.isupper():
            return new.upper()
        return new.capitalize() if word[0].isupper() else new

    return _LEFT_RIGHT.sub(swap, sentence)


class OfficialClips(Dataset):
    """``dataset[(index, epoch, short_side)]``: the clip of item ``index`` as drawn in
    ``epoch``, resized to ``short_side`` (an int index alone: epoch 0, the first scale).

    Returns a dict: ``frames`` float ``[T, 3, H, W]`` (ImageNet-normalised), ``masks`` bool
    ``[T, H, W]``, ``caption`` (str), ``item`` (video name, expression id, anchor frame).
    """

    def __init__(
        self,
        root: str | Path,
        fmt: str,
        split: str = "train",
        *,
        frames: int = 5,
        scales: list[int] | tuple[int, ...] = (360,),
        max_size: int = 0,
        crop_prob: float = 0.0,
        flip_prob: float = 0.5,
        photometric: bool = True,
        seed: int = 0,
    ) -> None:
        self.split = read_split(root, split, fmt)
        self.format, self.frames, self.scales = fmt, int(frames), list(scales)
        self.max_size, self.crop_prob, self.flip_prob = max_size, crop_prob, flip_prob
        self.photometric, self.seed = photometric, seed
        self.mask_dict: dict | None = None
        if fmt == "mevis":
            self.mask_dict = read_mask_dict(mask_dict_path(root, split), split)
        else:
            for v in self.split.videos:
                for e in v.expressions:
                    if e.obj_id is None:
                        raise DatasetError(
                            f"{self.split.meta_file}: video {v.name!r}, expression "
                            f"{e.exp_id!r} has no obj_id; training needs a split with ground "
                            "truth (train)"
                        )
        self.items: list[tuple[int, int, int]] = [
            (vi, ei, anchor)
            for vi, v in enumerate(self.split.videos)
            for ei in range(len(v.expressions))
            for anchor in range(0, v.num_frames, self.frames)
        ]
        if not self.items:
            raise DatasetError(f"{self.split.meta_file}: the split has no expression to train on")

    def __len__(self) -> int:
        return len(self.items)

    # ------------------------------------------------------------------------- ground truth
    def _masks(self, video: DatasetVideo, ei: int, picks: list[int], size) -> np.ndarray:
        """bool ``[len(picks), H, W]``: the expression's object(s) in the picked frames."""
        expression = video.expressions[ei]
        out = np.zeros((len(picks), *size), dtype=bool)
        if self.mask_dict is not None:
            for anno in expression.anno_ids:
                per_frame = self.mask_dict.get(anno)
                if per_frame is None or len(per_frame) != video.num_frames:
                    raise DatasetError(
                        f"video {video.name!r}: anno_id {anno} is missing from mask_dict.json "
                        "or has the wrong number of frames"
                    )
                for j, t in enumerate(picks):
                    if per_frame[t] is not None:
                        try:
                            out[j] |= decode_coco_rle(per_frame[t]).astype(bool)
                        except (RleError, ValueError) as exc:
                            raise DatasetError(
                                f"video {video.name!r}: anno_id {anno}, frame "
                                f"{video.frames[t]!r}: {exc}"
                            ) from None
            return out
        ann_dir = self.split.root / self.split.name / "Annotations" / video.name
        obj = int(expression.obj_id)
        for j, t in enumerate(picks):
            path = ann_dir / f"{video.frames[t]}.png"
            try:
                with Image.open(path) as im:
                    labels = np.asarray(im)
            except OSError as exc:
                raise DatasetError(f"video {video.name!r}: cannot read {path}: {exc}") from None
            if labels.shape[:2] != tuple(size):
                raise DatasetError(
                    f"{path} is {labels.shape[1]}x{labels.shape[0]}, its frame {size[1]}x{size[0]}"
                )
            out[j] = labels == obj
        return out

    # ----------------------------------------------------------------------------- sampling
    def _sample(self, n_video: int, anchor: int, rng: np.random.Generator) -> list[int]:
        n = self.frames
        local = [
            anchor,
            max(0, anchor - int(rng.integers(1, 4))),
            min(n_video - 1, anchor + int(rng.integers(1, 4))),
        ][:n]
        rest = n - len(local)
        if rest > 0:
            outside = [t for t in range(n_video) if t < min(local) or t > max(local)]
            if len(outside) > rest:
                extra = rng.choice(outside, rest, replace=False).tolist()
            elif n_video >= rest:
                extra = rng.choice(n_video, rest, replace=False).tolist()
            else:
                extra = list(range(n_video)) + rng.choice(n_video, rest - n_video).tolist()
            local += extra
        return sorted(int(t) for t in local)

    def __getitem__(self, key) -> dict:
        index, epoch, short = key if isinstance(key, tuple) else (key, 0, self.scales[0])
        vi, ei, anchor = self.items[index]
        video = self.split.videos[vi]
        rng = np.random.default_rng([self.seed, epoch, index])
        picks = self._sample(video.num_frames, anchor, rng)
        frames = np.stack([read_frames(video, t, t + 1)[0] for t in picks])
        masks = self._masks(video, ei, picks, frames.shape[1:3])
        if not masks.any():
            # The paper draws another item; we draw this expression's clip again around a
            # frame where its object is visible (an object visible nowhere stays a no-target
            # example: every query is then a negative).
            seen = [t for t in range(video.num_frames) if t not in picks]
            for t in rng.permutation(seen)[:8].tolist():
                m = self._masks(video, ei, [t], frames.shape[1:3])
                if m.any():
                    picks = self._sample(video.num_frames, t, rng)
                    frames = np.stack([read_frames(video, s, s + 1)[0] for s in picks])
                    masks = self._masks(video, ei, picks, frames.shape[1:3])
                    break
        caption = " ".join(video.expressions[ei].text.split())
        frames, masks, caption = self._augment(frames, masks, caption, int(short), rng)
        return {
            "frames": normalize(frames),
            "masks": torch.from_numpy(np.ascontiguousarray(masks)),
            "caption": caption,
            "item": (video.name, video.expressions[ei].exp_id, anchor),
        }

    # ------------------------------------------------------------------------ augmentation
    def _augment(self, frames, masks, caption, short, rng):
        if rng.random() < self.flip_prob:
            frames, masks = frames[:, :, ::-1], masks[:, :, ::-1]
            caption = swap_left_right(caption)
        if self.photometric:
            frames = _photometric(frames, rng)
        if rng.random() < self.crop_prob:
            frames, masks = _random_crop(frames, masks, rng)
        h, w = frames.shape[1:3]
        size = short
        if self.max_size and max(h, w) / min(h, w) * size > self.max_size:
            size = int(round(self.max_size * min(h, w) / max(h, w)))
        nh, nw = (
            (size, max(1, round(w * size / h))) if h <= w else (max(1, round(h * size / w)), size)
        )
        if (nh, nw) != (h, w):
            frames = np.stack(
                [cv2.resize(f, (nw, nh), interpolation=cv2.INTER_LINEAR) for f in frames]
            )
            masks = np.stack(
                [
                    cv2.resize(m.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST) > 0
                    for m in masks
                ]
            )
        return np.ascontiguousarray(frames), masks, caption


def _photometric(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness (+-32), contrast (x0.5-1.5), saturation (x0.5-1.5) and hue (+-18 degrees),
    each with probability 1/2, as the paper's training transforms draw them; one draw for the
    whole clip, so colours stay consistent over time (the paper draws per frame). The paper's
    random channel swap is left out: it changes the colours that sentences name."""
    x = frames.astype(np.float32)
    if rng.random() < 0.5:
        x += rng.uniform(-32, 32)
    contrast_first = rng.random() < 0.5
    alpha = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else None
    if contrast_first and alpha is not None:
        x *= alpha
    sat = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else None
    hue = rng.uniform(-18, 18) if rng.random() < 0.5 else None
    if sat is not None or hue is not None:
        hsv = np.stack(
            [
                cv2.cvtColor(np.clip(f, 0, 255).astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
                for f in x
            ]
        )
        if sat is not None:
            hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0, 1)
        if hue is not None:
            hsv[..., 0] = (hsv[..., 0] + hue) % 360.0
        x = np.stack([cv2.cvtColor(f, cv2.COLOR_HSV2RGB) * 255.0 for f in hsv])
    if not contrast_first and alpha is not None:
        x *= alpha
    return np.clip(x, 0, 255).astype(np.uint8)


def _random_crop(frames, masks, rng):
    """The paper's crop branch: frames resized to a short side of 400, 500 or 600, then a crop
    of 384..600 px per side; done here in the original pixels (the resize comes after). Kept
    only if the object stays visible in some frame."""
    h, w = frames.shape[1:3]
    s = float(rng.choice([400, 500, 600])) / min(h, w)
    for _ in range(3):
        ch = int(rng.integers(384, max(385, min(int(h * s), 600) + 1)) / s)
        cw = int(rng.integers(384, max(385, min(int(w * s), 600) + 1)) / s)
        ch, cw = max(1, min(ch, h)), max(1, min(cw, w))
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        m = masks[:, y0 : y0 + ch, x0 : x0 + cw]
        if m.any() or not masks.any():
            return frames[:, y0 : y0 + ch, x0 : x0 + cw], m
    return frames, masks


def _box(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Normalised cxcywh of a bool ``[H, W]`` mask's extent (zeros when empty)."""
    ys, xs = mask.nonzero(as_tuple=True)
    if ys.numel() == 0:
        return torch.zeros(4)
    x0, x1 = xs.min().item(), xs.max().item() + 1
    y0, y1 = ys.min().item(), ys.max().item() + 1
    return torch.tensor([(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h])


def collate_clips(items: list[dict]) -> dict:
    """Pad B clips to one size (bottom / right: the mean colour, empty masks) and build the
    targets the criterion takes (boxes normalised by the padded size).

    Returns ``frames`` ``[B, T, 3, H, W]``, ``video_index`` (``arange(B)``: one expression per
    clip), ``captions`` (B), ``targets`` (B dicts of masks / boxes / valid), ``items``.
    """
    H = max(it["frames"].shape[-2] for it in items)
    W = max(it["frames"].shape[-1] for it in items)
    frames, targets = [], []
    for it in items:
        f, m = it["frames"], it["masks"]
        dh, dw = H - f.shape[-2], W - f.shape[-1]
        f = torch.nn.functional.pad(f, (0, dw, 0, dh))
        m = torch.nn.functional.pad(m, (0, dw, 0, dh))
        frames.append(f)
        targets.append(
            {
                "masks": m,
                "boxes": torch.stack([_box(x, H, W) for x in m]),
                "valid": m.flatten(1).any(1),
            }
        )
    return {
        "frames": torch.stack(frames),
        "video_index": torch.arange(len(items)),
        "captions": [it["caption"] for it in items],
        "targets": targets,
        "items": [it["item"] for it in items],
    }


class ClipBatches(Sampler):
    """This rank's micro-batches, endlessly, from micro-batch ``start`` on: each a list of
    ``(index, epoch, short_side)`` for `OfficialClips`.

    Epoch ``e`` orders the items as torch's `DistributedSampler` does with ``set_epoch(e)``
    (one shuffled order shared by all ranks, rank r taking every world-th item); micro-batch
    ``k`` of an epoch takes this rank's items ``k*B .. k*B+B-1`` (an incomplete last batch is
    dropped), so the ranks' k-th micro-batches together are items ``k*B*W .. (k+1)*B*W - 1`` of
    the shared order: the same clips one process with ``W*B`` clips per batch would take. The
    short side is drawn per (epoch, k) from ``scales``: every clip of a step shares it.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        world_size: int,
        rank: int,
        seed: int,
        scales: list[int],
        start: int = 0,
        shuffle: bool = True,
    ) -> None:
        self.num_items, self.batch_size = num_items, batch_size
        self.world_size, self.rank, self.seed = world_size, rank, seed
        self.scales, self.start, self.shuffle = list(scales), start, shuffle
        per_rank = -(-num_items // world_size)
        self.batches_per_epoch = per_rank // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"{num_items} training clips are fewer than one batch of {batch_size} per "
                f"process on {world_size} process(es): lower --batch-size"
            )

    def epoch_order(self, epoch: int) -> list[int]:
        sampler = DistributedSampler(
            range(self.num_items),
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=self.shuffle,
            seed=self.seed,
        )
        sampler.set_epoch(epoch)
        return list(sampler)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        m, epoch, order = self.start, -1, []
        while True:
            e, k = divmod(m, self.batches_per_epoch)
            if e != epoch:
                epoch, order = e, self.epoch_order(e)
            pick = np.random.default_rng([self.seed, e, k, 1]).integers(len(self.scales))
            short = self.scales[int(pick)]
            chunk = order[k * self.batch_size : (k + 1) * self.batch_size]
            yield [(i, e, short) for i in chunk]
            m += 1

    def __len__(self) -> int:  # endless; DataLoader only needs it for len(loader)
        return 2**62
