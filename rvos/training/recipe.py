"""Training recipes for dataset training (``rvos train --data``): what the paper did for the
released architectures, and what the built-in model trains with.

The *paper* recipe is ReferFormer's (Wu et al., CVPR 2022, arXiv 2201.00487) as its released
training configuration sets it: the option names of the authors' ``opts.py`` and of
``scripts/dist_train_test_ytvos.sh`` are given beside each value, and the README's table cites
them. These are facts about the published runs; the code that realises them is rvos's own.

The *builtin* recipe keeps what the built-in model is trained with on synthetic clips
(`rvos.training.train.TrainConfig`): one learning rate for everything, warm-up then cosine.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from torch import nn

__all__ = [
    "OFFICIAL_BACKBONES",
    "Recipe",
    "builtin_recipe",
    "learning_rate_factor",
    "paper_recipe",
    "param_groups",
    "recipe_for",
]

# Backbones of the released checkpoints (their rvos names); anything else (the built-in model's
# small3d) gets the built-in recipe.
OFFICIAL_BACKBONES = (
    "resnet50",
    "resnet101",
    "swin_t_p4w7",
    "swin_s_p4w7",
    "swin_b_p4w7",
    "swin_l_p4w7",
    "video_swin_t_p4w7",
    "video_swin_s_p4w7",
    "video_swin_b_p4w7",
)


@dataclass
class Recipe:
    """Hyper-parameters of a dataset training run that depend on the architecture."""

    name: str
    lr: float  # every parameter not named below
    lr_backbone: float  # parameters under ``backbone.``
    lr_text_encoder: float  # parameters under ``text_encoder.`` (when not frozen)
    weight_decay: float
    clip_grad: float
    frames: int  # frames per training clip
    scales: list[int] = field(default_factory=list)  # short sides, one drawn per step
    max_size: int = 0  # longest side after resizing (0: no limit)
    crop_prob: float = 0.0  # chance of the resize - random crop - resize branch
    flip_prob: float = 0.5  # horizontal flip, "left" <-> "right" in the sentence
    photometric: bool = True
    freeze_text_encoder: bool = True
    # Schedule: "step" (multiply by 0.1 at each epoch in lr_drop) or "cosine" (linear warm-up
    # over ``warmup`` steps, then cosine decay to ``min_lr_ratio``).
    schedule: str = "step"
    epochs: int = 6
    lr_drop: list[int] = field(default_factory=list)
    warmup: int = 0
    min_lr_ratio: float = 0.02
    batch_size: int = 1  # clips per process and micro-batch
    eval_short_side: int = 360  # the short side inference resizes to (recorded in exports)

    def to_dict(self) -> dict:
        return asdict(self)


def paper_recipe() -> Recipe:
    """ReferFormer's Ref-YouTube-VOS training, as released (see the README's table)."""
    return Recipe(
        name="paper",
        lr=1e-4,  # opts.py --lr
        lr_backbone=5e-5,  # opts.py --lr_backbone (names: backbone.0)
        lr_text_encoder=1e-5,  # opts.py --lr_text_encoder (unused: the encoder is frozen)
        weight_decay=5e-4,  # opts.py --weight_decay, on every parameter
        clip_grad=0.1,  # opts.py --clip_max_norm
        frames=5,  # opts.py --num_frames
        # datasets/ytvos.py training transforms: short side drawn from these, long side <= 640
        # (opts.py --max_size); half the time first resized to 400/500/600, randomly cropped
        # to 384..600 px per side, then resized.
        scales=[288, 320, 352, 392, 416, 448, 480, 512],
        max_size=640,
        crop_prob=0.5,
        flip_prob=0.5,
        photometric=True,
        freeze_text_encoder=True,  # dist_train_test_ytvos.sh --freeze_text_encoder
        schedule="step",
        epochs=6,  # dist_train_test_ytvos.sh --epochs 6
        lr_drop=[3, 5],  # dist_train_test_ytvos.sh --lr_drop 3 5 (x0.1 each)
        batch_size=1,  # opts.py --batch_size, per GPU (8 GPUs: 8 clips per step)
        eval_short_side=360,  # inference_ytvos.py resizes to a short side of 360
    )


def builtin_recipe(frames: int = 8, size: int = 128) -> Recipe:
    """The built-in model's own schedule (`rvos.training.train.TrainConfig` defaults)."""
    return Recipe(
        name="builtin",
        lr=4e-4,
        lr_backbone=4e-4,
        lr_text_encoder=4e-4,
        weight_decay=5e-4,
        clip_grad=1.0,
        frames=frames,
        scales=[size],
        max_size=0,
        crop_prob=0.0,
        flip_prob=0.5,
        photometric=False,
        freeze_text_encoder=False,
        schedule="cosine",
        epochs=6,  # on a dataset without --steps, as many epochs as the paper's recipe
        warmup=300,
        min_lr_ratio=0.02,
        batch_size=8,
        eval_short_side=size,
    )


def recipe_for(backbone: str, name: str = "auto") -> Recipe:
    """``auto``: the paper's recipe for a released architecture, else the built-in one."""
    if name == "auto":
        name = "paper" if backbone in OFFICIAL_BACKBONES else "builtin"
    if name == "paper":
        return paper_recipe()
    if name == "builtin":
        return builtin_recipe()
    raise ValueError(f"--recipe must be auto, paper or builtin, got {name!r}")


def param_groups(model: nn.Module, recipe: Recipe) -> list[dict]:
    """AdamW parameter groups: backbone, text encoder and the rest, each with its learning
    rate (``base_lr``, scaled by the schedule) and the recipe's weight decay. The paper decays
    every parameter; the built-in recipe exempts biases and norms, as `rvos train` does."""
    groups: dict[str, list] = {"rest": [], "backbone": [], "text_encoder": []}
    no_decay: dict[str, list] = {"rest": [], "backbone": [], "text_encoder": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        part = name.split(".", 1)[0]
        part = part if part in ("backbone", "text_encoder") else "rest"
        exempt = recipe.name == "builtin" and (p.dim() <= 1 or name.endswith(".bias"))
        (no_decay if exempt else groups)[part].append(p)
    lrs = {
        "rest": recipe.lr,
        "backbone": recipe.lr_backbone,
        "text_encoder": recipe.lr_text_encoder,
    }
    out = []
    for part in ("rest", "backbone", "text_encoder"):
        for params, wd in ((groups[part], recipe.weight_decay), (no_decay[part], 0.0)):
            if params:
                out.append(
                    {
                        "params": params,
                        "lr": lrs[part],
                        "base_lr": lrs[part],
                        "weight_decay": wd,
                        "name": part,
                    }
                )
    return out


def learning_rate_factor(step: int, total: int, steps_per_epoch: int, recipe: Recipe) -> float:
    """The schedule's multiplier of each group's ``base_lr`` at optimizer step ``step``."""
    if recipe.schedule == "step":
        epoch = step // max(1, steps_per_epoch)
        return 0.1 ** sum(1 for e in recipe.lr_drop if epoch >= e)
    if step < recipe.warmup:
        return (step + 1) / recipe.warmup
    progress = min(1.0, (step - recipe.warmup) / max(1, total - recipe.warmup))
    r = recipe.min_lr_ratio
    return r + (1 - r) * 0.5 * (1 + math.cos(math.pi * progress))
