"""GAN loss objects: each owns its terms and its regulariser, checked on discriminators with known gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ivfg.gan.loss import LogisticR1, WganGp, make_loss
from tests.gan.test_training import tiny


def linear_critic(direction: torch.Tensor):
    """D(x) = <a, x>: its gradient is `a` everywhere, so R1 = ||a||^2 and WGAN-GP's norm is ||a||."""
    return lambda x: (x.flatten(1) * direction.flatten()).sum(1)


def batch(seed: int, n: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed))


def test_logistic_r1_adds_gamma_half_r1_on_regularised_steps_only():
    a = batch(1, 1)[0] * 0.5
    D = linear_critic(a)
    reals, fakes = batch(2).requires_grad_(True), batch(3)
    real_logits, fake_logits = D(reals), D(fakes)
    plain = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
    loss = LogisticR1(gamma=4.0, interval=2)
    assert loss.reals_need_grad(0) and not loss.reals_need_grad(1)
    regularised, stats = loss.discriminator(real_logits, fake_logits, reals, fakes, D, torch.Generator(), step=0)
    assert stats["r1"] == pytest.approx(float(a.pow(2).sum()), rel=1e-5)
    # lazy regularisation: every 2nd step, scaled by 2 so that its average weight stays gamma / 2
    assert float(regularised - plain) == pytest.approx(4.0 / 2 * stats["r1"] * 2, rel=1e-5)
    skipped, stats = loss.discriminator(real_logits, fake_logits, reals, fakes, D, torch.Generator(), step=1)
    assert stats == {} and float(skipped) == pytest.approx(float(plain))
    assert float(loss.generator(fake_logits)) == pytest.approx(float(F.softplus(-fake_logits).mean()))


def test_logistic_without_gamma_never_asks_for_the_gradient_of_reals():
    assert not LogisticR1(gamma=0.0).reals_need_grad(0)


@pytest.mark.parametrize("norm, penalty", [(1.0, 0.0), (3.0, 4.0)])
def test_wgan_gp_penalises_the_critic_gradient_norm_away_from_one(norm, penalty):
    a = batch(4, 1)[0]
    a = a / a.norm() * norm
    D = linear_critic(a)
    reals, fakes = batch(5), batch(6)
    real_logits, fake_logits = D(reals), D(fakes)
    loss, stats = WganGp(gp_lambda=10.0).discriminator(real_logits, fake_logits, reals, fakes, D,
                                                       torch.Generator().manual_seed(0), step=0)
    assert stats["gp"] == pytest.approx(penalty, abs=1e-4)
    expected = fake_logits.mean() - real_logits.mean() + 10.0 * penalty + 1e-3 * real_logits.pow(2).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-4, abs=1e-4)
    assert not WganGp(10.0).reals_need_grad(0)
    assert float(WganGp(10.0).generator(fake_logits)) == pytest.approx(float(-fake_logits.mean()))


def test_the_config_names_the_loss():
    assert isinstance(make_loss(tiny(loss="logistic_r1", r1_gamma=0.1, r1_interval=4)), LogisticR1)
    chosen = make_loss(tiny(loss="wgan_gp", gp_lambda=5.0))
    assert isinstance(chosen, WganGp) and chosen.gp_lambda == 5.0
