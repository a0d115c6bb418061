"""Train P away from the DVC workspace, from a compact bundle of the `train` stage's inputs: for runs the
CPU cannot afford (paper-length training, the L_reg reduction or key length compared at equal steps) on a
GPU machine that has neither the aligned faces nor DVC. Prints the validation figures per epoch.

    python scripts/gpu_train_check.py bundle --out bundle.pt     # in the workspace, after `dvc repro train`
                                                                 # has cached the faces' embeddings
    python scripts/gpu_train_check.py run bundle.pt -S reg_reduction=sum -S epochs=20 --validate-every 5

The bundle holds E(x) of the training faces (from the stage's cache in runs/train/embeddings), the
triplets as indices, the validation faces (PNG bytes) with their embeddings and identities, tau, and
the generator. Keys are drawn inside the run, as in the stage; none is written anywhere.
"""
from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from ivfg.config import TrainConfig, load_params
from ivfg.data.files import eer_threshold, load_faces, read_split, read_triplets
from ivfg.device import resolve_device
from ivfg.gan.export import generator_from_state
from ivfg.models.registry import build_recognizer
from ivfg.projector.data import discriminant_directions, frozen_embeddings, identity_indices, index_triplets
from ivfg.projector.pipeline import TrainPaths, untrained_virtual_faces
from ivfg.projector.training import ProjectorTrainer, training_settings
from ivfg.projector.validation import ValidationCheck, choose_validation_faces


def bundle(args) -> None:
    params, paths = load_params(args.params), TrainPaths()
    cfg, models = params.train, params.models
    encoder = build_recognizer(models.encoder)
    images, table = index_triplets(read_triplets(paths.triplets))
    cache = paths.run_dir / "embeddings"
    val_rows = choose_validation_faces(read_split(paths.split)["val"], cfg.val_images, cfg.seed)
    val_images = [r["image"] for r in val_rows]
    faces = load_faces(paths.aligned, val_images)
    encoded = []
    for face in faces.permute(0, 2, 3, 1).numpy():
        buffer = io.BytesIO()
        Image.fromarray(face).save(buffer, format="png")
        encoded.append(buffer.getvalue())
    torch.save({"train": cfg.model_dump(mode="json"), "models": models.model_dump(mode="json"),
                "embeddings": frozen_embeddings(encoder, paths.aligned, images, 32, torch.device("cpu"), cache),
                "triplets": table, "identities": identity_indices(images),
                "val_faces": encoded, "val_identities": [r["identity"] for r in val_rows],
                "val_embeddings": frozen_embeddings(encoder, paths.aligned, val_images, 32, torch.device("cpu"),
                                                    cache),
                "threshold": eer_threshold(paths.thresholds, models.eval_recognizer),
                "generator": torch.load(paths.generator, map_location="cpu", weights_only=True)}, args.out)
    print(f"{args.out}: {len(images)} training faces, {len(table)} triplets, {len(val_rows)} validation faces")


def run(args) -> None:
    data = torch.load(args.bundle, map_location="cpu", weights_only=False)
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    cfg = TrainConfig(**{**data["train"], **overrides, "device": args.device})
    device = resolve_device(cfg.device)
    generator = generator_from_state(data["generator"], device)
    encoder = build_recognizer(data["models"]["encoder"], device)
    recognizer = build_recognizer(data["models"]["train_recognizer"], device, fast=True)
    evaluator = build_recognizer(data["models"]["eval_recognizer"], device)
    faces = torch.from_numpy(np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))
                                       for b in data["val_faces"]])).permute(0, 3, 1, 2).contiguous()
    check = ValidationCheck(faces, data["val_identities"], data["val_embeddings"], evaluator, data["threshold"],
                            cfg.key_bits, cfg.seed, cfg.grid_identities)
    projection = None if cfg.lda_dims is None else \
        discriminant_directions(data["embeddings"], data["identities"], cfg.lda_dims)
    virtual = untrained_virtual_faces(cfg, encoder, generator, device, projection)
    start = time.perf_counter()

    def end_of_epoch(epoch: int) -> dict:
        if epoch % args.validate_every or epoch == cfg.epochs:  # the last epoch is checked after training
            return {}
        virtual.eval()
        figures = {k: round(v, 4) if isinstance(v, float) else v for k, v in check(virtual).items()}
        virtual.projector.train()
        print(json.dumps({"epoch": epoch, "minutes": round((time.perf_counter() - start) / 60, 2), **figures}),
              flush=True)
        return figures

    trainer = ProjectorTrainer(cfg, virtual, recognizer, data["embeddings"], data["embeddings"], data["triplets"],
                               Path(args.run_dir), device, training_settings(cfg), end_of_epoch=end_of_epoch,
                               identities=data.get("identities"))
    trainer.resume()  # a finished run in --run-dir is only checked again
    trainer.train()
    virtual.eval()
    final = {k: round(v, 4) if isinstance(v, float) else v for k, v in check(virtual).items()}
    print(json.dumps({"epoch": trainer.epoch, **final}), flush=True)
    print(json.dumps({"settings": overrides, "steps": trainer.steps, "train_seconds": round(trainer.session_seconds, 1),
                      "final_terms": {k: round(v, 4) for k, v in trainer.curve[-1].items()} if trainer.curve else {}}))
    if args.grid:
        grid = check.grid(virtual.eval()).permute(1, 2, 0).mul(255).round().byte().numpy()
        Image.fromarray(grid).save(args.grid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("bundle", help="pack the train stage's inputs (in the DVC workspace)")
    make.add_argument("--params", default="params.yaml")
    make.add_argument("--out", type=Path, required=True)
    train = sub.add_parser("run", help="train P from a bundle and print validation figures")
    train.add_argument("bundle", type=Path)
    train.add_argument("-S", "--set", action="append", default=[], help="train.<key>=<value> override (no prefix)")
    train.add_argument("--validate-every", type=int, default=1)
    train.add_argument("--device", default="auto")
    train.add_argument("--run-dir", default="/tmp/ivfg-train-check")
    train.add_argument("--grid", type=Path, help="write the final sample grid here")
    args = parser.parse_args()
    bundle(args) if args.command == "bundle" else run(args)


if __name__ == "__main__":
    main()
