"""The end-of-epoch check of P with the evaluation recognizer (never the training one) at its threshold τ.

On validation faces of identities with two or more images, with keys fixed for the whole run:
- protection: share of (x, T(x, k)) judged different people;
- key diversity: share of (T(x, k), T(x, k')) with k != k' judged different;
- Set-A (each identity its own key) and Set-B (one key for everyone): verification EER and AUC over
  every pair of virtual faces, the share of same-person pairs accepted at τ and of different-person
  pairs rejected at τ;
- the same EER on the original faces, for reference;
- realism, so that identifiability is never bought with faces that stop looking like faces: the share
  of Set-A virtual faces in which MTCNN finds a face (when given a detector), and the spread of P's
  latents around w-bar over that of G's random latents (far above 1: outside G's usual range).
A P that fools the training recognizer with a shortcut shows here: high protection and diversity, but
Set-A no better than Set-B and few same-person pairs accepted.
"""
from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import torch
from torchvision.utils import make_grid

from ivfg.data.faceframe import to_frame
from ivfg.evaluation.verification import decisions, pair_metrics, pair_scores, verification_metrics
from ivfg.keys import distinct_keys, other_keys, random_keys
from ivfg.models.recognizers import Recognizer
from ivfg.virtual import GENERATOR_SAMPLES, VirtualFaces, random_latents, spread_of


def calibrate_virtual_threshold(virtual: VirtualFaces, embeddings: torch.Tensor, identities: list[str],
                                recognizer: Recognizer, seed: int = 0, one_key_draws: int = 4) -> dict:
    """The decision thresholds of the virtual space, from virtual faces of faces x not seen in training.
    Virtual faces all come from one generator, so a τ set on real faces is the wrong rule for them.
    - τ_v: the EER threshold over every pair of T(x, k_id), each identity its own key (Set-A).
    - τ_1: the EER threshold over every pair of T(x, k), one key for everyone (Set-B). `ivfg compare` puts
      both photos through one key but decides at τ_v: different people under one key are nearer than
      under two, so τ_v accepts more of them, and τ_1 is reported beside it. The mean over
      `one_key_draws` keys, because one key's threshold moves with the key.
    Beside them, Set-B's EER and its decisions at τ_v and at τ_1, so that a run can be chosen on both."""
    names = sorted(set(identities))
    labels = np.array([names.index(i) for i in identities])
    g = torch.Generator().manual_seed(seed + 3_000_017)
    per_identity = distinct_keys(min(len(names), 2 ** min(virtual.key_bits, 62)), virtual.key_bits, g)
    keys = per_identity[torch.arange(len(names)) % len(per_identity)][labels]
    figures = pair_metrics(recognizer, _embed_virtual(virtual, embeddings, keys, recognizer), labels, float("nan"))
    if "eer_threshold" not in figures:
        raise ValueError("the faces give no same-person and different-person pairs to calibrate τ_v on")
    threshold = figures["eer_threshold"]
    one_key = [pair_scores(recognizer, _embed_virtual(virtual, embeddings, random_keys(1, virtual.key_bits, g)[0],
                                                      recognizer), labels)
               for _ in range(one_key_draws)]
    set_b = [{**verification_metrics(same, scores), **decisions(same, scores, threshold)} for same, scores in one_key]
    one_key_threshold = float(np.mean([d["eer_threshold"] for d in set_b]))
    at_one_key = [decisions(same, scores, one_key_threshold) for same, scores in one_key]

    def mean(draws: list[dict], name: str) -> float:
        return float(np.mean([d[name] for d in draws]))
    return {"threshold": threshold, "eer": figures["eer"], "auc": figures["auc"],
            "faces": len(labels), "identities": len(names), "pairs": figures["pairs"],
            "one_key_threshold": one_key_threshold, "one_key_draws": one_key_draws,
            "set_b_eer": mean(set_b, "eer"), "set_b_genuine_accepted": mean(set_b, "genuine_accepted"),
            "set_b_impostor_rejected": mean(set_b, "impostor_rejected"),
            "set_b_genuine_accepted_one_key": mean(at_one_key, "genuine_accepted"),
            "set_b_impostor_rejected_one_key": mean(at_one_key, "impostor_rejected")}


def _embed_virtual(virtual: VirtualFaces, embeddings: torch.Tensor, keys: torch.Tensor,
                   recognizer: Recognizer) -> torch.Tensor:
    return embed_images(recognizer, virtual.generate(embeddings, keys))


def embed_images(recognizer: Recognizer, images01: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """The recognizer's features of [0, 1] images shown in the canonical frame, `batch` at a time."""
    device = module_device(recognizer)
    return torch.cat([recognizer.embed(to_frame(images01[i:i + batch]).to(device)).float().cpu()
                      for i in range(0, len(images01), batch)])


def module_device(module: torch.nn.Module) -> torch.device:
    """Where a module's tensors live (the CPU for one without any, such as dlib's)."""
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def choose_validation_faces(rows: list[dict[str, str]], count: int, seed: int, per_identity: int = 4) -> list[dict]:
    """Up to `count` faces of identities with >= 2 images, at most `per_identity` each, identities in a
    seeded order (so a small check still spans many people)."""
    by_identity: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_identity[r["identity"]].append(r["image"])
    identities = sorted(i for i, images in by_identity.items() if len(images) >= 2)
    order = np.random.default_rng(seed).permutation(len(identities))
    chosen: list[dict] = []
    for k in order:
        ident = identities[k]
        take = sorted(by_identity[ident])[:per_identity]
        if len(chosen) + len(take) > count:
            take = take[: count - len(chosen)]
        if len(take) < 2:
            break
        chosen += [{"image": image, "identity": ident} for image in take]
    return chosen


class ValidationCheck:
    def __init__(self, faces: torch.Tensor, identities: list[str], embeddings: torch.Tensor, recognizer: Recognizer,
                 threshold: float, key_bits: int, seed: int = 0, grid_identities: int = 6, detector=None):
        """faces: uint8 (N, 3, H, W) in the canonical frame; embeddings: E(faces); detector: a FaceAligner
        (or None: no detection rate)."""
        self.faces, self.embeddings, self.detector, self.seed = faces, embeddings, detector, seed
        self._generator_latents: torch.Tensor | None = None
        self.recognizer, self.threshold = recognizer, threshold
        names = sorted(set(identities))
        self.labels = np.array([names.index(i) for i in identities])
        g = torch.Generator().manual_seed(seed + 2_000_003)
        per_identity = distinct_keys(min(len(names), 2 ** min(key_bits, 62)), key_bits, g)
        per_identity = per_identity[torch.arange(len(names)) % len(per_identity)]  # more people than keys
        self.key_a = per_identity[self.labels]                          # Set-A: each identity its own key
        self.key_other = other_keys(per_identity, g)[self.labels]       # another key, for diversity
        self.key_b = random_keys(1, key_bits, g)[0]  # Set-B: one key for everyone
        self.original = self._embed(to_frame(faces.float() / 255))
        firsts = [int(np.flatnonzero(self.labels == k)[0]) for k in range(len(names))]
        seconds = [int(np.flatnonzero(self.labels == k)[1]) for k in range(len(names))]
        self.grid_pairs = list(zip(firsts, seconds))[:grid_identities]

    @torch.no_grad()
    def _embed(self, images01: torch.Tensor) -> torch.Tensor:
        return embed_images(self.recognizer, images01)

    def _different(self, a: torch.Tensor, b: torch.Tensor) -> float:
        return float((self.recognizer.score(a, b) < self.threshold).float().mean())

    def _spread(self, virtual: VirtualFaces) -> float:
        if self._generator_latents is None:  # G is frozen while P trains: its latents are drawn once
            self._generator_latents = random_latents(virtual.generator, GENERATOR_SAMPLES, self.seed)
        device = next(virtual.projector.parameters()).device
        chunks = [(self.embeddings[i:i + 256], self.key_a[i:i + 256]) for i in range(0, len(self.embeddings), 256)]
        latents = torch.cat([virtual.latents(e.to(device), k.to(device)).cpu() for e, k in chunks])
        return spread_of(latents, self._generator_latents, virtual.generator.w_avg)["ratio"]

    @torch.no_grad()
    def __call__(self, virtual: VirtualFaces) -> dict:
        faces_a = virtual.generate(self.embeddings, self.key_a)
        set_a = self._embed(faces_a)
        other = self._embed(virtual.generate(self.embeddings, self.key_other))
        set_b = self._embed(virtual.generate(self.embeddings, self.key_b))
        a = pair_metrics(self.recognizer, set_a, self.labels, self.threshold)
        b = pair_metrics(self.recognizer, set_b, self.labels, self.threshold)
        original = pair_metrics(self.recognizer, self.original, self.labels, self.threshold)
        figures = {"protection": self._different(self.original, set_a),
                   "key_diversity": self._different(set_a, other),
                   "latent_spread": self._spread(virtual),
                   "faces": len(self.labels), "identities": int(self.labels.max() + 1)}
        if self.detector is not None:
            figures["detection"] = float(self.detector.finds_faces(faces_a).mean())
        for name, m in (("set_a", a), ("set_b", b), ("original", original)):
            for key in ("eer", "auc", "genuine_accepted", "impostor_rejected", "pairs", "genuine"):
                if key in m:
                    figures[f"{name}_{key}"] = m[key]
        return figures

    @torch.no_grad()
    def grid(self, virtual: VirtualFaces) -> torch.Tensor:
        """Rows: identities; columns: two originals, both under the identity's key, the first under another."""
        first = [i for i, _ in self.grid_pairs]
        second = [j for _, j in self.grid_pairs]
        x1, x2 = self.faces[first].float() / 255, self.faces[second].float() / 255
        e1, e2 = self.embeddings[first], self.embeddings[second]
        columns = [x1, x2, virtual.generate(e1, self.key_a[first]), virtual.generate(e2, self.key_a[first]),
                   virtual.generate(e1, self.key_other[first])]
        columns = [to_frame(c) for c in columns]
        tiles = torch.stack(columns, dim=1).flatten(0, 1)
        return make_grid(tiles, nrow=len(columns), padding=2, pad_value=1.0)
