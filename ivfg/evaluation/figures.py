"""The paper's figures from the evaluation's face sets: original/virtual grids (Fig. 3-4), one face under
eight keys (Fig. 5), ROC curves, and the t-SNE of identities and keys (Fig. 6). Grids are uint8 arrays
(H, W, 3); plots are written as PNG with matplotlib's non-interactive backend."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_curve
from torchvision.utils import make_grid

from ivfg.data.faceframe import to_frame
from ivfg.evaluation.facesets import FaceSets, as_float
from ivfg.fileio import atomic_path
from ivfg.keys import distinct_keys

ROC_POINTS = np.concatenate([[0.0], np.logspace(-4, 0, 120)])


def _tiles_to_array(columns: list[torch.Tensor]) -> np.ndarray:
    tiles = torch.stack([to_frame(c) for c in columns], dim=1).flatten(0, 1)
    grid = make_grid(tiles, nrow=len(columns), padding=2, pad_value=1.0)
    return grid.permute(1, 2, 0).mul(255).round().byte().numpy()


def pairs_of_people(sets: FaceSets, count: int, seed: int) -> list[tuple[int, int]]:
    """Two photos each of up to `count` people with two or more, people in a seeded order."""
    rng = np.random.default_rng(seed)
    people = [np.flatnonzero(sets.labels == k) for k in range(int(sets.labels.max()) + 1)]
    people = [faces for faces in people if len(faces) >= 2]
    return [(int(people[k][0]), int(people[k][1])) for k in rng.permutation(len(people))[:count]]


def identity_grid(sets: FaceSets, count: int, seed: int) -> np.ndarray:
    """Fig. 3-4: per row one person, two originals, then both under that person's key (Set-A)."""
    pairs = pairs_of_people(sets, count, seed)
    first, second = [i for i, _ in pairs], [j for _, j in pairs]
    originals, virtual = as_float(sets.images("original")), as_float(sets.images("set_a", 0))
    return _tiles_to_array([originals[first], originals[second], virtual[first], virtual[second]])


@torch.no_grad()
def key_grid(sets: FaceSets, rows: int, keys: int, seed: int) -> np.ndarray:
    """Fig. 5: per row one original, then its virtual faces under `keys` different keys."""
    faces = [i for i, _ in pairs_of_people(sets, rows, seed + 1)] or list(range(min(rows, len(sets))))
    chosen = distinct_keys(min(keys, 2 ** min(sets.key_bits, 20)), sets.key_bits,
                           torch.Generator().manual_seed(seed))
    encodings = sets.encodings()[faces]
    columns = [as_float(sets.images("original")[faces])]
    columns += [sets.virtual.generate(encodings, key) for key in chosen]
    return _tiles_to_array(columns)


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC at fixed false-accept rates (log-spaced, so the low-FAR end a product cares about shows)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return ROC_POINTS, np.interp(ROC_POINTS, fpr, tpr)


def set_roc(sets: FaceSets, name: str, repeat: int = 0) -> tuple[np.ndarray, np.ndarray]:
    emb = sets.embeddings(name, repeat)
    i, j = np.triu_indices(len(sets), k=1)
    scores = sets.recognizer.score(emb[i], emb[j]).numpy()
    return roc_points(sets.labels[i] == sets.labels[j], scores)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def roc_png(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 4.2))
    for name, (fpr, tpr) in curves.items():
        ax.plot(np.maximum(fpr, 1e-4), tpr, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate (impostor pairs accepted)")
    ax.set_ylabel("true accept rate (genuine pairs accepted)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    plt.close(fig)


def tsne_png(sets: FaceSets, identities: int, path: Path, seed: int, title: str, repeats: int) -> int:
    """Fig. 6: originals and virtual faces under two keys (Set-B of the first two repeats, or Set-A when
    there is one) of the test people with the most photos; colour: person, marker: key. Returns the
    number of people shown."""
    from sklearn.manifold import TSNE

    counts = np.bincount(sets.labels)
    people = np.argsort(-counts, kind="stable")[:identities]
    people = people[counts[people] >= 2]
    faces = np.flatnonzero(np.isin(sets.labels, people))
    if len(people) < 2 or len(faces) < 6:
        # The figure is a declared output: say why it is empty rather than leave it out.
        plt = _figure()
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, f"{title}\ntoo few people with two or more photos for a t-SNE ({len(people)})",
                ha="center", va="center", fontsize=9)
        save_figure(fig, path)
        plt.close(fig)
        return 0
    second = ("set_b", 1) if repeats >= 2 else ("set_a", 0)
    groups = {"original": sets.embeddings("original")[faces], "key 1": sets.embeddings("set_b", 0)[faces],
              "key 2": sets.embeddings(*second)[faces]}
    points = np.concatenate([g.numpy() for g in groups.values()])
    xy = TSNE(2, perplexity=min(30.0, (len(points) - 1) / 3), init="pca", random_state=seed).fit_transform(points)
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 5))
    colours = plt.get_cmap("tab10" if len(people) <= 10 else "tab20")
    labels = sets.labels[faces]
    for g, (group, marker) in enumerate(zip(groups, ("o", "^", "s"))):
        part = xy[g * len(faces):(g + 1) * len(faces)]
        for c, person in enumerate(people):
            mine = labels == person
            ax.scatter(part[mine, 0], part[mine, 1], marker=marker, color=colours(c % colours.N), s=28,
                       label=group if c == 0 else None, alpha=0.85,
                       edgecolors="black" if group == "original" else "none", linewidths=0.4)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    ax.legend(title="marker", fontsize=8)
    save_figure(fig, path)
    plt.close(fig)
    return len(people)
