"""Several GPUs (or CPU processes) under `torchrun`: one process per device, gradients averaged.

Not the DistributedDataParallel wrapper: R1 differentiates D's output with respect to its input
with create_graph=True, which DDP's gradient reducer does not support, so gradients are averaged
by hand after each backward pass, as NVlabs/stylegan2-ada-pytorch does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist

from ivfg.device import resolve_device


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def gather(self, obj: object) -> list:
        if self.world == 1:
            return [obj]
        out: list = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


def init_from_env(device: str) -> tuple[Ranks, torch.device]:
    """torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; without them this is a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks(), resolve_device(device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device != "cpu" and torch.cuda.is_available():
        chosen = torch.device("cuda", local)
        torch.cuda.set_device(chosen)
        backend = "nccl"
    else:
        chosen, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Ranks(rank, world), chosen


def average_gradients(parameters: Iterable[torch.nn.Parameter], world: int) -> None:
    """All-reduce every gradient in one flat buffer (one collective per backward pass)."""
    if world == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()
