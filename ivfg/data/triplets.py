"""Training triplets (x1, x2, y): x1 and x2 show the same identity, y another."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from dataclasses import dataclass
from pathlib import Path

from ivfg.config import TripletsConfig
from ivfg.data.files import SPLITS, TRIPLET_COLUMNS, read_split, write_csv
from ivfg.errors import InputError
from ivfg.fileio import atomic_dir


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


@dataclass(frozen=True)
class TripletsPaths:
    split: Path = Path("data/split.csv")
    out: Path = Path("data/triplets")


def write_triplets(cfg: TripletsConfig, paths: TripletsPaths) -> dict:
    """The triplets stage: `data/split.csv` in, one `<split>.csv` of (x1, x2, y) per split out; returns
    the figures. Each split draws from its own stream (salt), so adding a split changes no other."""
    splits = read_split(paths.split)
    figures = {}
    with atomic_dir(paths.out) as tmp:
        for salt, name in enumerate(SPLITS):
            triplets = make_triplets(splits[name], cfg, salt=salt)
            write_csv(tmp / f"{name}.csv", TRIPLET_COLUMNS, triplets)
            figures[name] = {"triplets": len(triplets), "identities": len({Path(t[0]).parent.name for t in triplets})}
    return figures
