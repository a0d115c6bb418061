"""Milliseconds per image for each registered backbone, batch 32 of real aligned faces, on this device.

FaceNet weights cannot be fetched offline; without them its architecture is timed with random
weights (speed does not depend on the weight values), and the row says so.

    python benchmarks/recognizer_speed.py --aligned data/aligned --batch 32 --repeats 3
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ivfg.data.files import load_faces, read_index
from ivfg.device import resolve_device
from ivfg.models.recognizers import FaceNet
from ivfg.models.catalog import RECOGNIZERS
from ivfg.models.registry import build_inception, build_recognizer
from ivfg.models.weights import WeightsNotFound


def timed(fn, batch: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        fn(batch)  # warm-up
        if batch.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            fn(batch)
        if batch.is_cuda:
            torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / (repeats * len(batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--aligned", type=Path, default=Path("data/aligned"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    rows = read_index(args.aligned / "index.csv")[: args.batch]
    batch = (load_faces(args.aligned, [r["image"] for r in rows]).float() / 255).to(device)
    print(f"batch {len(batch)} real aligned faces, device {device}, torch threads {torch.get_num_threads()}")
    for name in RECOGNIZERS:
        note = ""
        try:
            model = build_recognizer(name, device)
        except WeightsNotFound:
            model = FaceNet(None, name).freeze().to(device)
            note = "  (weights unavailable offline: random weights, timing only)"
        print(f"{name:18s} {timed(model.embed, batch, args.repeats):8.1f} ms/image{note}")
    # dlib itself, which the stages' dlib-resnet (above: dlib's landmarks and chips, its network in PyTorch)
    # reproduces up to float rounding.
    dlib_model = build_recognizer("dlib-resnet", device)
    gap = float(torch.linalg.vector_norm(dlib_model.embed(batch).cpu() - dlib_model.dlib_descriptors(batch), dim=1).max())
    print(f"{'dlib itself':18s} {timed(dlib_model.dlib_descriptors, batch, args.repeats):8.1f} ms/image  "
          f"(dlib's compute_face_descriptor, one process; max L2 gap to dlib-resnet {gap:.1e})")
    chips = dlib_model.chips(batch).to(device)
    print(f"{'dlib-net alone':18s} {timed(dlib_model.net, chips, args.repeats):8.1f} ms/image  "
          "(dlib-resnet's network on chips cut beforehand)")
    fast = build_recognizer("sface", device, fast=True)
    print(f"{'sface fast':18s} {timed(fast.embed, batch, args.repeats):8.1f} ms/image  "
          "(batch norms folded: train's R and E; equal up to float rounding)")
    inception = build_inception(device)
    print(f"{'fid-inception':18s} {timed(inception, batch, args.repeats):8.1f} ms/image  (192-d + 2048-d)")


if __name__ == "__main__":
    main()
