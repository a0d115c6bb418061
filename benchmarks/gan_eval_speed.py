"""Seconds for one of pretrain_gan's periodic checks (FID against real faces + identity diversity with
the evaluation recognizer), on the trained generator, with the figures it gives.

    python benchmarks/gan_eval_speed.py --generator models/generator.pt
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ivfg.config import load_params
from ivfg.device import resolve_device
from ivfg.evaluation.baseline import eer_threshold
from ivfg.gan.data import load_training_images
from ivfg.gan.export import load_generator
from ivfg.gan.metrics import GanEvaluator
from ivfg.models.registry import build_inception, build_recognizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--generator", type=Path, default=Path("models/generator.pt"))
    parser.add_argument("--aligned", type=Path, default=Path("data/aligned"))
    parser.add_argument("--split", type=Path, default=Path("data/split.csv"))
    parser.add_argument("--thresholds", type=Path, default=Path("models/thresholds"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    params = load_params(args.params)
    cfg = params.pretrain_gan
    device = resolve_device(args.device)
    generator = load_generator(args.generator, device)
    images = load_training_images(args.aligned, args.split, generator.resolution)
    threshold = eer_threshold(args.thresholds, params.models.eval_recognizer)
    inception = build_inception(device)
    level = generator.resolution.bit_length() - 3  # 4 * 2**level == resolution
    print(f"generator {generator.resolution}px, {cfg.fid_samples} FID samples, {cfg.diversity_pairs} pairs, "
          f"device {device}, torch threads {torch.get_num_threads()}")
    recognizer = build_recognizer(params.models.eval_recognizer, device)
    evaluator = GanEvaluator(images, inception, recognizer, threshold, cfg.fid_samples, cfg.diversity_pairs,
                             device, cfg.seed, fid_dims=tuple(cfg.fid_dims))
    evaluator.real_reference(generator.resolution)  # once per resolution in training: not timed
    start = time.perf_counter()
    figures = evaluator(generator, level, 1.0)
    seconds = time.perf_counter() - start
    print(f"{seconds:6.1f} s per check  "
          f"(fid192 {figures.get('fid192', float('nan')):.4f}, identity diversity {figures['identity_diversity']:.4f})")


if __name__ == "__main__":
    main()
