"""Identity-disjoint train/val/test split, seeded and machine-independent."""
from __future__ import annotations

from collections import Counter

import numpy as np

from dataclasses import dataclass
from pathlib import Path

from ivfg.config import SplitConfig
from ivfg.data.files import SPLITS, read_index, write_csv



def split_identities(image_counts: dict[str, int], cfg: SplitConfig) -> dict[str, str]:
    """Assign each identity to a split, 8:1:1 by identity.

    Identities with one image and those with several are shuffled and cut separately, so every split
    gets its share of the identities that can form genuine pairs and triplets. numpy's PCG64 stream
    over sorted names makes the result identical on every machine for a given seed.
    """
    rng = np.random.Generator(np.random.PCG64(cfg.seed))
    fractions = np.array([cfg.train, cfg.val, cfg.test])
    assignment: dict[str, str] = {}
    for group in (sorted(n for n, c in image_counts.items() if c >= 2),
                  sorted(n for n, c in image_counts.items() if c < 2)):
        order = [group[i] for i in rng.permutation(len(group))]
        bounds = np.round(np.cumsum(fractions) * len(order)).astype(int)
        start = 0
        for name, stop in zip(SPLITS, bounds):
            for identity in order[start:stop]:
                assignment[identity] = name
            start = stop
    return assignment


def split_index(rows: list[dict[str, str]], cfg: SplitConfig) -> tuple[list[dict[str, str]], dict]:
    """Add a `split` column to aligned-index rows; return them and the figures."""
    counts = Counter(r["identity"] for r in rows)
    assignment = split_identities(counts, cfg)
    out = [{"image": r["image"], "identity": r["identity"], "split": assignment[r["identity"]]} for r in rows]
    figures = {}
    for name in SPLITS:
        ids = [i for i, s in assignment.items() if s == name]
        figures[name] = {
            "identities": len(ids),
            "images": sum(counts[i] for i in ids),
            "identities_with_2plus": sum(counts[i] >= 2 for i in ids),
        }
    return out, figures


@dataclass(frozen=True)
class SplitPaths:
    index: Path = Path("data/aligned/index.csv")
    out: Path = Path("data/split.csv")


def write_split(cfg: SplitConfig, paths: SplitPaths) -> dict:
    """The split stage: the aligned index in, `data/split.csv` out; returns the figures."""
    rows, figures = split_index(read_index(paths.index), cfg)
    write_csv(paths.out, ["image", "identity", "split"], rows)
    return figures
