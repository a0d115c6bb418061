"""What makes a generator usable for IVFG: FID against real faces, and identity diversity.

Identity diversity is the share of pairs of random samples (psi = 1) that the evaluation recognizer
judges to be different people at its EER threshold on real faces. The same share for pairs of real
training faces, shown at the same resolution, is the ceiling it is logged next to.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ivfg.data.faceframe import to_frame
from ivfg.evaluation.fid import frechet_distance, gaussian, inception_features
from ivfg.models.inception import InceptionFeatures
from ivfg.models.recognizers import Recognizer


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Generator range [-1, 1] -> [0, 1]."""
    return ((images.float() + 1) / 2).clamp(0, 1)


def shrink(images01: torch.Tensor, resolution: int) -> torch.Tensor:
    """Real faces seen at the generator's current resolution."""
    factor = images01.shape[-1] // resolution
    return F.avg_pool2d(images01, factor) if factor > 1 else images01


class GanEvaluator:
    def __init__(self, reals: torch.Tensor, inception: InceptionFeatures, recognizer: Recognizer, threshold: float,
                 fid_samples: int, diversity_pairs: int, device: torch.device, seed: int = 0, batch: int = 64,
                 fid_dims: tuple[int, ...] = (192, 2048)):
        self.reals = reals  # uint8 (N, 3, R, R)
        self.inception = inception
        self.recognizer = recognizer
        self.threshold = threshold
        self.fid_samples = min(fid_samples, len(reals))
        self.pairs = diversity_pairs
        self.device = device
        self.seed = seed
        self.batch = batch
        self.fid_dims = tuple(fid_dims)
        self._real_cache: dict[int, dict] = {}

    def _features(self, images01: torch.Tensor) -> dict[int, torch.Tensor]:
        return inception_features(self.inception, images01, self.fid_dims, self.device, self.batch)

    def _embed(self, images01: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.recognizer.embed(to_frame(images01[i:i + self.batch]).to(self.device)).cpu()
                          for i in range(0, len(images01), self.batch)])

    def _different_share(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> float:
        return float((self.recognizer.score(emb_a, emb_b) < self.threshold).float().mean())

    def real_reference(self, resolution: int) -> dict:
        if resolution not in self._real_cache:
            rng = np.random.default_rng(self.seed)
            idx = torch.from_numpy(rng.choice(len(self.reals), self.fid_samples, replace=False))
            reals = shrink(self.reals[idx].float() / 255, resolution)
            feats = self._features(reals)
            a, b = (torch.from_numpy(rng.choice(len(self.reals), self.pairs)) for _ in range(2))
            keep = a != b
            pair_a = shrink(self.reals[a[keep]].float() / 255, resolution)
            pair_b = shrink(self.reals[b[keep]].float() / 255, resolution)
            self._real_cache[resolution] = {
                "stats": {k: gaussian(v) for k, v in feats.items()},
                "diversity": self._different_share(self._embed(pair_a), self._embed(pair_b)),
            }
        return self._real_cache[resolution]

    @torch.no_grad()
    def generate(self, generator, count: int, level: int, alpha: float, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        out = []
        for i in range(0, count, self.batch):
            z = torch.randn(min(self.batch, count - i), generator.style_dim, generator=g).to(self.device)
            out.append(to_unit(generator(z, level, alpha)).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def __call__(self, generator, level: int, alpha: float) -> dict:
        resolution = 4 * 2 ** level
        real = self.real_reference(resolution)
        fakes = self.generate(generator, self.fid_samples, level, alpha, self.seed + 1)
        feats = self._features(fakes)
        fid = {k: frechet_distance(*gaussian(feats[k]), *real["stats"][k]) for k in feats}
        pairs = self.generate(generator, 2 * self.pairs, level, alpha, self.seed + 2)
        emb = self._embed(pairs)
        return {**{f"fid{d}": fid[d] for d in self.fid_dims},
                "identity_diversity": self._different_share(emb[: self.pairs], emb[self.pairs:]),
                "real_identity_diversity": real["diversity"], "resolution": resolution}
