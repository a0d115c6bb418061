"""CelebA for the cross-dataset evaluation (paper Table 2): a folder of CelebA images (or a .tgz/.tar of
one) and the official `identity_CelebA.txt`, laid out by identity and aligned by the pipeline's own code.

Works for the aligned set (img_align_celeba) and the in-the-wild one (img_celeba) alike: MTCNN finds
the face either way. Only identities with two or more images are used (they make the genuine pairs),
whole identities in a seeded order up to `max_images`, so a large CelebA costs what the subset costs.
"""
from __future__ import annotations

import logging
import shutil
import tarfile
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from ivfg.config import AlignConfig, CelebaConfig, ConfigError
from ivfg.data.align import align_directory
from ivfg.data.files import IMAGE_SUFFIXES
from ivfg.errors import InputError

log = logging.getLogger(__name__)
ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar")


def read_identities(path: Path) -> dict[str, str]:
    """identity_CelebA.txt: one 'FILE.jpg IDENTITY' per line -> {file name: identity}."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} is missing: give CelebA's identity_CelebA.txt (celeba.identities)")
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or Path(parts[0]).suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f"{path}: line {number} is not 'FILE.jpg IDENTITY' (the official "
                             f"identity_CelebA.txt format): {line[:80]!r}")
        out[parts[0]] = parts[1]
    if not out:
        raise InputError(f"{path} lists no images")
    return out


def choose_images(identities: dict[str, str], max_images: int | None, seed: int) -> dict[str, str]:
    """Whole identities with two or more images, in a seeded order, up to `max_images` images."""
    by_identity: dict[str, list[str]] = defaultdict(list)
    for name, identity in identities.items():
        by_identity[identity].append(name)
    people = sorted(i for i, names in by_identity.items() if len(names) >= 2)
    chosen: dict[str, str] = {}
    for k in np.random.default_rng(seed).permutation(len(people)):
        names = by_identity[people[k]]
        if max_images is not None and len(chosen) + len(names) > max_images:
            continue
        chosen.update({name: people[k] for name in names})
    return chosen


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def gather(source: Path, chosen: dict[str, str], target: Path) -> int:
    """Copy the chosen images from a folder or an archive to target/IDENTITY/FILE; returns how many."""
    found = 0
    if _is_archive(source):
        with tarfile.open(source) as archive:
            for member in archive:
                name = Path(member.name).name
                if member.isfile() and name in chosen:
                    member.name = f"{chosen[name]}/{name}"  # flattened: the archive's folders don't matter
                    archive.extract(member, target, filter="data")  # refuses links and paths outside target
                    found += 1
    elif source.is_dir():
        for path in source.rglob("*"):
            if path.name in chosen and path.is_file():
                destination = target / chosen[path.name] / path.name
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, destination)
                found += 1
    else:
        raise InputError(f"{source} is neither a folder of CelebA images nor a .tgz/.tar of one "
                                "(celeba.images)")
    return found


def prepare_celeba(cfg: CelebaConfig, align: AlignConfig, out_dir: Path) -> dict:
    """Lay the chosen CelebA images out by identity and align them into out_dir (index.csv etc.)."""
    if cfg.images is None or cfg.identities is None:
        raise ConfigError("celeba.images and celeba.identities must name CelebA's images (a folder or a .tgz) "
                          "and its identity_CelebA.txt in params.yaml")
    identities = read_identities(Path(cfg.identities))
    chosen = choose_images(identities, cfg.max_images, cfg.seed)
    if not chosen:
        raise InputError(f"{cfg.identities}: no identity has two or more images (within celeba.max_images)")
    with tempfile.TemporaryDirectory(prefix="celeba-") as tmp:
        found = gather(Path(cfg.images), chosen, Path(tmp))
        if found == 0:
            raise InputError(f"{cfg.images} holds none of the {len(chosen)} images chosen from "
                                    f"{cfg.identities}: do the two belong together?")
        if found < len(chosen):
            log.warning("%d of %d chosen images are missing from %s", len(chosen) - found, len(chosen), cfg.images)
        figures = align_directory(Path(tmp), out_dir, align)
    return {"listed": len(identities), "chosen": len(chosen), "found": found,
            "identities": len(set(chosen.values())), **figures}
