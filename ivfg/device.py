"""Run-time device choice (never hard-code one) and the mixed precision that device runs natively."""
from __future__ import annotations

import contextlib

import torch

from ivfg.config import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}': use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' was asked for but CUDA is not available here; use 'auto' or 'cpu'")
    return device


def bf16_is_native(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # CPUs with AVX512-BF16 or AMX run bf16 convolutions ~2.5x faster than fp32; others emulate it slowly.
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def uses_bf16(amp: str, device: torch.device) -> bool:
    """Whether `amp` (auto | fp32 | bf16) means bf16 autocast on `device`."""
    return amp == "bf16" or (amp == "auto" and bf16_is_native(device))


def autocast_for(cfg, device: torch.device):
    """bf16 autocast for the networks' forward passes (weights, optimiser and losses stay fp32), as a
    factory of context managers; `cfg.amp` is auto | fp32 | bf16."""
    if uses_bf16(cfg.amp, device):
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext
