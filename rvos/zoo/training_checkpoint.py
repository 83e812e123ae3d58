"""The resumable checkpoint ``rvos train`` writes (``checkpoint.pt``): its format, written and read.

It lives apart from `rvos.training.train` because two sides need it: training writes and resumes it,
and
scoring (`rvos.eval.evaluate`, `rvos.eval.benchmark`) loads a model from it. With the format here,
training
imports evaluation (for its validation scores) and nothing imports back.

The file is one ``torch.save`` dict, readable with ``weights_only=True``::

    {"format": "rvos-train-1", "step", "total_steps", "elapsed", "model" (state_dict),
     "optimizer" (state_dict), "model_config" (ReferFormerConfig.to_dict()),
     "train_config" (the run's TrainConfig as a dict), "torch_rng"}

The tokenizer is not inside: it is the ``tokenizer/`` folder beside the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from rvos.modeling import ReferFormerConfig, build_referformer
from rvos.zoo.builtin import load_tokenizer

__all__ = [
    "CHECKPOINT_FORMAT",
    "load_training_checkpoint",
    "read_training_state",
    "save_training_checkpoint",
]

CHECKPOINT_FORMAT = "rvos-train-1"


def save_training_checkpoint(
    path: str | os.PathLike,
    *,
    model,
    optimizer,
    train_config: dict,
    step: int,
    total_steps: int,
    elapsed: float,
    **extra: Any,
) -> None:
    """Write the checkpoint atomically (a temporary file renamed over ``path``), so a run killed
    while saving still has its previous checkpoint. ``extra`` entries (dataset training's RNG
    states and data position) are stored beside the others."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "total_steps": total_steps,
            "elapsed": elapsed,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "model_config": model.config.to_dict(),
            "train_config": dict(train_config),
            "torch_rng": torch.get_rng_state(),
            **extra,
        },
        tmp,
    )
    os.replace(tmp, path)


def read_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's dict (tensors on the CPU); ValueError when ``path`` is not one."""
    path = Path(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint written by `rvos train`")
    return state


def load_training_checkpoint(path: str | os.PathLike, device: str = "cpu"):
    """A ReferFormer (eval mode, on ``device``) from a ``checkpoint.pt`` written by ``rvos
    train``; its tokenizer is the ``tokenizer/`` folder beside it, and its ``metadata`` records
    the frame size it was trained at (``input_short_side``)."""
    path = Path(path)
    state = read_training_state(path)
    tokenizer = load_tokenizer(path.parent / "tokenizer")
    model = build_referformer(ReferFormerConfig.from_dict(state["model_config"]), tokenizer)
    model.load_state_dict(state["model"])
    model.metadata = {"input_short_side": int(state["train_config"]["size"])}
    return model.to(device).eval()
