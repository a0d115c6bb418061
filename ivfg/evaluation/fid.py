"""Fréchet Inception Distance (Heusel et al. 2017), shared by the GAN's periodic check and `evaluate`.

Features come from `ivfg.models.inception` (the standard FID network): 192-d after the second
max-pool (the paper's) and the usual 2048-d pool features.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import linalg
from tqdm import tqdm

from ivfg.models.inception import InceptionFeatures


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """FID between two Gaussians, as pytorch-fid computes it."""
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def gaussian(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    x = features.double().cpu().numpy()
    return x.mean(0), np.cov(x, rowvar=False)


def fid(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    return frechet_distance(*gaussian(features_a), *gaussian(features_b))


@torch.no_grad()
def inception_features(inception: InceptionFeatures, images01: torch.Tensor, dims: tuple[int, ...],
                       device: torch.device, batch: int = 64, progress: str | None = None) -> dict[int, torch.Tensor]:
    """{dims: (N, dims)} for float [0, 1] or uint8 images of any size, batched on `device`; `progress`
    names a progress bar."""
    out: dict[int, list[torch.Tensor]] = {d: [] for d in dims}
    for i in tqdm(range(0, len(images01), batch), desc=progress, disable=progress is None, leave=False):
        chunk = images01[i:i + batch].to(device)
        chunk = chunk.float() / 255 if chunk.dtype == torch.uint8 else chunk
        for d, f in inception(chunk, tuple(dims)).items():
            out[d].append(f.cpu())
    return {d: torch.cat(v) if v else torch.zeros(0, d) for d, v in out.items()}
