"""The generator's training set: aligned training-split faces, held in memory as uint8."""
from __future__ import annotations

from pathlib import Path

import torch

from ivfg.data.files import load_faces, read_split
from ivfg.errors import InputError


def load_training_images(aligned_dir: Path, split_csv: Path, resolution: int, split: str = "train") -> torch.Tensor:
    images = [row["image"] for row in read_split(split_csv)[split]]
    if not images:
        raise InputError(f"{split_csv} has no '{split}' images: run the split stage first")
    return load_faces(aligned_dir, images, resolution, progress=f"load {split} faces")
