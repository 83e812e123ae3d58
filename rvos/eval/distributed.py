"""Sharding a job over the processes ``torchrun`` starts, on one machine or several.

``torchrun --nproc-per-node N [--nnodes M --rdzv-endpoint HOST:PORT] -m rvos ...`` starts N
processes per machine and tells each its place (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); without
torchrun a command is rank 0 of 1. Work is split statically (`split_work`), so ranks only talk
twice: rank 0 broadcasts what is to be done, and everyone meets at the end. The process group is
always gloo: it carries Python objects between CPU processes, whatever device the model runs on,
so the same code path serves CPUs and GPUs (each rank uses the GPU of its local rank).
"""

from __future__ import annotations

import datetime
import heapq
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = ["ProcessGroup", "Workers", "rank_device", "split_work"]

T = TypeVar("T")
# Ranks wait for the slowest one at the end; a dataset run on CPUs can take many hours.
_TIMEOUT = datetime.timedelta(days=7)


@dataclass(frozen=True)
class Workers:
    """This process's place among the workers of a (torchrun) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that reports and writes shared files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Workers:
        """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (set by torchrun; absent: 0, 1, 0)."""
        env = os.environ if env is None else env
        try:
            rank = int(env.get("RANK", "0"))
            world = int(env.get("WORLD_SIZE", "1"))
            local = int(env.get("LOCAL_RANK", str(rank)))
        except ValueError as exc:
            raise ValueError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers: {exc}") from None
        if world < 1 or not 0 <= rank < world or local < 0:
            raise ValueError(
                f"inconsistent torchrun environment: RANK={rank}, "
                f"WORLD_SIZE={world}, LOCAL_RANK={local}"
            )
        return cls(rank, world, local)


def rank_device(workers: Workers, requested: str | None) -> torch.device:
    """The device this rank runs on.

    ``None`` / ``"auto"``: the GPU of the local rank when CUDA is usable, else the CPU.
    ``"cuda"``: the GPU of the local rank (an error when there are fewer GPUs than local ranks).
    Anything else (``"cpu"``, ``"cuda:1"``) is taken as written.
    """
    if requested in (None, "auto"):
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA GPU is usable here; use --device cpu")
        count = torch.cuda.device_count()
        if workers.local_rank >= count:
            raise ValueError(
                f"local rank {workers.local_rank} has no GPU of its own: this "
                f"machine has {count}; start at most {count} processes per node "
                "or use --device cpu"
            )
        return torch.device("cuda", workers.local_rank)
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {requested}: no CUDA GPU is usable here; use --device cpu")
    return device


def split_work(costs: Sequence[float], world_size: int) -> list[list[int]]:
    """Indices of ``costs`` for each rank, balanced greedily: the most expensive item goes to
    the least loaded rank, ties to the lower index and rank. Deterministic, so every rank
    computes the same split; each rank's indices come back in increasing order."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    loads = [(0.0, r) for r in range(world_size)]
    shares: list[list[int]] = [[] for _ in range(world_size)]
    for i in sorted(range(len(costs)), key=lambda i: (-float(costs[i]), i)):
        load, r = heapq.heappop(loads)
        shares[r].append(i)
        heapq.heappush(loads, (load + float(costs[i]), r))
    return [sorted(s) for s in shares]


class ProcessGroup:
    """The job's gloo process group, for the duration of a ``with`` block (nothing to set up
    for a single process)."""

    def __init__(self, workers: Workers) -> None:
        self.workers = workers
        self._own = False

    def __enter__(self) -> ProcessGroup:
        if self.workers.distributed and not dist.is_initialized():
            dist.init_process_group("gloo", timeout=_TIMEOUT)
            self._own = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._own and dist.is_initialized():
            dist.destroy_process_group()
        self._own = False

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if not self.workers.distributed:
            return obj

        box: list[Any] = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.workers.distributed:
            return [obj]

        out: list[Any] = [None] * self.workers.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        """Wait until every rank got here."""
        if self.workers.distributed:
            dist.barrier()
