"""Verification metrics against cases whose answers are known, and LFW's real pairs.txt."""
from __future__ import annotations

import numpy as np
import pytest

from ivfg.errors import InputError
from ivfg.evaluation.verification import (eer, kfold_accuracy, read_lfw_pairs, split_pairs,
                                          verification_metrics)


def test_perfectly_separated_scores():
    labels = np.array([1, 1, 1, 0, 0, 0], bool)
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    m = verification_metrics(labels, scores, folds=np.array([0, 1, 2, 0, 1, 2]))
    assert m["auc"] == 1.0 and m["eer"] == 0.0 and m["accuracy"] == 1.0
    assert 0.3 < m["eer_threshold"] <= 0.7


def test_eer_of_two_gaussians_matches_theory():
    rng = np.random.default_rng(0)
    genuine, impostor = rng.normal(1, 1, 200_000), rng.normal(-1, 1, 200_000)
    labels = np.r_[np.ones_like(genuine), np.zeros_like(impostor)].astype(bool)
    rate, threshold = eer(labels, np.r_[genuine, impostor])
    # Equal variances: the EER threshold is the midpoint 0 and EER = Phi(-1) = 0.1587.
    assert rate == pytest.approx(0.1587, abs=0.003)
    assert threshold == pytest.approx(0.0, abs=0.02)


def test_reversed_scores_give_auc_zero():
    labels = np.array([1, 1, 0, 0], bool)
    assert verification_metrics(labels, np.array([0.1, 0.2, 0.8, 0.9]))["auc"] == 0.0


def test_kfold_threshold_is_chosen_on_other_folds():
    # Each fold alone is separable, but the threshold learnt on the other two folds (0.75 for fold 0;
    # the first best, 0.5, for folds 1 and 2) misclassifies one of its two pairs. An in-sample
    # threshold would score 1.0 everywhere.
    labels = np.array([1, 0, 1, 0, 1, 0], bool)
    scores = np.array([0.6, 0.4, 0.9, 0.6, 0.9, 0.6])
    folds = np.array([0, 0, 1, 1, 2, 2])
    mean, std = kfold_accuracy(labels, scores, folds)
    assert mean == pytest.approx(0.5)
    assert std == pytest.approx(0.0)


def test_real_lfw_pairs_file(lfw_dir):
    pairs = read_lfw_pairs(lfw_dir / "pairs.txt")
    assert len(pairs) == 6000
    assert sum(p.same for p in pairs) == 3000
    assert {p.fold for p in pairs} == set(range(10))
    assert all(sum(p.fold == k for p in pairs) == 600 for k in range(10))
    first = pairs[0]
    assert first.same and first.a.split("/")[0] == first.b.split("/")[0]
    assert first.a.endswith(("_0001", "_0002", "_0003", "_0004")) or first.a[-4:].isdigit()


def test_malformed_pairs_file_names_the_line(tmp_path):
    bad = tmp_path / "pairs.txt"
    bad.write_text("1 1\nAlice 1 2\nAlice 1 Bob\n")
    with pytest.raises(InputError, match="line 3"):
        read_lfw_pairs(bad)


def test_split_pairs_all_genuine_and_as_many_distinct_impostors():
    images = {"a": ["a/1", "a/2", "a/3"], "b": ["b/1", "b/2"], "c": ["c/1"]}
    pairs = split_pairs(images, seed=0)
    genuine = [p for p in pairs if p.same]
    impostor = [p for p in pairs if not p.same]
    assert {(p.a, p.b) for p in genuine} == {("a/1", "a/2"), ("a/1", "a/3"), ("a/2", "a/3"), ("b/1", "b/2")}
    assert len(impostor) == len(genuine)
    assert all(p.a.split("/")[0] != p.b.split("/")[0] for p in impostor)
    assert len({frozenset((p.a, p.b)) for p in impostor}) == len(impostor)
    assert split_pairs(images, seed=0) == pairs
