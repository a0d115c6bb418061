"""Two processes (gloo on CPU, as torchrun would start them) train one model in lockstep."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.gan.test_training import tiny


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    from ivfg.gan.distributed import init_from_env
    from ivfg.gan.training import GanTrainer

    torch.set_num_threads(1)
    ranks, device = init_from_env("cpu")
    images = (torch.rand(20, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    trainer = GanTrainer(tiny(), images, Path(out) / "run", device, ranks=ranks)
    trainer.train(stop_after_steps=3)
    resumed = GanTrainer(tiny(), images, Path(out) / "run", device, ranks=ranks)
    resumed.resume()
    resumed.train()
    torch.save({"G": resumed.G.state_dict(), "shown": resumed.shown}, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_keep_identical_weights_and_resume(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert a["shown"] == b["shown"] == 36  # the global batch counts once, not per process
    assert all(torch.equal(a["G"][k], b["G"][k]) for k in a["G"])
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert len(state["rng"]) == 2  # both processes' random streams, for an exact resume
    assert not torch.equal(state["rng"][0], state["rng"][1])
