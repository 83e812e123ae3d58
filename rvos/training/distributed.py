"""Torch's distributed engine for training: the process group, the DDP-wrapped training step,
and the global loss normalisation that makes W ranks of B clips one batch of W*B clips.

``torchrun --nproc-per-node N [--nnodes M --node-rank R --rdzv-endpoint HOST:PORT] -m rvos train
...`` sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``; without torchrun a run is rank 0 of 1 and
nothing here talks to anyone. Gradients are averaged by `DistributedDataParallel` over NCCL
on GPUs and gloo on CPUs.
"""

from __future__ import annotations

import datetime
import os
import warnings

import torch
import torch.distributed as dist
from torch import Tensor, nn

from rvos.eval.distributed import Workers, rank_device
from rvos.modeling import ReferFormer
from rvos.training.train import select_videos

__all__ = ["TrainStep", "Workers", "all_reduce_sum", "gather_objects", "setup", "teardown", "wrap"]

_TIMEOUT = datetime.timedelta(minutes=30)


def setup(device: str) -> tuple[Workers, torch.device]:
    """This process's place and device; starts the process group under torchrun (NCCL when
    the rank runs on a GPU, gloo otherwise)."""
    workers = Workers.from_env()
    dev = rank_device(workers, device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if workers.distributed and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend, timeout=_TIMEOUT, **kwargs)
    return workers, dev


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def gather_objects(obj: object) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` in one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        out: list = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def all_reduce_sum(values: Tensor) -> Tensor:
    """The sum over ranks of a float tensor (itself in one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        # NCCL reduces GPU tensors only; gloo CPU ones.
        nccl = dist.get_backend() == "nccl"
        work = values.to(torch.device("cuda", torch.cuda.current_device())) if nccl else values
        work = work.clone()
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        return work.to(values.device)
    return values


class TrainStep(nn.Module):
    """The model's training forward as one ``forward`` call, so that `DistributedDataParallel`
    (which hooks ``forward``) can wrap it: backbone once per clip, decoder once per
    (clip, caption) pair."""

    def __init__(self, model: ReferFormer) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: Tensor, video_index: Tensor, captions: list[str]) -> dict:
        visual = select_videos(self.model.encode_video(frames), video_index)
        return self.model.decode(visual, captions)


def wrap(model: ReferFormer, workers: Workers, device: torch.device) -> nn.Module:
    """`TrainStep` of ``model``, inside DDP when there are several ranks."""
    step = TrainStep(model)
    if not workers.distributed:
        return step
    ids = [device.index] if device.type == "cuda" else None
    # Convolutions on channels-last activations give channels-last gradients; DDP copies them
    # into its buckets either way, and says so once per parameter shape.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    # Buffers (batch-norm statistics of the built-in backbone) are rank 0's at every forward.
    return nn.parallel.DistributedDataParallel(step, device_ids=ids, broadcast_buffers=True)


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
