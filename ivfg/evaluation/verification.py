"""Face verification on pairs: LFW's 10-fold protocol, ROC AUC and the equal error rate."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from ivfg.errors import InputError


@dataclass(frozen=True)
class Pair:
    a: str       # image key, "NAME/NAME_000N"
    b: str
    same: bool
    fold: int = 0


def lfw_key(name: str, number: int) -> str:
    return f"{name}/{name}_{int(number):04d}"


def read_lfw_pairs(path: Path) -> list[Pair]:
    """LFW's pairs.txt: a header 'folds n', then per fold n matched and n mismatched lines."""
    lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    try:
        folds, per_fold = int(lines[0][0]), int(lines[0][1])
    except (IndexError, ValueError):
        raise InputError(f"{path}: first line must be '<folds> <pairs per fold>', got {lines[:1]}") from None
    pairs = []
    for i, parts in enumerate(lines[1:]):
        fold = i // (2 * per_fold)
        try:
            if len(parts) == 3:
                pairs.append(Pair(lfw_key(parts[0], parts[1]), lfw_key(parts[0], parts[2]), True, fold))
            elif len(parts) == 4:
                pairs.append(Pair(lfw_key(parts[0], parts[1]), lfw_key(parts[2], parts[3]), False, fold))
            else:
                raise ValueError("wrong number of fields")
        except ValueError:
            raise InputError(f"{path}: line {i + 2} is neither 'NAME N1 N2' nor 'NAME1 N1 NAME2 N2': "
                             f"{' '.join(parts)}") from None
    if len(pairs) != folds * 2 * per_fold:
        raise InputError(f"{path}: expected {folds * 2 * per_fold} pairs, found {len(pairs)}")
    return pairs


def split_pairs(images_by_identity: dict[str, list[str]], seed: int) -> list[Pair]:
    """All genuine pairs of a split and an equal number of seeded impostor pairs."""
    genuine = [Pair(a, b, True) for ident in sorted(images_by_identity)
               for a, b in combinations(sorted(images_by_identity[ident]), 2)]
    identities = sorted(images_by_identity)
    if len(identities) < 2:
        raise InputError("need at least two identities for impostor pairs")
    rng = np.random.Generator(np.random.PCG64(seed))
    seen: set[tuple[str, str]] = set()
    impostors = []
    limit = sum(len(v) for v in images_by_identity.values()) ** 2
    while len(impostors) < len(genuine) and len(seen) < limit:
        i, j = rng.choice(len(identities), size=2, replace=False)
        a_list, b_list = images_by_identity[identities[i]], images_by_identity[identities[j]]
        a, b = a_list[rng.integers(len(a_list))], b_list[rng.integers(len(b_list))]
        key = (min(a, b), max(a, b))
        if key not in seen:
            seen.add(key)
            impostors.append(Pair(a, b, False))
    return genuine + impostors


def eer(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Equal error rate and its score threshold (scores >= threshold mean 'same')."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    # Interpolate between the two ROC points around the crossing for a resolution-free EER.
    if i + 1 < len(fpr) and (fnr[i] - fpr[i]) * (fnr[i + 1] - fpr[i + 1]) < 0:
        d0, d1 = fnr[i] - fpr[i], fnr[i + 1] - fpr[i + 1]
        t = d0 / (d0 - d1)
        rate = fpr[i] + t * (fpr[i + 1] - fpr[i])
    else:
        rate = (fpr[i] + fnr[i]) / 2
    return float(rate), float(thresholds[i])


def best_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold with the highest accuracy on these pairs (midpoints between sorted scores)."""
    order = np.sort(np.unique(scores))
    candidates = np.concatenate([[order[0] - 1e-6], (order[:-1] + order[1:]) / 2, [order[-1] + 1e-6]])
    accuracy = [((scores >= t) == labels).mean() for t in candidates]
    return float(candidates[int(np.argmax(accuracy))])


def kfold_accuracy(labels: np.ndarray, scores: np.ndarray, folds: np.ndarray) -> tuple[float, float]:
    """LFW protocol: per fold, the threshold is chosen on the other folds; mean and std of accuracy."""
    accuracies = []
    for k in np.unique(folds):
        train, test = folds != k, folds == k
        t = best_threshold(labels[train], scores[train])
        accuracies.append(((scores[test] >= t) == labels[test]).mean())
    return float(np.mean(accuracies)), float(np.std(accuracies))


def verification_metrics(labels: np.ndarray, scores: np.ndarray, folds: np.ndarray | None = None) -> dict:
    """AUC, EER and its threshold (and k-fold accuracy given folds). Pairs of only one kind (e.g. a
    tiny subset of LFW) leave these undefined: then only the counts are returned."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.all() or not labels.any():
        return {"pairs": int(len(labels)), "genuine": int(labels.sum())}
    rate, threshold = eer(labels, scores)
    metrics = {"pairs": int(len(labels)), "genuine": int(labels.sum()), "auc": float(roc_auc_score(labels, scores)),
               "eer": rate, "eer_threshold": threshold}
    if folds is not None:
        metrics["accuracy"], metrics["accuracy_std"] = kfold_accuracy(labels, scores, np.asarray(folds))
    return metrics


def decisions(same: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """What a product meets at a fixed threshold τ: the shares of same-person pairs accepted and of
    different-person pairs rejected (NaN where there are none)."""
    return {"genuine_accepted": float((scores[same] >= threshold).mean()) if same.any() else float("nan"),
            "impostor_rejected": float((scores[~same] < threshold).mean()) if (~same).any() else float("nan")}


def pair_scores(recognizer, emb: torch.Tensor, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j) inside one set of embeddings: whether it is one person, and its score."""
    scores = recognizer.score(emb[:, None], emb[None, :]).numpy()
    i, j = np.triu_indices(len(labels), k=1)
    return labels[i] == labels[j], scores[i, j]


def pair_metrics(recognizer, emb: torch.Tensor, labels: np.ndarray, threshold: float) -> dict:
    """Every pair (i < j) inside one set of embeddings: EER and AUC, and the decisions at τ."""
    same, scores = pair_scores(recognizer, emb, labels)
    return {**verification_metrics(same, scores), **decisions(same, scores, threshold)}
