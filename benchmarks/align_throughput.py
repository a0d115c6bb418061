"""Alignment throughput: this pipeline's batched aligner vs a plain per-image facenet_pytorch.MTCNN loop.

Both detect with the same MTCNN settings on the same N real LFW images, decoded from disk each time,
and both produce aligned 128x128 crops (the plain loop with MTCNN's own crop). Prints images/s.

    python benchmarks/align_throughput.py --images data/raw/lfw/images -n 512
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from ivfg.config import AlignConfig
from ivfg.data.align import align_directory, list_images
from ivfg.device import resolve_device


def plain_loop(paths: list[Path], cfg: AlignConfig, device: torch.device) -> float:
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(image_size=cfg.image_size, min_face_size=cfg.min_face_size, thresholds=list(cfg.thresholds),
                  device=device)
    start = time.perf_counter()
    for path in paths:
        with Image.open(path) as img:
            mtcnn(img.convert("RGB"))
    return len(paths) / (time.perf_counter() - start)


def pipeline(paths: list[Path], root: Path, cfg: AlignConfig) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "images"
        for p in paths:  # symlinks: the aligner walks a folder tree
            target = subset / p.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(p.resolve())
        start = time.perf_counter()
        align_directory(subset, Path(tmp) / "out", cfg)
        return len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=Path("data/raw/lfw/images"))
    parser.add_argument("-n", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    paths = list_images(args.images)
    if not paths:
        raise SystemExit(f"no images under {args.images}: run `dvc repro download` first")
    paths = paths[:: max(1, len(paths) // args.n)][: args.n]
    cfg = AlignConfig(batch_size=args.batch_size, workers=args.workers, device=args.device)
    device = resolve_device(args.device)
    print(f"{len(paths)} LFW images, device {device}, torch threads {torch.get_num_threads()}")
    ours = pipeline(paths, args.images, cfg)
    plain = plain_loop(paths, cfg, device)
    print(f"pipeline aligner (batch {cfg.batch_size}, workers {cfg.workers}): {ours:7.1f} images/s")
    print(f"plain per-image MTCNN loop:                {plain:7.1f} images/s")
    print(f"ratio: {ours / plain:.2f}x")


if __name__ == "__main__":
    main()
