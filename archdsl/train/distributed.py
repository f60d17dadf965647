"""One process of a (possibly) distributed run: torchrun's environment -> process group and device.

Started plainly, a run is one process. Under ``torchrun --nproc_per_node=N`` (``WORLD_SIZE`` > 1 in
the environment) it joins the process group through ``env://``: NCCL on CUDA, Gloo on the CPU.
Only rank 0 writes files and prints.

    dist = setup("auto")          # Dist(rank=0, world=1, local_rank=0, device=device('cpu'))
    ...
    teardown(dist)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as td

from archdsl.data import DataError

__all__ = ["Dist", "setup", "teardown", "resolve_device", "mean_across", "any_across", "sum_across", "gather_objects"]


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this process's GPU when there is one, else the CPU; ``cuda`` -> ``cuda:LOCAL_RANK``."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DataError(f"--device {device} was asked for, but torch.cuda.is_available() is False")
        return torch.device(f"cuda:{local_rank}" if device == "cuda" else device)
    if device in ("cpu", "mps"):
        return torch.device(device)
    raise DataError(f"unknown device '{device}'; expected auto, cpu, cuda or cuda:N")


def setup(device: str = "auto") -> Dist:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (else a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not td.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        td.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", init_method="env://",
                              device_id=dev if dev.type == "cuda" else None)
    return Dist(rank=rank, world=world, local_rank=local_rank, device=dev)


def teardown(dist: Dist) -> None:
    if dist.active and td.is_initialized():
        td.destroy_process_group()


def mean_across(value: torch.Tensor, dist: Dist) -> torch.Tensor:
    """The mean of a tensor over all processes (itself for one process)."""
    if not dist.active:
        return value
    value = value.detach().clone()
    td.all_reduce(value)
    return value / dist.world


def sum_across(value: torch.Tensor, dist: Dist) -> torch.Tensor:
    if not dist.active:
        return value
    value = value.detach().clone()
    td.all_reduce(value)
    return value


def any_across(flag: bool, dist: Dist) -> bool:
    """True when ``flag`` is true in any process (a signal seen by one stops all)."""
    if not dist.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=dist.device)
    td.all_reduce(t, op=td.ReduceOp.MAX)
    return bool(t.item() > 0)


def gather_objects(obj: Any, dist: Dist) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process."""
    if not dist.active:
        return [obj]
    out: list[Any] = [None] * dist.world
    td.all_gather_object(out, obj)
    return out
