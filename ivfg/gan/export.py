"""The `pretrain_gan` stage's product, `models/generator.pt`: written by the trainer, read by everyone
else (the projector's training, T(x, k), evaluation) without importing the GAN trainer."""
from __future__ import annotations

from pathlib import Path

import torch

from ivfg.errors import InputError
from ivfg.fileio import write_torch
from ivfg.gan.networks import Generator

FORMAT = "ivfg-generator/1"


def generator_from_architecture(arch: dict) -> Generator:
    return Generator(arch["resolution"], arch["style_dim"], arch["mapping_layers"], arch["mapping_lr_mul"],
                     arch["channel_base"], arch["channel_max"])


def generator_state(g: Generator, architecture: dict, **extra) -> dict:
    """Everything needed to rebuild `g` (its `w_avg` buffer holds w-bar), as plain CPU tensors."""
    return {"format": FORMAT, "architecture": dict(architecture),
            "state_dict": {k: v.detach().cpu() for k, v in g.state_dict().items()},
            "w_avg": g.w_avg.detach().cpu(), **extra}


def save_generator(path: str | Path, g: Generator, architecture: dict, **extra) -> None:
    write_torch(path, generator_state(g, architecture, **extra))


def generator_from_state(state: dict, device: torch.device | str = "cpu") -> Generator:
    g = generator_from_architecture(state["architecture"])
    g.load_state_dict(state["state_dict"])
    return g.eval().requires_grad_(False).to(device)


def load_generator(path: str | Path, device: torch.device | str = "cpu") -> Generator:
    """Rebuild the exported EMA generator, frozen, on `device`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} is missing: train the generator first (dvc repro pretrain_gan)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "architecture" not in state or "state_dict" not in state:
        raise InputError(f"{path} is not a generator exported by the pretrain_gan stage")
    return generator_from_state(state, device)
