"""Training triplets (x1, x2, y): x1 and x2 show the same identity, y another."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from ivfg.config import TripletsConfig
from ivfg.errors import InputError


def make_triplets(rows: list[dict[str, str]], cfg: TripletsConfig, salt: int = 0) -> list[tuple[str, str, str]]:
    """`per_image` triplets anchored on every image of every identity with two or more images.

    Anchoring on each image (not each identity) covers every identity and every image, with
    frequent identities weighted by their image count as in the paper's training data.
    """
    by_identity: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_identity[r["identity"]].append(r["image"])
    identities = sorted(by_identity)
    if len(identities) < 2:
        raise InputError(f"need at least two identities to draw impostors, got {len(identities)}")
    images = [img for ident in identities for img in sorted(by_identity[ident])]
    owner = np.array([k for k, ident in enumerate(identities) for _ in by_identity[ident]])
    rng = np.random.Generator(np.random.PCG64([cfg.seed, salt]))
    triplets = []
    for k, ident in enumerate(identities):
        own = sorted(by_identity[ident])
        if len(own) < 2:
            continue
        for anchor_pos, x1 in enumerate(own):
            for _ in range(cfg.per_image):
                partner = int(rng.integers(len(own) - 1))
                x2 = own[partner + (partner >= anchor_pos)]
                while True:  # rejection sampling: cheap because one identity is a small share of images
                    j = int(rng.integers(len(images)))
                    if owner[j] != k:
                        break
                triplets.append((x1, x2, images[j]))
    return triplets
