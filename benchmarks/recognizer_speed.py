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

from ivfg.data.align import read_index
from ivfg.device import resolve_device
from ivfg.evaluation.baseline import load_batch
from ivfg.models.dlib_net import DlibFaceNet
from ivfg.models.recognizers import FaceNet
from ivfg.models.registry import RECOGNIZERS, build_inception, build_recognizer, weights_path
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
    batch = load_batch([args.aligned / r["image"] for r in rows]).to(device)
    print(f"batch {len(batch)} real aligned faces, device {device}, torch threads {torch.get_num_threads()}")
    for name in RECOGNIZERS:
        note = ""
        try:
            model = build_recognizer(name, device)
        except WeightsNotFound:
            model = FaceNet(None, name).freeze().to(device)
            note = "  (weights unavailable offline: random weights, timing only)"
        print(f"{name:18s} {timed(model.embed, batch, args.repeats):8.1f} ms/image{note}")
    # The forms the stages use besides the exact ones above.
    pooled = build_recognizer("dlib-resnet", device, workers=2)
    print(f"{'dlib-resnet x2':18s} {timed(pooled.embed, batch, args.repeats):8.1f} ms/image  "
          "(2 worker processes: baseline, pretrain_gan and evaluate; the same descriptors)")
    pooled.close()
    # dlib's network in PyTorch (ivfg/models/dlib_net.py) on the chips dlib cuts: not yet what the stages run.
    single = build_recognizer("dlib-resnet", device)
    chips = single.chips(batch.cpu()).to(device)
    net = DlibFaceNet.from_dat(weights_path("dlib-resnet")).to(device)
    with torch.no_grad():
        gap = float(torch.linalg.vector_norm(net(chips).cpu() - single.embed(batch.cpu()), dim=1).max())
    print(f"{'dlib-net torch':18s} {timed(net, chips, args.repeats):8.1f} ms/image  "
          f"(dlib's network in PyTorch, chips cut by dlib beforehand; max L2 gap to dlib {gap:.1e})")
    fast = build_recognizer("sface", device, fast=True)
    print(f"{'sface fast':18s} {timed(fast.embed, batch, args.repeats):8.1f} ms/image  "
          "(batch norms folded: train's R and E; equal up to float rounding)")
    inception = build_inception(device)
    print(f"{'fid-inception':18s} {timed(inception, batch, args.repeats):8.1f} ms/image  (192-d + 2048-d)")


if __name__ == "__main__":
    main()
