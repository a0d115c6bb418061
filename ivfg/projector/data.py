"""What P trains on: the triplets as indices into one list of faces, and each face's frozen embeddings
(computed once, cached in the run directory by the faces' content, so a resumed run skips them)."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch

from ivfg.config import ConfigError
from ivfg.evaluation.baseline import embed_images
from ivfg.fileio import sha256_file, write_torch
from ivfg.models.recognizers import Recognizer

log = logging.getLogger(__name__)


def index_triplets(triplets: list[tuple[str, str, str]]) -> tuple[list[str], torch.Tensor]:
    """The distinct images (sorted) and a (T, 3) table of indices into them."""
    images = sorted({image for t in triplets for image in t})
    position = {image: i for i, image in enumerate(images)}
    return images, torch.tensor([[position[i] for i in t] for t in triplets], dtype=torch.long)


def identity_indices(images: list[str]) -> torch.Tensor:
    """Each image's identity as an integer: the name of its folder (images/<identity>/<file>)."""
    names = [Path(image).parent.name for image in images]
    number = {name: i for i, name in enumerate(sorted(set(names)))}
    return torch.tensor([number[name] for name in names], dtype=torch.long)


def content_key(name: str, aligned_dir: Path, images: list[str]) -> str:
    digest = hashlib.sha256(name.encode())
    for image in images:
        digest.update(f"{image} {sha256_file(Path(aligned_dir) / image)}\n".encode())
    return digest.hexdigest()[:16]


def frozen_embeddings(recognizer: Recognizer, aligned_dir: Path, images: list[str], batch: int,
                      device: torch.device, cache_dir: Path | None = None) -> torch.Tensor:
    """(N, D) embeddings of the faces, in `images` order; cached under `cache_dir` by content."""
    cache = None
    if cache_dir is not None:
        # The fast form differs by float rounding: its embeddings are cached apart from the exact form's.
        name = recognizer.name + ("-fast" if getattr(recognizer, "fast", False) else "")
        cache = Path(cache_dir) / f"{name}-{content_key(name, aligned_dir, images)}.pt"
        if cache.is_file():
            log.info("embeddings of %d faces by %s from %s", len(images), recognizer.name, cache)
            return torch.load(cache, weights_only=True)
    by_key, _ = embed_images(recognizer, aligned_dir, {image: image for image in images}, batch, device)
    out = torch.stack([by_key[image] for image in images]).float()
    if cache is not None:
        write_torch(cache, out)
    return out


def hard_negatives(features: torch.Tensor, identities: torch.Tensor, anchors: torch.Tensor,
                   fallback: torch.Tensor, pool: int, generator: torch.Generator) -> torch.Tensor:
    """For each anchor row, the most alike (cosine of `features`) of `pool` rows drawn at random among
    every face, other people's only; `fallback` where the draw held none of another person."""
    drawn = torch.randint(len(features), (len(anchors), pool), generator=generator).to(anchors.device)
    # Only the rows drawn are normalised: the whole table would be redone at every training step.
    unit = torch.nn.functional.normalize
    alike = (unit(features[anchors].float(), dim=-1)[:, None, :] * unit(features[drawn].float(), dim=-1)).sum(-1)
    other = identities[drawn] != identities[anchors][:, None]
    alike = alike.masked_fill(~other, float("-inf"))
    chosen = drawn.gather(1, alike.argmax(1, keepdim=True)).squeeze(1)
    return torch.where(other.any(1), chosen, fallback)


def discriminant_directions(embeddings: torch.Tensor, identities: torch.Tensor,
                            dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and the first `dims` linear discriminant directions (scikit-learn's LDA, SVD solver, so
    no randomness) of unit-length embeddings labelled by person: projected on them, one person's photos
    lie closer together relative to how far apart different people lie. (D,) and (D, dims), float32."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    people = len(torch.unique(identities))
    most = min(people - 1, embeddings.shape[1])
    if not 1 <= dims <= most:
        raise ConfigError(f"train.lda_dims is {dims}, but {people} training people in {embeddings.shape[1]}-d "
                          f"embeddings give at most {most} discriminant directions; choose 1..{most} or null")
    unit = torch.nn.functional.normalize(embeddings.double(), dim=-1).cpu().numpy()
    lda = LinearDiscriminantAnalysis(solver="svd").fit(unit, identities.cpu().numpy())
    return (torch.from_numpy(lda.xbar_).float(), torch.from_numpy(lda.scalings_[:, :dims].copy()).float())
