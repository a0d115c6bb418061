"""StyleGAN v1 generator and discriminator with progressive growing, and no per-pixel noise.

Follows the published architecture (NVlabs/stylegan, networks_stylegan.py): pixel-normalised z, an
8-layer mapping network with learning rate x0.01, a learned 4x4 constant, AdaIN at every convolution,
equalised learning rate, blurred up/down-sampling, fade-in of each new resolution, minibatch stddev.
Widths are parameters, so a CPU preset and the paper-size model are the same code.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def channels(resolution: int, base: int, maximum: int) -> int:
    """NVlabs' width rule nf(stage) = fmap_base / 2^stage with stage = log2(resolution) - 1, capped at
    fmap_max: with the paper's 8192 / 512 that is 512 channels up to 32x32, 256 at 64, 128 at 128."""
    return int(min(2 * base // resolution, maximum))


def _scaled(x: torch.Tensor, weight: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, weight) with the equalised-learning-rate scale applied to whichever is smaller: the same
    product, but a 512-wide layer at small batch and resolution no longer rescales millions of weights
    (and their gradients) on every call."""
    return (x * scale, weight) if x.numel() < weight.numel() else (x, weight * scale)


class EqualLinear(nn.Module):
    """Dense layer with equalised learning rate: weights stored at unit variance, scaled at run time."""

    def __init__(self, in_dim: int, out_dim: int, gain: float = SQRT2, lr_mul: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = gain / math.sqrt(in_dim) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(*_scaled(x, self.weight, self.scale), self.bias * self.lr_mul)


def _shift_matrix(flip: bool) -> torch.Tensor:
    """(9, 16) 0/1 matrix taking a flattened 3x3 kernel to the 4x4 kernel of that convolution fused with
    2x nearest up/down-sampling (the sum of its four one-pixel shifts), mirrored when `flip`."""
    m = torch.zeros(3, 3, 4, 4)
    for i in range(3):
        for j in range(3):
            m[i, j, i:i + 2, j:j + 2] = 1
    return (m.flip([2, 3]) if flip else m).reshape(9, 16)


def fused_kernel(w: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """3x3 kernel -> its summed-shift 4x4 kernel, as one product with the 0/1 `_shift_matrix`.

    Written as a product rather than padded, shifted slices: at low resolution building the kernel
    (and its gradient) cost more than the convolution itself. Under autocast the product runs in
    bf16 (exact sums of the bf16 weights, accumulated in fp32 and rounded once), which builds a
    512-channel kernel 4x faster than in fp32 and skips casting the result; `F.linear` with the
    transposed matrix is the faster of the equal GEMM layouts on CPU.
    """
    out_ch, in_ch = w.shape[:2]
    return F.linear(w.reshape(-1, 9), shift.t()).reshape(out_ch, in_ch, 4, 4)


class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate.

    `up=True` is nearest 2x upsampling followed by this convolution, and `down=True` this convolution
    followed by 2x2 average pooling, each computed as one stride-2 (transposed) convolution with the
    summed-shift 4x4 kernel, as NVlabs' fused_scale layers do: the same result for 2.25x fewer
    multiply-adds.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, gain: float = SQRT2, bias: bool = True,
                 up: bool = False, down: bool = False):
        super().__init__()
        if (up or down) and kernel != 3:
            raise ValueError("fused up/down-sampling is defined for 3x3 kernels")
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        # With `down`, the scale also carries the 2x2 average pooling's 1/4.
        self.scale = gain / math.sqrt(in_ch * kernel * kernel) * (0.25 if down else 1.0)
        self.padding = kernel // 2
        self.up, self.down = up, down
        if up or down:
            # A transposed convolution correlates with the mirrored kernel. The 0/1 entries are exact in
            # bf16. A buffer, not a constant, so that it lives on the module's device: no copy per call.
            self.register_buffer("shift", _shift_matrix(flip=up), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.up or self.down):
            return F.conv2d(*_scaled(x, self.weight, self.scale), self.bias, padding=self.padding)
        x, kernel = _scaled(x, fused_kernel(self.weight, self.shift), self.scale)
        if self.up:
            return F.conv_transpose2d(x, kernel.transpose(0, 1), self.bias, stride=2, padding=1)
        return F.conv2d(x, kernel, self.bias, stride=2, padding=1)


class Blur(nn.Module):
    """The [1, 2, 1] binomial low-pass filter (zero padding), applied separably to every channel.

    Written as sums of shifted slices rather than a depthwise convolution: on CPU the grouped
    convolution's backward pass runs group by group, which made the blur the most expensive layer
    of a training step with R1's double backward.
    """

    def __init__(self, ch: int | None = None):
        super().__init__()

    @staticmethod
    def _pass(x: torch.Tensor, dim: int) -> torch.Tensor:
        n = x.shape[dim]
        pad = [0, 0, 0, 0]
        pad[(3 - dim) * 2: (3 - dim) * 2 + 2] = [1, 1]
        p = F.pad(x, pad)
        return (p.narrow(dim, 0, n) + 2 * p.narrow(dim, 1, n) + p.narrow(dim, 2, n)) * 0.25

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._pass(self._pass(x, 3), 2)


def upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def downsample(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class MappingNetwork(nn.Module):
    """z -> w: pixel norm, then `layers` dense layers with leaky ReLU, learning rate x lr_mul."""

    def __init__(self, style_dim: int, layers: int = 8, lr_mul: float = 0.01):
        super().__init__()
        blocks: list[nn.Module] = [PixelNorm()]
        for _ in range(layers):
            blocks += [EqualLinear(style_dim, style_dim, lr_mul=lr_mul), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class AdaIN(nn.Module):
    """Instance normalisation, then a per-channel scale and bias predicted from w."""

    def __init__(self, ch: int, style_dim: int):
        super().__init__()
        self.style = EqualLinear(style_dim, 2 * ch, gain=1.0)
        self.style.bias.data[:ch] = 1.0  # scale starts at 1, bias at 0

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        scale, bias = self.style(w)[:, :, None, None].chunk(2, dim=1)
        return F.instance_norm(x, eps=1e-8) * scale + bias


class SynthesisBlock(nn.Module):
    """Two AdaIN-modulated 3x3 convolutions at one resolution (the first upsamples, except at 4x4)."""

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, first: bool = False):
        super().__init__()
        self.first = first
        if first:
            self.const = nn.Parameter(torch.ones(1, out_ch, 4, 4))
            self.bias0 = nn.Parameter(torch.zeros(1, out_ch, 1, 1))
        else:
            self.conv0 = EqualConv2d(in_ch, out_ch, 3, up=True)
            self.blur = Blur(out_ch)
        self.ada0 = AdaIN(out_ch, style_dim)
        self.conv1 = EqualConv2d(out_ch, out_ch, 3)
        self.ada1 = AdaIN(out_ch, style_dim)

    def forward(self, x: torch.Tensor | None, w0: torch.Tensor, w1: torch.Tensor) -> torch.Tensor:
        if self.first:
            x = lrelu(self.const.expand(w0.shape[0], -1, -1, -1) + self.bias0)
        else:
            x = lrelu(self.blur(self.conv0(x)))
        x = self.ada0(x, w0)
        x = self.ada1(lrelu(self.conv1(x)), w1)
        return x


class Generator(nn.Module):
    """Mapping + synthesis, grown from 4x4 to `resolution`; `forward` renders at any grown level."""

    def __init__(self, resolution: int, style_dim: int = 512, mapping_layers: int = 8, mapping_lr_mul: float = 0.01,
                 channel_base: int = 8192, channel_max: int = 512):
        super().__init__()
        self.resolution = resolution
        self.style_dim = style_dim
        self.levels = int(math.log2(resolution)) - 1  # 4x4 is level 0
        self.mapping = MappingNetwork(style_dim, mapping_layers, mapping_lr_mul)
        self.blocks = nn.ModuleList()
        self.to_rgb = nn.ModuleList()
        prev = None
        for level in range(self.levels):
            ch = channels(4 * 2 ** level, channel_base, channel_max)
            self.blocks.append(SynthesisBlock(prev or ch, ch, style_dim, first=level == 0))
            self.to_rgb.append(EqualConv2d(ch, 3, 1, gain=1.0))
            prev = ch
        self.register_buffer("w_avg", torch.zeros(style_dim))

    @property
    def num_ws(self) -> int:
        return 2 * self.levels

    def ws_from_z(self, z: torch.Tensor, z2: torch.Tensor | None = None, crossover: int | None = None,
                  psi: float = 1.0) -> torch.Tensor:
        """Per-layer latents (B, num_ws, style_dim); style mixing from `crossover` on with z2's w."""
        mixing = z2 is not None and crossover is not None
        # One pass through the mapping network for both latents: half the small matrix products.
        w = self.mapping(torch.cat([z, z2]) if mixing else z)
        if psi != 1.0:
            w = self.w_avg + psi * (w - self.w_avg)
        ws = w[:, None].repeat(1, self.num_ws, 1)
        if mixing:
            ws, ws2 = ws.chunk(2)
            ws = torch.cat([ws[:, :crossover], ws2[:, crossover:]], dim=1)
        return ws

    def synthesis(self, ws: torch.Tensor, level: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        """Render at `level` (default: full resolution); alpha < 1 fades the newest level in."""
        level = self.levels - 1 if level is None else level
        if ws.dim() == 2:  # one w for every layer (the projector's output)
            ws = ws[:, None].expand(-1, self.num_ws, -1)
        x = None
        prev_x = None
        for i in range(level + 1):
            prev_x = x
            x = self.blocks[i](x, ws[:, 2 * i], ws[:, 2 * i + 1])
        rgb = self.to_rgb[level](x)
        if alpha < 1.0 and level > 0:
            low = upsample(self.to_rgb[level - 1](prev_x))
            rgb = torch.lerp(low, rgb, alpha)
        return rgb

    def forward(self, z: torch.Tensor, level: int | None = None, alpha: float = 1.0, psi: float = 1.0) -> torch.Tensor:
        return self.synthesis(self.ws_from_z(z, psi=psi), level, alpha)


class MinibatchStddev(nn.Module):
    def __init__(self, group: int = 4):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = min(self.group, b)
        if b % g:
            g = 1
        y = x.reshape(g, -1, c, h, w)
        y = (y - y.mean(0)).pow(2).mean(0).add(1e-8).sqrt().mean(dim=(1, 2, 3))
        y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_ch, in_ch, 3)
        self.blur = Blur(in_ch)
        self.conv1 = EqualConv2d(in_ch, out_ch, 3, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = lrelu(self.conv0(x))
        return lrelu(self.conv1(self.blur(x)))


class Discriminator(nn.Module):
    """Mirror of the generator: from-RGB at each level, blocks down to 4x4, minibatch stddev, dense head."""

    def __init__(self, resolution: int, channel_base: int = 8192, channel_max: int = 512, mbstd_group: int = 4):
        super().__init__()
        self.levels = int(math.log2(resolution)) - 1
        ch = [channels(4 * 2 ** level, channel_base, channel_max) for level in range(self.levels)]
        self.from_rgb = nn.ModuleList(EqualConv2d(3, c, 1) for c in ch)
        # blocks[level] takes level's features down to level - 1 (none for 4x4).
        self.blocks = nn.ModuleList(DiscriminatorBlock(ch[level], ch[level - 1]) for level in range(1, self.levels))
        self.mbstd = MinibatchStddev(mbstd_group)
        self.conv = EqualConv2d(ch[0] + 1, ch[0], 3)
        self.dense = EqualLinear(ch[0] * 16, ch[0])
        self.out = EqualLinear(ch[0], 1, gain=1.0)

    def forward(self, img: torch.Tensor, level: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        level = self.levels - 1 if level is None else level
        x = lrelu(self.from_rgb[level](img))
        if level > 0:
            x = self.blocks[level - 1](x)
            if alpha < 1.0:
                low = lrelu(self.from_rgb[level - 1](downsample(img)))
                x = torch.lerp(low, x, alpha)
            for lv in range(level - 1, 0, -1):
                x = self.blocks[lv - 1](x)
        x = lrelu(self.conv(self.mbstd(x)))
        x = lrelu(self.dense(x.flatten(1)))
        return self.out(x)
