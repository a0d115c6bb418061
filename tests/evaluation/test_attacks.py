"""Key search on a tiny real T(x, k): with the target made from the attacker's own photo, an exhaustive
search must find the key; a long key is searched at random within the budget."""
from __future__ import annotations

import torch

from ivfg.evaluation.attacks import candidate_keys, search_keys
from ivfg.gan.networks import Generator
from ivfg.models.registry import build_recognizer
from ivfg.projector.network import Projector
from ivfg.virtual import VirtualFaces


def tiny_virtual(key_bits: int) -> VirtualFaces:
    torch.manual_seed(0)
    return VirtualFaces(build_recognizer("sface"), Projector(128, key_bits, 32, 1, 64).eval(),
                        Generator(16, 32, 2, 0.01, 128, 16).eval()).eval()


def test_candidates_are_every_key_when_they_fit_the_budget_else_random():
    keys, exhaustive = candidate_keys(4, 16, torch.Generator().manual_seed(0))
    assert exhaustive and len({tuple(k.tolist()) for k in keys}) == 16
    keys, exhaustive = candidate_keys(128, 16, torch.Generator().manual_seed(0))
    assert not exhaustive and keys.shape == (16, 128)


def test_exhaustive_search_recovers_the_key_of_a_virtual_face_of_the_same_photo():
    virtual = tiny_virtual(4)
    encodings = torch.randn(3, 128, generator=torch.Generator().manual_seed(1))
    true_keys = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 1]], dtype=torch.float32)
    targets = virtual.generate(encodings, true_keys)
    attacker = build_recognizer("sface")
    found = search_keys(virtual, attacker, encodings, targets, true_keys, 16, torch.Generator().manual_seed(2))
    assert found.exhaustive and found.candidates == 16
    assert torch.equal(found.best_keys, true_keys) and list(found.true_key_rank) == [1, 1, 1]


def test_a_random_search_of_a_long_key_reports_no_rank_for_a_key_it_never_tried():
    virtual = tiny_virtual(128)
    encodings = torch.randn(1, 128, generator=torch.Generator().manual_seed(1))
    key = torch.randint(0, 2, (1, 128), generator=torch.Generator().manual_seed(3)).float()
    found = search_keys(virtual, build_recognizer("sface"), encodings, virtual.generate(encodings, key), key, 8,
                        torch.Generator().manual_seed(2))
    assert not found.exhaustive and found.candidates == 8 and list(found.true_key_rank) == [-1]
