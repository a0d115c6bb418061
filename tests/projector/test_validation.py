"""The end-of-epoch check on synthetic embeddings whose answers are known."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ivfg.models.recognizers import Recognizer
from ivfg.projector.validation import (ValidationCheck, calibrate_virtual_threshold, choose_validation_faces,
                                      pair_metrics)


class Lookup(Recognizer):
    """A 'recognizer' whose embedding of a face is written in its first pixel's channels (cosine score)."""
    name = "lookup"

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, :, 0, 0].float()


def test_pair_metrics_of_separable_and_of_identical_sets():
    labels = np.array([0, 0, 1, 1, 2, 2])
    apart = torch.tensor([[1.0, 0, 0], [1, 0.1, 0], [0, 1, 0], [0, 1, 0.1], [0, 0, 1], [0.1, 0, 1]])
    m = pair_metrics(Lookup(), apart, labels, threshold=0.5)
    assert m["eer"] == pytest.approx(0.0) and m["auc"] == pytest.approx(1.0)
    assert m["genuine_accepted"] == 1.0 and m["impostor_rejected"] == 1.0
    assert m["pairs"] == 15 and m["genuine"] == 3
    collapsed = torch.ones(6, 3)  # one face for everyone: nothing can be told apart
    m = pair_metrics(Lookup(), collapsed, labels, threshold=0.5)
    assert m["eer"] == pytest.approx(0.5) and m["auc"] == pytest.approx(0.5)
    assert m["genuine_accepted"] == 1.0 and m["impostor_rejected"] == 0.0


def test_validation_faces_span_identities_with_two_or_more_images():
    rows = [{"image": f"{i}/{j}", "identity": str(i)} for i in range(10) for j in range(i % 4 + 1)]
    chosen = choose_validation_faces(rows, 12, seed=0, per_identity=2)
    identities = [r["identity"] for r in chosen]
    assert len(chosen) == 12
    assert all(identities.count(i) == 2 for i in set(identities))
    assert all(int(i) % 4 >= 1 for i in identities)  # no single-image identity
    assert chosen == choose_validation_faces(rows, 12, seed=0, per_identity=2)
    assert chosen != choose_validation_faces(rows, 12, seed=1, per_identity=2)


class UnitMapping(torch.nn.Module):
    """A 'generator' whose latents are its z: G's random latents have mean square 1 around w_bar = 0."""
    style_dim = 1

    def __init__(self):
        super().__init__()
        self.register_buffer("w_avg", torch.zeros(1))

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        return z


class Identity:
    """T(x, k) that copies the face (no anonymization at all) or ignores it (a constant face); its latent
    is the face's index (or 0, at w_bar, for the constant face)."""
    key_bits = 8

    def __init__(self, faces: torch.Tensor, constant: bool):
        self.faces, self.constant = faces, constant
        self.generator, self.projector = UnitMapping(), torch.nn.Linear(1, 1)

    def latents(self, embeddings: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return embeddings * 0 if self.constant else embeddings

    def generate(self, embeddings: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        index = embeddings[:, 0].long()
        out = self.faces[index].float() / 255
        return torch.ones_like(out) * 0.5 if self.constant else out


def test_the_check_tells_a_copy_from_a_constant_face():
    identities = ["a", "a", "b", "b", "c", "c"]
    faces = torch.zeros(6, 3, 128, 128, dtype=torch.uint8)
    for i, colour in enumerate([(250, 5, 5), (240, 5, 5), (5, 250, 5), (5, 240, 5), (5, 5, 250), (5, 5, 240)]):
        faces[i, :, 0, 0] = torch.tensor(colour)
    index = torch.arange(6, dtype=torch.float32)[:, None]  # "embeddings" that name the face
    check = ValidationCheck(faces, identities, index, Lookup(), threshold=0.9, key_bits=8, seed=0)
    copy = check(Identity(faces, constant=False))
    assert copy["protection"] == 0.0 and copy["key_diversity"] == 0.0   # nothing hidden, keys ignored
    assert copy["set_a_eer"] == 0.0 and copy["original_eer"] == 0.0
    constant = check(Identity(faces, constant=True))
    assert constant["protection"] == 1.0 and constant["key_diversity"] == 0.0
    assert constant["set_a_eer"] == pytest.approx(0.5) and constant["set_a_impostor_rejected"] == 0.0
    assert len(set(map(tuple, check.key_a.tolist()))) == 3                 # Set-A: a key per identity
    assert torch.equal(check.key_a[0], check.key_a[1]) and not torch.equal(check.key_a[0], check.key_other[0])
    assert check.grid(Identity(faces, constant=False)).shape[0] == 3
    # latents 0..5 against G's of mean square 1: spread 55/6; the constant face sits at w_bar
    assert copy["latent_spread"] == pytest.approx(55 / 6, rel=0.05) and constant["latent_spread"] == 0.0
    assert "detection" not in copy  # no detector given


def test_the_check_measures_realism_with_a_real_detector(lfw_images, aligner):
    """MTCNN finds LFW faces copied through T, and nothing in a flat grey 'face'."""
    from ivfg.data.files import load_faces

    people = sorted(p.name for p in lfw_images.iterdir() if len(list(p.iterdir())) >= 2)[:3]
    images = [f"{p}/{f.name}" for p in people for f in sorted((lfw_images / p).iterdir())[:2]]
    faces = load_faces(lfw_images, images, 128)  # the photos' centres: LFW's faces are there, unaligned
    index = torch.arange(len(images), dtype=torch.float32)[:, None]
    check = ValidationCheck(faces, [i.split("/")[0] for i in images], index, Lookup(), threshold=0.9,
                            key_bits=8, seed=0, detector=aligner)
    assert check(Identity(faces, constant=False))["detection"] == 1.0
    assert check(Identity(faces, constant=True))["detection"] == 0.0


def test_the_virtual_threshold_is_the_eer_threshold_of_set_a_pairs_of_virtual_faces():
    identities = ["a", "a", "b", "b", "c", "c"]
    faces = torch.zeros(6, 3, 128, 128, dtype=torch.uint8)
    for i, colour in enumerate([(250, 5, 5), (240, 5, 5), (5, 250, 5), (5, 240, 5), (5, 5, 250), (5, 5, 240)]):
        faces[i, :, 0, 0] = torch.tensor(colour)
    index = torch.arange(6, dtype=torch.float32)[:, None]
    recognizer = Lookup()
    scores = recognizer.score(faces[:, :, 0, 0].float()[:, None], faces[:, :, 0, 0].float()[None, :])
    genuine_lowest = min(float(scores[0, 1]), float(scores[2, 3]), float(scores[4, 5]))
    impostor_highest = max(float(scores[i, j]) for i in range(6) for j in range(6) if i // 2 != j // 2)
    copy = calibrate_virtual_threshold(Identity(faces, constant=False), index, identities, recognizer)
    assert copy["eer"] == 0.0 and impostor_highest < copy["threshold"] <= genuine_lowest
    assert copy["faces"] == 6 and copy["identities"] == 3 and copy["pairs"] == 15
    # A T that keeps each person whatever the key keeps people apart under one key too (Set-B).
    assert copy["set_b_eer"] == 0.0 and copy["set_b_impostor_rejected"] == 1.0 and copy["set_b_genuine_accepted"] == 1.0
    # τ_1, Set-B's own EER threshold (mean over the key draws), separates them as well.
    assert copy["one_key_draws"] == 4 and impostor_highest < copy["one_key_threshold"] <= genuine_lowest
    assert copy["set_b_impostor_rejected_one_key"] == 1.0 and copy["set_b_genuine_accepted_one_key"] == 1.0
    constant = calibrate_virtual_threshold(Identity(faces, constant=True), index, identities, recognizer)
    assert constant["eer"] == pytest.approx(0.5) and constant["set_b_eer"] == pytest.approx(0.5)
