"""Where identities sit in the training recognizer's own space: does G or P limit Set-B?

On validation faces, one face per person (every pair is two different people), with the recognizer P
is trained against (`models.train_recognizer`):
- real faces at full size and shrunk to G's resolution: EER over all validation pairs, and the EER
  threshold at full size (the recognizer's own decision rule);
- for real faces, G's random samples (untruncated) and P's virtual faces under one key: the median
  and 90th percentile of the cosine between two different people, and the share of those pairs the
  recognizer calls different people at its threshold.
If G's samples are far apart but P's virtual faces under one key are not, P does not use G's range.
The same in W, without G or a recognizer: the mean squared distance per dimension between the latents
of two different people under one key and of two photos of one person (every validation face), beside
that between two of G's random latents.
Run in a workspace whose models/generator.pt the projectors were trained on:

    python benchmarks/identity_range.py REV [REV ...] [--people 400] [--key-draws 2]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from validation_sets import projector_at, virtual_faces

from ivfg.config import load_params
from ivfg.data.files import load_faces, read_split
from ivfg.evaluation.verification import verification_metrics
from ivfg.gan.export import load_generator
from ivfg.gan.metrics import to_unit
from ivfg.keys import random_keys
from ivfg.models.recognizers import resize
from ivfg.models.registry import build_recognizer
from ivfg.projector.validation import embed_images
from ivfg.virtual import random_latents


def pair_scores(recognizer, emb: torch.Tensor) -> np.ndarray:
    return recognizer.score(emb[:, None], emb[None, :]).numpy()[np.triu_indices(len(emb), 1)]


def apart(recognizer, emb: torch.Tensor, threshold: float) -> dict:
    """Cosines between different people and the share called different at the threshold."""
    s = pair_scores(recognizer, emb)
    return {"median_cos": round(float(np.median(s)), 3), "p90_cos": round(float(np.quantile(s, 0.9)), 3),
            "different": round(float((s < threshold).mean()), 3), "pairs": len(s)}


def latent_distances(latents: torch.Tensor, labels: np.ndarray) -> dict:
    """Mean squared distance per dimension between latents of one person and of different people."""
    d = (torch.cdist(latents.double(), latents.double()).pow(2) / latents.shape[1]).numpy()
    upper = np.triu_indices(len(labels), 1)
    same = np.equal.outer(labels, labels)[upper]
    d = d[upper]
    return {"same_person_msd": round(float(d[same].mean()), 4) if same.any() else None,
            "different_people_msd": round(float(d[~same].mean()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revisions", nargs="*", help="git revisions whose models/projector.pt to measure ('workspace': the one there now)")
    parser.add_argument("--people", type=int, default=400, help="validation people, one face each")
    parser.add_argument("--key-draws", type=int, default=2, help="one key per draw for everyone")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    models = load_params(args.params).models
    recognizer = build_recognizer(models.train_recognizer, "cpu", models.weights)
    generator = load_generator(Path("models/generator.pt"), "cpu")
    val = read_split(Path("data/split.csv"))["val"]
    labels = np.array([r["identity"] for r in val])
    same = np.equal.outer(labels, labels)[np.triu_indices(len(labels), 1)]
    faces = load_faces(Path("data/aligned"), [r["image"] for r in val]).float() / 255
    emb_full = embed_images(recognizer, faces)
    full = verification_metrics(same, pair_scores(recognizer, emb_full))
    low = verification_metrics(same, pair_scores(recognizer, embed_images(recognizer, resize(faces, generator.resolution))))
    threshold = float(full["eer_threshold"])
    print(json.dumps({"recognizer": models.train_recognizer, "faces": len(val), "threshold": round(threshold, 4),
                      "eer_full": round(float(full["eer"]), 4),
                      f"eer_{generator.resolution}px": round(float(low["eer"]), 4)}), flush=True)

    first_face: dict[str, int] = {}
    for i, row in enumerate(val):
        first_face.setdefault(row["identity"], i)
    first = list(first_face.values())[: args.people]
    print(json.dumps({"set": "real", **apart(recognizer, emb_full[first], threshold)}), flush=True)
    with torch.no_grad():
        z = torch.randn(len(first), generator.style_dim, generator=torch.Generator().manual_seed(1))
        samples = torch.cat([generator(z[i:i + 64]) for i in range(0, len(z), 64)])
    print(json.dumps({"set": "generator", **apart(recognizer, embed_images(recognizer, to_unit(samples)), threshold),
                      "latent_msd": latent_distances(random_latents(generator, len(first), 1),
                                                     np.arange(len(first)))["different_people_msd"]}), flush=True)
    encoders, images = {}, [r["image"] for r in val]
    for rev in args.revisions:
        projector, state = projector_at(rev)
        virtual, all_embeddings = virtual_faces(state, projector, generator, models, images, encoders)
        embeddings = all_embeddings[first]  # one face per person, for the virtual faces R reads
        keys = random_keys(args.key_draws, virtual.key_bits, torch.Generator().manual_seed(5))
        for draw, key in enumerate(keys):
            with torch.no_grad():
                latents = virtual.latents(all_embeddings, key)
            print(json.dumps({"set": "one key", "revision": rev, "draw": draw,
                              **apart(recognizer, embed_images(recognizer, virtual.generate(embeddings, key)),
                                      threshold), "latent_msd": latent_distances(latents, labels)}), flush=True)


if __name__ == "__main__":
    main()
