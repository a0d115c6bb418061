"""GAN losses: non-saturating logistic with R1 (the paper's setting) or WGAN-GP."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gradient_penalty_r1(real_logits: torch.Tensor, reals: torch.Tensor) -> torch.Tensor:
    """||grad_x D(x)||^2 on real images, per sample (Mescheder et al. 2018)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), reals, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1)


def d_logistic(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def g_logistic(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake_logits).mean()


def wgan_gp_penalty(discriminate, reals: torch.Tensor, fakes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(||grad D(mix)|| - 1)^2 on random interpolates of real and fake (Gulrajani et al. 2017)."""
    eps = torch.rand(reals.shape[0], 1, 1, 1, generator=generator).to(reals.device, reals.dtype)
    mixed = torch.lerp(reals.detach(), fakes.detach(), eps).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminate(mixed).sum(), mixed, create_graph=True)
    return (grad.float().flatten(1).norm(dim=1) - 1).pow(2)
