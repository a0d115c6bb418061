"""The "Original" row of the paper's Table 1: verification on real, pipeline-aligned faces."""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from tqdm import tqdm

from ivfg.config import Params
from ivfg.data.files import load_faces, read_index, write_thresholds
from ivfg.device import resolve_device
from ivfg.evaluation.verification import Pair, read_lfw_pairs, split_pairs, verification_metrics
from ivfg.models.recognizers import Recognizer
from ivfg.models.registry import build_recognizer


def image_key(relative_image: str) -> str:
    """'images/NAME/NAME_0001.png' -> 'NAME/NAME_0001' (the key pairs.txt lines map to)."""
    path = Path(relative_image)
    return f"{path.parent.name}/{path.stem}"


@torch.no_grad()
def embed_images(recognizer: Recognizer, aligned_dir: Path, images: dict[str, str], batch_size: int,
                 device: torch.device) -> tuple[dict[str, torch.Tensor], float]:
    """Embeddings by key of the aligned faces `images` names (key -> path under `aligned_dir`), and the
    seconds spent per image (loading included)."""
    keys = sorted(images)
    out: dict[str, torch.Tensor] = {}
    start = time.perf_counter()
    for i in tqdm(range(0, len(keys), batch_size), desc=f"embed {recognizer.name}", unit="batch"):
        chunk = keys[i:i + batch_size]
        faces = load_faces(aligned_dir, [images[k] for k in chunk]).float() / 255
        emb = recognizer.embed(faces.to(device)).float().cpu()
        out.update(zip(chunk, emb))
    return out, (time.perf_counter() - start) / max(len(keys), 1)


def score_pairs(recognizer: Recognizer, pairs: Iterable[Pair], emb: dict[str, torch.Tensor]) -> np.ndarray:
    pairs = list(pairs)
    if not pairs:
        return np.zeros(0)
    a = torch.stack([emb[p.a] for p in pairs])
    b = torch.stack([emb[p.b] for p in pairs])
    return recognizer.score(a, b).numpy()


def evaluate_recognizer(recognizer: Recognizer, aligned_dir: Path, index_rows: list[dict[str, str]],
                        split_rows: list[dict[str, str]], pairs_file: Path, batch_size: int,
                        device: torch.device, seed: int) -> dict:
    """LFW pairs.txt (10-fold accuracy, AUC, EER) and the pipeline's own test split (AUC, EER)."""
    available = {image_key(r["image"]): r["image"] for r in index_rows}
    lfw = read_lfw_pairs(pairs_file)
    usable = [p for p in lfw if p.a in available and p.b in available]
    test_by_identity: dict[str, list[str]] = defaultdict(list)
    for r in split_rows:
        if r["split"] == "test":
            test_by_identity[r["identity"]].append(image_key(r["image"]))
    test = split_pairs(test_by_identity, seed) if len(test_by_identity) >= 2 else []
    needed = {k for p in usable + test for k in (p.a, p.b)}
    emb, seconds_per_image = embed_images(recognizer, aligned_dir, {k: available[k] for k in needed}, batch_size,
                                          device)

    lfw_scores = score_pairs(recognizer, usable, emb)
    result = {"lfw_pairs": verification_metrics(np.array([p.same for p in usable]), lfw_scores,
                                                np.array([p.fold for p in usable])),
              "test_split": verification_metrics(np.array([p.same for p in test]), score_pairs(recognizer, test, emb)),
              "ms_per_image": 1000 * seconds_per_image}
    result["lfw_pairs"]["pairs_missing"] = len(lfw) - len(usable)
    return result



@dataclass(frozen=True)
class BaselinePaths:
    aligned: Path = Path("data/aligned")
    split: Path = Path("data/split.csv")
    pairs: Path = Path("data/raw/lfw/pairs.txt")
    thresholds: Path = Path("models/thresholds")


def run_baseline(params: Params, paths: BaselinePaths, recognizers: list[str], log_metrics=lambda figures: None) -> dict:
    """The baseline stage: each recognizer on the real aligned faces; writes their thresholds τ and
    returns the figures (without timings, which go to `log_metrics` and the log)."""
    cfg = params.baseline
    device = resolve_device(cfg.device)
    index_rows = read_index(paths.aligned / "index.csv")
    split_rows = read_index(paths.split)
    results = {}
    for name in recognizers:
        # SFace's fast form (batch norms folded: equal to float rounding, ~2.5x faster on a CPU), the form
        # train, evaluate and the CLI run, so τ belongs to the network they use.
        recognizer = build_recognizer(name, device, params.models.weights, fast=True)
        results[name] = evaluate_recognizer(recognizer, paths.aligned, index_rows, split_rows, paths.pairs,
                                            cfg.batch_size, device, cfg.seed)
        log_metrics({name: results[name]})
        # How fast this machine was is the run's, not the result's: MLflow and the log, not the metrics.
        ms = results[name].pop("ms_per_image")
        lfw, test = results[name]["lfw_pairs"], results[name]["test_split"]
        print(f"{name}: LFW pairs.txt acc {lfw.get('accuracy', float('nan')):.4f} "
              f"± {lfw.get('accuracy_std', float('nan')):.4f}, AUC {lfw.get('auc', float('nan')):.4f}, "
              f"EER {lfw.get('eer', float('nan')):.4f} ({lfw['pairs']} pairs); "
              f"test split EER {test.get('eer', float('nan')):.4f} ({test['pairs']} pairs); {ms:.1f} ms/image")
    write_thresholds(paths.thresholds, results)
    return results
