"""The generator's training set: aligned training-split faces, held in memory as uint8."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ivfg.data.align import read_index
from ivfg.errors import InputError


def load_training_images(aligned_dir: Path, split_csv: Path, resolution: int, split: str = "train") -> torch.Tensor:
    rows = [r for r in read_index(split_csv) if r["split"] == split]
    if not rows:
        raise InputError(f"{split_csv} has no '{split}' images: run the split stage first")
    out = np.empty((len(rows), resolution, resolution, 3), dtype=np.uint8)
    for i, row in enumerate(tqdm(rows, desc=f"load {split} faces", unit="img")):
        with Image.open(aligned_dir / row["image"]) as img:
            img = img.convert("RGB")
            if img.size != (resolution, resolution):
                img = img.resize((resolution, resolution), Image.Resampling.BOX if img.size[0] > resolution
                                 else Image.Resampling.BICUBIC)
            out[i] = np.asarray(img)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
