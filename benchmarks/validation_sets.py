"""Set-A and Set-B on every validation face, for projectors of past experiments: the figures a preset is
chosen on (docs/design.md, "Choosing on Set-A and Set-B together").

For each git revision (an experiment's commit, `dvc exp show -A`), its `models/projector.pt` is read from
the DVC cache and T(x, k) built on the workspace's generator (the experiments compared must share it).
Over all validation faces, with the evaluation recognizer: Set-A (each identity its own key) gives τ_v and
its EER; Set-B (one key for everyone) its EER and its decisions at τ_v, once per `--key-draws` key; and
key diversity as evaluate defines it (each face under a random key and a second, different random key,
judged different people at the real-face threshold τ), which the Set-A/Set-B rule alone would not see.

    python benchmarks/validation_sets.py REV [REV ...] [--key-draws 2]

`--split train --faces 1590` measures the same on training people instead (whole people with two or
more photos, in a seeded order, at most 6 photos each, up to that many faces): whether P separates the
people it was trained on better than unseen ones.
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import dvc.api
import numpy as np
import torch

from ivfg.config import load_params
from ivfg.data.files import eer_threshold, read_split
from ivfg.fileio import sha256_file
from ivfg.gan.export import load_generator
from ivfg.keys import other_keys, random_keys
from ivfg.models.registry import build_recognizer
from ivfg.projector.data import frozen_embeddings
from ivfg.projector.validation import calibrate_virtual_threshold, choose_validation_faces, embed_images
from ivfg.virtual import VirtualFaces, projector_from_state, t_settings


def projector_at(rev: str):
    with dvc.api.open("models/projector.pt", rev=None if rev == "workspace" else rev, mode="rb") as handle:
        state = torch.load(io.BytesIO(handle.read()), map_location="cpu", weights_only=True)
    return projector_from_state(state["projector"], state["state_dict"]), state


def virtual_faces(state: dict, projector, generator, models, images: list[str], made: dict) -> tuple:
    """T(x, k) as the projector file says it runs (its E, reading the mirror image or not, and its ψ:
    `t_settings`), and E(x) of `images`; each form of E made and run once (`made` keeps them)."""
    how = t_settings(state)
    mirror = how["encoder_mirror"]
    if mirror not in made:
        encoder = build_recognizer(models.encoder, "cpu", models.weights, fast=True, mirror=mirror)
        made[mirror] = encoder, frozen_embeddings(encoder, Path("data/aligned"), images, 32, "cpu",
                                                  Path("runs/train/embeddings"))
    encoder, embeddings = made[mirror]
    return VirtualFaces(encoder, projector, generator, how["truncation_psi"]).eval(), embeddings


def key_diversity(virtual: VirtualFaces, embeddings: torch.Tensor, evaluator, tau: float, seed: int) -> float:
    """The share of faces x whose T(x, k1) and T(x, k2), k1 != k2 both random per face, are judged different at τ."""
    g = torch.Generator().manual_seed(seed + 5_000_011)
    k1 = random_keys(len(embeddings), virtual.key_bits, g)
    k2 = other_keys(k1, g)
    a, b = (embed_images(evaluator, virtual.generate(embeddings, k)) for k in (k1, k2))
    return float((evaluator.score(a, b) < tau).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revisions", nargs="+", help="git revisions whose models/projector.pt to measure ('workspace': the one there now)")
    parser.add_argument("--key-draws", type=int, default=2, help="independent key draws (seeds) per projector")
    parser.add_argument("--split", choices=("val", "train"), default="val", help="whose faces: unseen or training people")
    parser.add_argument("--faces", type=int, default=1590, help="with --split train: about this many faces")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    models = load_params(args.params).models
    evaluator = build_recognizer(models.eval_recognizer, "cpu", models.weights)
    generator = load_generator(Path("models/generator.pt"), "cpu")
    rows = read_split(Path("data/split.csv"))[args.split]
    faces = rows if args.split == "val" else choose_validation_faces(rows, args.faces, seed=0, per_identity=6)
    encoders: dict = {}
    images, identities = [r["image"] for r in faces], [r["identity"] for r in faces]
    generator_sha256 = sha256_file(Path("models/generator.pt"))
    tau = eer_threshold(Path("models/thresholds"), models.eval_recognizer)
    for rev in args.revisions:
        projector, state = projector_at(rev)
        if state.get("generator_sha256") not in (None, generator_sha256):
            print(json.dumps({"revision": rev, "skipped": "trained on another generator than the workspace's"}))
            continue
        virtual, embeddings = virtual_faces(state, projector, generator, models, images, encoders)
        # One Set-B key per seed: the draws are the seeds.
        draws = [calibrate_virtual_threshold(virtual, embeddings, identities, evaluator, seed, one_key_draws=1)
                 for seed in range(args.key_draws)]
        for seed, draw in enumerate(draws):
            draw["key_diversity"] = key_diversity(virtual, embeddings, evaluator, tau, seed)
        mean = {k: float(np.mean([d[k] for d in draws])) for k in
                ("eer", "set_b_eer", "set_b_genuine_accepted", "set_b_impostor_rejected", "key_diversity")}
        print(json.dumps({"revision": rev, "split": args.split, "faces": draws[0]["faces"], "key_draws": len(draws),
                          "set_a_eer": mean["eer"], **{k: v for k, v in mean.items() if k != "eer"},
                          "per_draw": {"set_a_eer": [d["eer"] for d in draws],
                                       "set_b_eer": [d["set_b_eer"] for d in draws],
                                       "key_diversity": [d["key_diversity"] for d in draws]}}), flush=True)


if __name__ == "__main__":
    main()
