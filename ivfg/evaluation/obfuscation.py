"""The paper's non-learned baselines (Table 4): pixelization and Gaussian blur.

They take the same call as T(x, k) (faces in [0, 1] in the canonical frame and keys, which they
ignore) so that every metric treats them and the virtual faces alike.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.functional import gaussian_blur


class Pixelization(nn.Module):
    """Mosaic of `pixel_size`-square blocks, each the mean of the pixels it covers (the last row and
    column of blocks are cut by the image border)."""

    def __init__(self, pixel_size: int = 18):
        super().__init__()
        self.pixel_size = pixel_size

    def forward(self, faces01: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        size = faces01.shape[-2:]
        means = F.avg_pool2d(faces01, self.pixel_size, ceil_mode=True, count_include_pad=False)
        blocks = means.repeat_interleave(self.pixel_size, -2).repeat_interleave(self.pixel_size, -1)
        return blocks[..., :size[0], :size[1]]


class GaussianBlur(nn.Module):
    def __init__(self, kernel: int = 37, sigma: float = 6.0):
        super().__init__()
        self.kernel, self.sigma = kernel, sigma

    def forward(self, faces01: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        return gaussian_blur(faces01, [self.kernel, self.kernel], [self.sigma, self.sigma])
