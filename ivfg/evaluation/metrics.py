"""The paper's evaluation (docs/design.md, "Metric definitions") as named metrics and one runner.

Each metric is one function of the face sets and a repeat; the runner calls it once per repeat (an
independent draw of keys) and reports mean and standard deviation, or once for metrics that no key
touches (the originals, the baselines). Every figure is measured with the evaluation recognizer at its
threshold τ. Pair counts are reported beside the rates they rest on.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ivfg.data.faceframe import to_frame
from ivfg.evaluation.attacks import search_keys
from ivfg.evaluation.facesets import FaceSets, as_float
from ivfg.evaluation.fid import fid
from ivfg.evaluation.verification import decisions, pair_metrics, pair_scores, verification_metrics
from ivfg.virtual import spread_of


@dataclass(frozen=True)
class Metric:
    fn: Callable[..., dict]
    repeated: bool   # depends on the keys: run once per repeat


METRICS: dict[str, Metric] = {}


def metric(repeated: bool = True):
    def register(fn: Callable[..., dict]) -> Callable[..., dict]:
        METRICS[fn.__name__] = Metric(fn, repeated)
        return fn
    return register


# -- shares at τ ---------------------------------------------------------------------------------------

def share_below(sets: FaceSets, a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of pairs (a[i], b[i]) judged different people (score < τ)."""
    return float((sets.score(a, b) < sets.threshold).mean()) if len(a) else float("nan")


def protection_of(sets: FaceSets, name: str, repeat: int) -> dict:
    """Share of (x, output) pairs the recognizer judges different people: the original is hidden."""
    return {"rate": share_below(sets, sets.embeddings("original"), sets.embeddings(name, repeat)),
            "pairs": len(sets)}


def detection_of(sets: FaceSets, name: str, repeat: int) -> dict:
    return {"rate": float(sets.detected(name, repeat).mean()), "images": len(sets)}


def fid_of(sets: FaceSets, name: str, repeat: int) -> dict:
    real, fake = sets.features("original"), sets.features(name, repeat)
    return {f"fid{d}": fid(fake[d], real[d]) for d in sets.fid_dims}


# -- Table 1: verification inside a set --------------------------------------------------------------

@metric(repeated=False)
def original(sets: FaceSets) -> dict:
    """The originals: verification over every pair, and MTCNN's detection rate in the aligned crops."""
    return {**pair_metrics(sets.recognizer, sets.embeddings("original"), sets.labels, sets.threshold),
            "detection": detection_of(sets, "original", 0)["rate"]}


@metric(repeated=False)
def original_lowres(sets: FaceSets) -> dict:
    """The originals shrunk to the generator's resolution and shown in the frame again: how well that
    resolution alone lets the recognizer tell people apart (the reference for Set-A)."""
    figures = pair_metrics(sets.recognizer, sets.embeddings("original_lowres"), sets.labels, sets.threshold)
    return {**figures, "resolution": int(sets.virtual.generator.resolution)}


@metric()
def set_a(sets: FaceSets, repeat: int) -> dict:
    """Each identity its own key: should verify as well as the originals. Beside the decisions at τ
    (set on real faces), those at τ_v, the model's threshold calibrated on virtual validation faces."""
    return _with_virtual_decisions(sets, sets.embeddings("set_a", repeat), {"v": sets.virtual_threshold})


@metric()
def set_b(sets: FaceSets, repeat: int) -> dict:
    """One key for everyone: different people must stay apart under the same key (the case of `ivfg
    compare`, which decides at τ_v). Its decisions at τ_1, Set-B's own threshold, are reported beside."""
    return _with_virtual_decisions(sets, sets.embeddings("set_b", repeat),
                                   {"v": sets.virtual_threshold, "1": sets.one_key_threshold})


def _with_virtual_decisions(sets: FaceSets, emb, virtual: dict[str, float | None]) -> dict:
    """EER, AUC and the decisions at τ; then those at each of the model's virtual-face thresholds the
    model has, named by suffix (τ_v: _v, τ_1: _1). The pairs are scored once for every threshold."""
    same, scores = pair_scores(sets.recognizer, emb, sets.labels)
    figures = {**verification_metrics(same, scores), **decisions(same, scores, sets.threshold)}
    for suffix, threshold in virtual.items():
        if threshold is not None:
            figures.update({f"{name}_{suffix}": rate for name, rate in decisions(same, scores, threshold).items()})
    return figures


# -- Table 3 and §5.3.4 --------------------------------------------------------------------------------

@metric()
def protection(sets: FaceSets, repeat: int) -> dict:
    return protection_of(sets, "set_a", repeat)


def cross_key(sets: FaceSets, repeat: int) -> np.ndarray:
    """Faces whose Set-A key differs from the Set-B key (with short keys they sometimes coincide)."""
    keys = sets.keys(repeat)
    return (keys.per_face_a != keys.set_b).any(dim=1).numpy()


@metric()
def diversity(sets: FaceSets, repeat: int) -> dict:
    """Share of (T(x, k1), T(x, k2)) judged different people, k1 the face's Set-A key and k2 a random
    key of its own, never k1: a new key, a new identity."""
    a, b = sets.embeddings("set_a", repeat), sets.embeddings("other", repeat)
    return {"rate": share_below(sets, a, b), "pairs": len(sets)}


@metric()
def latent_spread(sets: FaceSets, repeat: int) -> dict:
    """How far P's latents reach from w-bar: mean (w - w_bar)^2 over the Set-A faces, over the same
    for G's random (untruncated) latents. Near 0, every virtual face is close to the average face."""
    return spread_of(sets.latents(repeat), sets.generator_latents(), sets.virtual.generator.w_avg)


@metric()
def recoverability(sets: FaceSets, repeat: int) -> dict:
    """Share of (x, T(T(x, k), k)) judged the same person (lower is better): T is not its own inverse."""
    same = 1 - share_below(sets, sets.embeddings("original"), sets.embeddings("recovered", repeat))
    return {"rate": same, "pairs": len(sets)}


# -- Table 4: realism against the baselines --------------------------------------------------------------

@metric()
def detection(sets: FaceSets, repeat: int) -> dict:
    return detection_of(sets, "set_a", repeat)


@metric()
def fid_virtual(sets: FaceSets, repeat: int) -> dict:
    """FID of the virtual faces (Set-A) against the real test faces, both in the canonical frame."""
    return fid_of(sets, "set_a", repeat)


@metric(repeated=False)
def fid_lowres(sets: FaceSets) -> dict:
    """FID of the real test faces shrunk to the generator's resolution (as in `original_lowres`): what
    that resolution alone costs, the reference for the virtual faces' FID."""
    return fid_of(sets, "original_lowres", 0)


@metric(repeated=False)
def baselines(sets: FaceSets) -> dict:
    return {name: {"detection": detection_of(sets, name, 0)["rate"], **fid_of(sets, name, 0),
                   "protection": protection_of(sets, name, 0)["rate"]} for name in sets.baselines}


# -- Beyond the paper ----------------------------------------------------------------------------------

@metric()
def linkage(sets: FaceSets, repeat: int) -> dict:
    """Can virtual faces under different keys be linked? Verification over every pair (Set-A face,
    Set-B face) whose two keys differ: genuine = same person. An AUC near 0.5 means unlinkable."""
    keep = cross_key(sets, repeat)
    a, b = sets.embeddings("set_a", repeat)[keep], sets.embeddings("set_b", repeat)[keep]
    labels = sets.labels[keep]
    scores = sets.recognizer.score(a[:, None], b[None, :]).numpy().ravel()
    same = (labels[:, None] == labels[None, :]).ravel()
    return {**verification_metrics(same, scores), **decisions(same, scores, sets.threshold)}


@dataclass(frozen=True)
class AttackSettings:
    attacker: object        # the recognizer the attacker compares with (the model's encoder)
    targets: int
    budget: int
    autocast: Callable = contextlib.nullcontext


@metric()
def key_search(sets: FaceSets, repeat: int, attack: AttackSettings | None = None) -> dict:
    """An attacker with the model, a photo and a virtual face of another photo of the same person
    searches keys (see ivfg.evaluation.attacks)."""
    if attack is None or attack.targets == 0:
        return {}
    probes, targets = attack_pairs(sets, attack.targets, repeat)
    if not probes:
        return {}
    keys = sets.keys(repeat).per_face_a
    g = torch.Generator().manual_seed(sets.seed * 7_919 + repeat)
    with sets.timed("attack"):
        found = search_keys(sets.virtual, attack.attacker, sets.encodings()[probes],
                            as_float(sets.images("set_a", repeat)[targets]), keys[targets], attack.budget, g,
                            sets.batch, attack.autocast)
        best = sets.recognizer.embed(to_frame(found.best_faces).to(sets.device)).float().cpu()
    virtual = sets.embeddings("set_a", repeat)
    linked = sets.score(best, virtual[targets]) >= sets.threshold
    # The same decision against another person's virtual face: what "linked" means when τ, in the
    # virtual space, accepts many impostors.
    others = [targets[(i + 1) % len(targets)] for i in range(len(targets))]
    linked_other = sets.score(best, virtual[others]) >= sets.threshold
    recovered = (found.best_keys == keys[targets]).all(dim=1).numpy() if found.exhaustive else \
        np.zeros(len(targets), dtype=bool)
    ranks = found.true_key_rank[found.true_key_rank > 0]
    return {"targets": len(targets), "candidates": found.candidates, "exhaustive": int(found.exhaustive),
            "key_recovered": float(recovered.mean()), "linked": float(linked.mean()),
            "linked_to_another_person": float(linked_other.mean()) if len(targets) > 1 else float("nan"),
            "true_key_rank": float(ranks.mean()) if len(ranks) else float("nan"),
            "chance_rank": (found.candidates + 1) / 2 if found.exhaustive else float("nan")}


def attack_pairs(sets: FaceSets, count: int, repeat: int) -> tuple[list[int], list[int]]:
    """Up to `count` (probe, target) pairs: two photos of one person, persons drawn at random."""
    rng = np.random.default_rng(sets.seed * 104_729 + repeat)
    by_identity = [np.flatnonzero(sets.labels == k) for k in range(int(sets.labels.max()) + 1)]
    people = [faces for faces in by_identity if len(faces) >= 2]
    probes, targets = [], []
    for k in rng.permutation(len(people))[:count]:
        probe, target = rng.choice(people[k], size=2, replace=False)
        probes.append(int(probe))
        targets.append(int(target))
    return probes, targets


# -- the runner ----------------------------------------------------------------------------------------

def summarize(values: list[dict]) -> dict:
    """Mean over repeats under each name, with `<name>_std` beside every rate; counts kept as they are."""
    out: dict = {}
    for key in values[0]:
        column = [v[key] for v in values]
        if isinstance(column[0], dict):
            out[key] = summarize(column)
        elif isinstance(column[0], (int, np.integer)) and len(set(column)) == 1:
            out[key] = int(column[0])
        else:
            numbers = np.array(column, dtype=np.float64)
            out[key] = float(np.mean(numbers))
            out[f"{key}_std"] = float(np.std(numbers))
    return out


def run_metrics(sets: FaceSets, names: list[str], repeats: int, **options) -> dict:
    """{metric: figures}: repeated metrics summarised over `repeats` draws of keys."""
    results = {}
    for name in names:
        if name not in METRICS:
            raise ValueError(f"unknown metric '{name}'; known: {', '.join(METRICS)}")
        entry = METRICS[name]
        extra = {k: v for k, v in options.items() if k in entry.fn.__code__.co_varnames}
        if entry.repeated:
            values = [entry.fn(sets, r, **extra) for r in range(repeats)]
            results[name] = summarize(values) if values and values[0] else {}
        else:
            results[name] = entry.fn(sets, **extra)
    return results
