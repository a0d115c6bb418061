"""Alignment throughput on N real LFW images, all in one run on this machine (prints images/s):

- detection alone through the pipeline's FaceAligner, batched (--batch-size) and one image at a time:
  what batching itself buys;
- the whole align stage (decode, detect, warp, write PNG) against a plain per-image
  facenet_pytorch.MTCNN loop (decode, detect, MTCNN's own crop; it writes nothing).

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


def detection_only(paths: list[Path], cfg: AlignConfig, batch: int) -> float:
    from ivfg.data.align import FaceAligner, load_rgb

    aligner = FaceAligner(cfg)
    images = [load_rgb(p)[0] for p in paths]
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        aligner.detect(images[i:i + batch])
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
    batched, single = detection_only(paths, cfg, cfg.batch_size), detection_only(paths, cfg, 1)
    ours = pipeline(paths, args.images, cfg)
    plain = plain_loop(paths, cfg, device)
    print(f"detection only, batch {cfg.batch_size:<3}                      {batched:7.1f} images/s")
    print(f"detection only, one image at a time            {single:7.1f} images/s   batching: {batched / single:.2f}x")
    print(f"align stage (batch {cfg.batch_size}, workers {cfg.workers}, writes PNGs)  {ours:7.1f} images/s")
    print(f"plain per-image MTCNN loop (writes nothing)    {plain:7.1f} images/s   ratio: {ours / plain:.2f}x")


if __name__ == "__main__":
    main()
