"""StyleGAN v1 networks: shapes at every level, continuous fade-in, no randomness inside G."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ivfg.gan.networks import Discriminator, Generator, channels

RES = 64


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return Generator(RES, style_dim=32, channel_base=256, channel_max=32), Discriminator(RES, 256, 32)


def test_paper_widths():
    assert [channels(r, 8192, 512) for r in (4, 8, 16, 32, 64, 128)] == [512, 512, 512, 512, 256, 128]


@pytest.mark.parametrize("level", range(5))
def test_shapes_at_every_level(nets, level):
    g, d = nets
    z = torch.randn(4, 32)
    img = g(z, level, alpha=0.5)
    size = 4 * 2 ** level
    assert img.shape == (4, 3, size, size)
    assert d(img, level, alpha=0.5).shape == (4, 1)


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_fade_in_starts_at_the_upsampled_lower_level(nets, level):
    g, d = nets
    ws = g.ws_from_z(torch.randn(3, 32))
    with torch.no_grad():
        faded = g.synthesis(ws, level, alpha=0.0)
        lower = g.synthesis(ws, level - 1, alpha=1.0)
        assert torch.allclose(faded, F.interpolate(lower, scale_factor=2, mode="nearest"), atol=1e-6)
        # ... and moves continuously towards the new level.
        a, b = g.synthesis(ws, level, alpha=0.3), g.synthesis(ws, level, alpha=0.3001)
        assert (a - b).abs().max() < 1e-2
        full = g.synthesis(ws, level, alpha=1.0)
        assert not torch.allclose(full, faded)
        img = torch.randn(3, 3, 4 * 2 ** level, 4 * 2 ** level)
        assert torch.allclose(d(img, level, 0.0), d(F.avg_pool2d(img, 2), level - 1, 1.0), atol=1e-5)


def test_generator_is_deterministic_without_noise_inputs(nets):
    g, _ = nets
    z = torch.randn(2, 32)
    with torch.no_grad():
        assert torch.equal(g(z), g(z))
    assert not any("noise" in name for name, _ in g.named_parameters())


def test_truncation_pulls_towards_the_mean_latent(nets):
    g, _ = nets
    z = torch.randn(8, 32)
    with torch.no_grad():
        g.w_avg.copy_(g.mapping(torch.randn(1000, 32)).mean(0))
        ws_full = g.ws_from_z(z)
        ws_half = g.ws_from_z(z, psi=0.5)
        assert torch.allclose(ws_half, g.w_avg + 0.5 * (ws_full - g.w_avg), atol=1e-5)
        assert torch.allclose(g.ws_from_z(z, psi=1e-6)[:, 0], g.w_avg.expand(8, -1), atol=1e-3)
        g.w_avg.zero_()


def test_style_mixing_uses_the_second_latent_after_the_crossover(nets):
    g, _ = nets
    z1, z2 = torch.randn(2, 32), torch.randn(2, 32)
    with torch.no_grad():
        ws = g.ws_from_z(z1, z2, crossover=3)
        # Both latents go through the mapping network as one batch: equal up to float rounding.
        assert torch.allclose(ws[:, :3], g.mapping(z1)[:, None].expand(-1, 3, -1), atol=1e-5)
        assert torch.allclose(ws[:, 3:], g.mapping(z2)[:, None].expand(-1, g.num_ws - 3, -1), atol=1e-5)
        assert not torch.allclose(ws[:, 3:], g.mapping(z1)[:, None].expand(-1, g.num_ws - 3, -1), atol=1e-2)


def test_one_latent_for_every_layer_is_accepted(nets):
    """The projector P outputs one w per face, used by every AdaIN layer."""
    g, _ = nets
    w = g.mapping(torch.randn(2, 32))
    with torch.no_grad():
        assert torch.allclose(g.synthesis(w), g.synthesis(w[:, None].expand(-1, g.num_ws, -1)))


def test_fused_resampling_convolutions_equal_the_unfused_ones():
    from ivfg.gan.networks import EqualConv2d

    torch.manual_seed(0)
    x = torch.randn(2, 5, 8, 8)
    up = EqualConv2d(5, 7, 3, up=True)
    plain = EqualConv2d(5, 7, 3)
    plain.load_state_dict(up.state_dict())
    assert torch.allclose(up(x), plain(F.interpolate(x, scale_factor=2, mode="nearest")), atol=1e-5)
    down = EqualConv2d(5, 7, 3, down=True)
    plain.load_state_dict(down.state_dict())
    assert torch.allclose(down(x), F.avg_pool2d(plain(x), 2), atol=1e-5)


def test_fused_resampling_under_bf16_autocast_matches_fp32_to_bf16_precision():
    """Under autocast the fused kernel is built in bf16: the result must stay a bf16 rounding of the
    fp32 layer, not drift by a scale factor (the equalised-lr scale is applied outside the product)."""
    from ivfg.gan.networks import EqualConv2d

    torch.manual_seed(0)
    x = torch.randn(4, 64, 8, 8)
    for layer in (EqualConv2d(64, 32, 3, up=True), EqualConv2d(64, 32, 3, down=True)):
        exact = layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = layer(x)
        assert fast.dtype == torch.bfloat16
        relative = (fast.float() - exact).norm() / exact.norm()
        assert relative < 1e-2, relative
        assert abs(fast.float().std() / exact.std() - 1) < 2e-3
