"""Key search: can someone who holds the trained model link a photo to a virtual face by trying keys?

The attacker has the model (E, P, G), a photo x1 of a person and a virtual face v = T(x2, k) of
another photo of that person under an unknown key k. For each candidate key k' it renders T(x1, k') and
compares it with v using the model's own encoder E (the recognizer it holds; fast, and the one P was
shaped against), keeping the best-scoring key. Where the key space is no larger than the budget the
search is exhaustive (it includes k); otherwise it tries `budget` uniform random keys.
Success is counted two ways: the best key is k itself (key recovery), and the evaluation recognizer
accepts (T(x1, k_best), v) at τ (the attacker has linked the photo to the virtual face).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ivfg.data.faceframe import to_frame
from ivfg.keys import random_keys
from ivfg.models.recognizers import Recognizer
from ivfg.virtual import VirtualFaces


@dataclass(frozen=True)
class SearchResult:
    best_keys: torch.Tensor     # (targets, bits)
    best_faces: torch.Tensor    # (targets, 3, R, R) in [0, 1]: T(x1, best key)
    true_key_rank: np.ndarray   # rank of the true key among the candidates (1 = best), -1 where absent
    exhaustive: bool
    candidates: int


def candidate_keys(bits: int, budget: int, generator: torch.Generator) -> tuple[torch.Tensor, bool]:
    """Every key when there are at most `budget`, else `budget` uniform random keys."""
    if bits <= 20 and 2 ** bits <= budget:
        codes = torch.arange(2 ** bits)
        return ((codes[:, None] >> torch.arange(bits - 1, -1, -1)) & 1).float(), True
    return random_keys(budget, bits, generator), False


@torch.no_grad()
def search_keys(virtual: VirtualFaces, attacker: Recognizer, probe_encodings: torch.Tensor,
                targets01: torch.Tensor, true_keys: torch.Tensor, budget: int, generator: torch.Generator,
                batch: int = 64, autocast: Callable = contextlib.nullcontext) -> SearchResult:
    """probe_encodings: E(x1) per target; targets01: the virtual faces v in [0, 1]; true_keys: their k.
    `autocast` applies to the attacker's recognizer (an attacker uses what runs fastest)."""
    candidates, exhaustive = candidate_keys(virtual.key_bits, budget, generator)
    device = next(virtual.projector.parameters()).device

    def embed(images01: torch.Tensor) -> torch.Tensor:
        with autocast():
            return torch.cat([attacker.embed(to_frame(images01[i:i + batch]).to(device)).float()
                              for i in range(0, len(images01), batch)])

    target_emb = embed(targets01)
    best_keys, best_faces, ranks = [], [], []
    for encoding, target, key in zip(probe_encodings, target_emb, true_keys):
        faces = virtual.generate(encoding[None].expand(len(candidates), -1), candidates, batch)
        emb = embed(faces)
        scores = attacker.score(emb, target[None]).cpu()
        order = torch.argsort(scores, descending=True)
        best_keys.append(candidates[order[0]])
        best_faces.append(faces[order[0]])
        match = (candidates[order] == key).all(dim=1).nonzero()
        ranks.append(int(match[0]) + 1 if len(match) else -1)
    return SearchResult(torch.stack(best_keys), torch.stack(best_faces), np.array(ranks), exhaustive, len(candidates))
