"""GAN losses as objects that own their terms: how D and G are scored and how D is regularised.

`pretrain_gan.loss` names one (`make_loss`): the non-saturating logistic loss with R1 on reals (the
paper's setting, as stylegan2-ada's StyleGAN2Loss) or WGAN-GP. The trainer computes the logits; the
loss object turns them into the two scalars to minimise and the figures worth logging.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ivfg.config import GanConfig

Discriminate = Callable[[torch.Tensor], torch.Tensor]  # images -> D's logits, float32


def gradient_penalty_r1(real_logits: torch.Tensor, reals: torch.Tensor) -> torch.Tensor:
    """||grad_x D(x)||^2 on real images, per sample (Mescheder et al. 2018)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), reals, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1)


def wgan_gp_penalty(discriminate: Discriminate, reals: torch.Tensor, fakes: torch.Tensor,
                    generator: torch.Generator) -> torch.Tensor:
    """(||grad D(mix)|| - 1)^2 on random interpolates of real and fake (Gulrajani et al. 2017)."""
    eps = torch.rand(reals.shape[0], 1, 1, 1, generator=generator).to(reals.device, reals.dtype)
    mixed = torch.lerp(reals.detach(), fakes.detach(), eps).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminate(mixed).sum(), mixed, create_graph=True)
    return (grad.float().flatten(1).norm(dim=1) - 1).pow(2)


class LogisticR1:
    """softplus(D(fake)) + softplus(-D(real)) for D, softplus(-D(fake)) for G; gamma/2 * R1 on reals,
    every `interval` steps and scaled by it (StyleGAN2's lazy regularisation)."""

    def __init__(self, gamma: float, interval: int = 1):
        self.gamma, self.interval = gamma, interval

    def reals_need_grad(self, step: int) -> bool:
        return self.gamma > 0 and step % self.interval == 0

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor, reals: torch.Tensor,
                      fakes: torch.Tensor, discriminate: Discriminate, rng: torch.Generator,
                      step: int) -> tuple[torch.Tensor, dict[str, float]]:
        loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        if not self.reals_need_grad(step):
            return loss, {}
        r1 = gradient_penalty_r1(real_logits, reals).mean()
        return loss + self.gamma / 2 * r1 * self.interval, {"r1": float(r1.detach())}

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake_logits).mean()


class WganGp:
    """D(fake) - D(real) + lambda * GP + 1e-3 * D(real)^2 (progressive GAN's drift term) for D, -D(fake) for G."""
    DRIFT = 1e-3

    def __init__(self, gp_lambda: float):
        self.gp_lambda = gp_lambda

    def reals_need_grad(self, step: int) -> bool:
        return False  # the penalty differentiates at interpolates, not at the reals

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor, reals: torch.Tensor,
                      fakes: torch.Tensor, discriminate: Discriminate, rng: torch.Generator,
                      step: int) -> tuple[torch.Tensor, dict[str, float]]:
        gp = wgan_gp_penalty(discriminate, reals, fakes, rng).mean()
        loss = fake_logits.mean() - real_logits.mean() + self.gp_lambda * gp + self.DRIFT * real_logits.pow(2).mean()
        return loss, {"gp": float(gp.detach())}

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -fake_logits.mean()


GanLoss = LogisticR1 | WganGp


def make_loss(cfg: GanConfig) -> GanLoss:
    if cfg.loss == "logistic_r1":
        return LogisticR1(cfg.r1_gamma, cfg.r1_interval)
    return WganGp(cfg.gp_lambda)
