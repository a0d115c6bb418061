"""The files stages hand each other, read and written in one place.

- the aligned-face index (`data/aligned/index.csv`, written by align, read by split and the CelebA stages),
- the split (`data/split.csv`: image, identity, split),
- the triplets (`data/triplets/<split>.csv`: x1, x2, y),
- the thresholds (`models/thresholds/<recognizer>.json`: τ and what it rests on),
- the aligned faces themselves, loaded as uint8 tensors,
- and CSV tables in general (index, failures, curves, ROC points), written atomically.

Every reader names the missing or malformed file and the stage that makes it.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ivfg.errors import InputError
from ivfg.fileio import atomic_path, write_json

# What the stages take for an image, by file name.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
SPLITS = ("train", "val", "test")
TRIPLET_COLUMNS = ["x1", "x2", "y"]
THRESHOLD_KEYS = ("eer_threshold", "eer", "pairs", "genuine")


# -- CSV tables -----------------------------------------------------------------------------------------

def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence | Mapping]) -> None:
    """A table with a header row, through a temporary file; dict rows are taken by the header's keys."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([row.get(k, "") for k in header] if isinstance(row, Mapping) else row for row in rows)


def read_csv(path: Path, made_by: str, columns: Sequence[str] = ()) -> list[dict[str, str]]:
    """The rows of a table a stage wrote; a missing file or column names that stage."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} is missing: run the {made_by} stage first (dvc repro {made_by})")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: expected the columns {','.join(columns)}, got {reader.fieldnames}; "
                             f"rerun the {made_by} stage")
        return list(reader)


# -- what the stages hand each other ---------------------------------------------------------------------

def read_index(path: Path) -> list[dict[str, str]]:
    """The aligned-face index: one row per aligned image (image, identity, box, landmarks, ...)."""
    return read_csv(path, "align", ["image", "identity"])


def read_split(path: Path) -> dict[str, list[dict[str, str]]]:
    """The split's rows (image, identity), by split name."""
    rows = read_csv(path, "split", ["image", "identity", "split"])
    return {name: [r for r in rows if r["split"] == name] for name in SPLITS}


def read_triplets(path: Path) -> list[tuple[str, str, str]]:
    rows = read_csv(path, "triplets", TRIPLET_COLUMNS)
    if not rows:
        raise InputError(f"{path} holds no triplets: the split has no identity with two or more images")
    return [(r["x1"], r["x2"], r["y"]) for r in rows]


def write_thresholds(directory: Path, results: dict[str, dict]) -> None:
    """One file per recognizer: its test-split EER threshold τ and what it rests on. Later stages depend
    on their recognizer's file alone, never on the baseline's metrics (which also hold timings)."""
    from ivfg.fileio import atomic_dir

    with atomic_dir(directory) as tmp:
        for name, result in results.items():
            test = result["test_split"]
            write_json(tmp / f"{name}.json", {"recognizer": name, **{k: test[k] for k in THRESHOLD_KEYS if k in test}})


def eer_threshold(directory: Path, recognizer: str) -> float:
    """τ: the recognizer's EER threshold on the test split, as the baseline stage recorded it."""
    path = Path(directory) / f"{recognizer}.json"
    if not path.is_file():
        raise InputError(f"{path} is missing: list '{recognizer}' in baseline.recognizers and run the baseline "
                         "stage (dvc repro baseline)")
    test = json.loads(path.read_text())
    if "eer_threshold" not in test:
        raise InputError(f"{path}: the test split gave no EER threshold for '{recognizer}' "
                         f"({test['pairs']} pairs, {test['genuine']} genuine): it needs genuine and impostor pairs")
    return float(test["eer_threshold"])


# -- aligned faces --------------------------------------------------------------------------------------

def load_faces(aligned_dir: Path, images: Sequence[str], size: int | None = None,
               progress: str | None = None) -> torch.Tensor:
    """uint8 (N, 3, S, S) canonical faces by their paths relative to `aligned_dir`; `size` resizes them
    (box filter down, bicubic up), `progress` names a progress bar."""
    out = None
    for i, image in enumerate(tqdm(images, desc=progress, unit="img", disable=progress is None)):
        path = Path(aligned_dir) / image
        if not path.is_file():
            raise InputError(f"{path} is listed but missing: rerun the align stage (dvc repro align)")
        with Image.open(path) as img:
            img = img.convert("RGB")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BOX if img.size[0] > size
                                 else Image.Resampling.BICUBIC)
            array = np.asarray(img)
        if out is None:
            out = np.empty((len(images), *array.shape), dtype=np.uint8)
        out[i] = array
    if out is None:
        return torch.zeros(0, 3, size or 128, size or 128, dtype=torch.uint8)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
