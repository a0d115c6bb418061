"""The evaluation stages' work, from files to files: T(x, k) from the trained model on the LFW test faces
(`evaluate`: every metric of the paper and the attacks it leaves out) or on aligned CelebA faces
(`evaluate_celeba`: Table 2), its figures, and a table beside the paper's."""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ivfg.config import AlignConfig, ConfigError, EvaluateConfig, Params
from ivfg.data.align import FaceAligner
from ivfg.data.files import eer_threshold, load_faces, read_index, read_split, write_csv
from ivfg.device import autocast_for, resolve_device, uses_bf16
from ivfg.errors import InputError
from ivfg.evaluation import figures as fig
from ivfg.evaluation.facesets import FaceSets
from ivfg.evaluation.metrics import METRICS, AttackSettings, run_metrics
from ivfg.evaluation.obfuscation import GaussianBlur, Pixelization
from ivfg.evaluation.paper import CELEBA_ROWS, LFW_ROWS, comparison_table
from ivfg.evaluation.verification import pair_metrics
from ivfg.fileio import atomic_path, write_text
from ivfg.models.registry import build_inception, build_recognizer
from ivfg.tracking import StageRun
from ivfg.virtual import VirtualFaces, load_model

log = logging.getLogger(__name__)


# Table 2 on CelebA: verification inside each set, protection and diversity.
CELEBA_METRICS = ["original", "set_a", "set_b", "protection", "diversity"]


@dataclass(frozen=True)
class EvaluatePaths:
    aligned: Path = Path("data/aligned")
    split: Path = Path("data/split.csv")
    thresholds: Path = Path("models/thresholds")
    model: Path = Path("models/ivfg.pt")  # the export stage's file: what users run is what is measured
    plots: Path = Path("plots/evaluate")
    report: Path = Path("reports/evaluate.md")
    cache: Path = Path("runs/evaluate")  # measurements of the sets no key touches, reused by later runs


def recognizer_role(cfg: EvaluateConfig, train_recognizer: str) -> str:
    """'evaluation', or 'training' where the evaluator is the recognizer P was trained against (refused
    unless forced: its figures show what training optimised, not what an independent system sees)."""
    if cfg.recognizer != train_recognizer:
        return "evaluation"
    if not cfg.allow_train_recognizer:
        raise ConfigError(f"evaluate.recognizer '{cfg.recognizer}' is the recognizer the projector was trained "
                          "against (models.train_recognizer): its figures are not independent. Choose another, "
                          "or set evaluate.allow_train_recognizer: true to see what the training recognizer believes")
    return "training"


def choose_faces(rows: list[dict[str, str]], max_images: int | None, seed: int) -> list[dict[str, str]]:
    """All rows, or whole identities in a seeded order until `max_images` (pairs stay within a person)."""
    if max_images is None or len(rows) <= max_images:
        return rows
    sizes = Counter(r["identity"] for r in rows)
    identities = sorted(sizes)
    chosen: set[str] = set()
    count = 0
    for k in np.random.default_rng(seed).permutation(len(identities)):
        if count + sizes[identities[k]] <= max_images:
            chosen.add(identities[k])
            count += sizes[identities[k]]
    return [r for r in rows if r["identity"] in chosen]


def build_face_sets(cfg: EvaluateConfig, virtual: VirtualFaces, faces: torch.Tensor, identities: list[str],
                    threshold: float, device: torch.device, weights: dict, cache: Path | None = None) -> FaceSets:
    """The sets with the evaluation recognizer (fp32), Inception, MTCNN at its default thresholds and
    the two baselines."""
    recognizer = build_recognizer(cfg.recognizer, device, weights)
    baselines = {"pixelization": Pixelization(cfg.pixel_size), "blur": GaussianBlur(cfg.blur_kernel, cfg.blur_sigma)}
    return FaceSets(faces, identities, virtual, recognizer, threshold, cfg.seed, device, baselines,
                    inception=build_inception(device, weights), detector=FaceAligner(AlignConfig(device=str(device))),
                    fid_dims=tuple(cfg.fid_dims), batch=cfg.batch, autocast=autocast_for(cfg, device),
                    precision="bf16" if uses_bf16(cfg.amp, device) else "fp32", cache_dir=cache,
                    virtual_threshold=stored_threshold(virtual, cfg.recognizer, "virtual_threshold"),
                    one_key_threshold=stored_threshold(virtual, cfg.recognizer, "one_key_threshold"))


def stored_threshold(virtual: VirtualFaces, recognizer: str, field: str) -> float | None:
    """A threshold the train stage calibrated on virtual validation faces and stored in the model under
    `field` (τ_v: 'virtual_threshold', τ_1: 'one_key_threshold'), if it did so for this recognizer."""
    info = virtual.model_info
    if info.get(field) is None or info.get("eval_recognizer") != recognizer:
        return None
    return float(info[field])


def evaluate_sets(sets: FaceSets, cfg: EvaluateConfig, attacker) -> dict:
    """Every registered metric, summarised over `cfg.repeats` draws of keys."""
    attack = AttackSettings(attacker, cfg.attack_targets, cfg.attack_budget, autocast_for(cfg, sets.device))
    return run_metrics(sets, list(METRICS), cfg.repeats, attack=attack)


def write_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], directory: Path) -> list[Path]:
    """One CSV per curve (fpr, tpr), for `dvc plots`."""
    written = []
    for name, (fpr, tpr) in curves.items():
        path = directory / "roc" / f"{name}.csv"
        write_csv(path, ["fpr", "tpr"], ([f"{f:.6g}", f"{t:.6g}"] for f, t in zip(fpr, tpr)))
        written.append(path)
    return written


def save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="png")


def draw_figures(sets: FaceSets, cfg: EvaluateConfig, directory: Path, label: str, run: StageRun,
                 all_figures: bool = True) -> dict:
    """Fig. 3-6 and the ROC curves as PNG (and CSV for the curves), logged to the MLflow run; without
    `all_figures`, the original/virtual grid and the ROC only."""
    save_png(fig.identity_grid(sets, cfg.grid_identities, cfg.seed), directory / "identity_grid.png")
    curves = {name: fig.set_roc(sets, name) for name in ("original", "set_a", "set_b")}
    csvs = write_roc(curves, directory)
    fig.roc_png({"Original": curves["original"], "Set-A": curves["set_a"], "Set-B": curves["set_b"]},
                directory / "roc.png", f"{label}: verification inside each set")
    people = 0
    if all_figures:
        save_png(fig.key_grid(sets, min(4, cfg.grid_identities), 8, cfg.seed), directory / "key_grid.png")
        people = fig.tsne_png(sets, cfg.tsne_identities, directory / "tsne.png", cfg.seed,
                              f"{label}: colour = person, marker = key", cfg.repeats)
    for path in [*(directory / n for n in ("identity_grid.png", "key_grid.png", "roc.png", "tsne.png")), *csvs]:
        if path.is_file():
            run.log_artifact(path, "figures" if path.suffix == ".png" else "figures/roc")
    return {"tsne_identities": people}


def originals_threshold(sets: FaceSets) -> float:
    """τ for a dataset without a baseline stage: the EER threshold over every pair of its originals."""
    figures = pair_metrics(sets.recognizer, sets.embeddings("original"), sets.labels, 0.0)
    if "eer_threshold" not in figures:
        raise InputError("the faces give no same-person and different-person pairs to set τ on")
    return float(figures["eer_threshold"])


def dataset_rows(paths: EvaluatePaths, dataset: str, cfg: EvaluateConfig) -> list[dict[str, str]]:
    """LFW: the test split's faces; CelebA: every face its alignment kept."""
    if dataset == "lfw":
        rows, source = read_split(paths.split)["test"], paths.split
    else:
        source = paths.aligned / "index.csv"
        if not source.is_file():
            raise InputError(f"{source} is missing: run the celeba_align stage first (dvc repro celeba_align)")
        rows = read_index(source)
    rows = choose_faces(rows, cfg.max_images, cfg.seed)
    if len({r["identity"] for r in rows}) < 2:
        raise InputError(f"{source}: needs faces of at least two identities to evaluate on")
    return rows


def evaluate_model(params: Params, paths: EvaluatePaths, run: StageRun, dataset: str = "lfw") -> dict:
    """The stage: returns the figures written to its metrics file."""
    if dataset not in ("lfw", "celeba"):
        raise InputError(f"unknown dataset '{dataset}': lfw or celeba")
    cfg, models = params.evaluate, params.models
    role = recognizer_role(cfg, models.train_recognizer)
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    # E's fast form: equal to float rounding, twice as fast; it runs on every original and virtual face.
    virtual = load_model(paths.model, device, models.weights, fast=True)
    rows = dataset_rows(paths, dataset, cfg)
    faces = load_faces(paths.aligned, [r["image"] for r in rows])
    threshold = eer_threshold(paths.thresholds, cfg.recognizer) if dataset == "lfw" else float("nan")
    sets = build_face_sets(cfg, virtual, faces, [r["identity"] for r in rows], threshold, device, models.weights,
                           paths.cache)
    if dataset == "celeba":
        sets.threshold = threshold = originals_threshold(sets)
    name = "LFW test" if dataset == "lfw" else "CelebA"
    label = f"{name}, {cfg.recognizer}" + (" (the training recognizer)" if role == "training" else "")
    run.log_params({"threshold": threshold, "faces": len(rows),
                    "dataset": dataset, "recognizer_role": role, "key_bits": virtual.key_bits, "device": str(device)})

    if dataset == "lfw":
        attacker = build_recognizer(virtual.model_info.get("encoder", models.encoder), device, models.weights,
                                    fast=True)
        results = evaluate_sets(sets, cfg, attacker)
    else:
        results = run_metrics(sets, CELEBA_METRICS, cfg.repeats)
    with sets.timed("figures"):
        extra = draw_figures(sets, cfg, paths.plots, label, run, all_figures=dataset == "lfw")
    figures = {"dataset": dataset, "recognizer": cfg.recognizer, "recognizer_role": role, "threshold": threshold,
               "key_bits": virtual.key_bits, "repeats": cfg.repeats, "faces": len(rows),
               "identities": len(sets.identities), **results, **extra}
    heading = f"{label}: this run against the paper" + \
        (" — NOT an independent evaluation: this recognizer trained P" if role == "training" else "")
    table_rows = LFW_ROWS if dataset == "lfw" else CELEBA_ROWS
    write_text(paths.report, comparison_table(figures, table_rows, virtual.key_bits, cfg.repeats, heading))
    run.log_artifact(paths.report)
    # Timings go to MLflow and the log only: the metrics file must be the same on a rerun.
    seconds = {**{k: round(v, 1) for k, v in sets.seconds.items()}, "total": round(time.perf_counter() - start, 1)}
    run.log_metrics({k: v for k, v in figures.items() if k not in ("dataset", "recognizer", "recognizer_role")})
    run.log_metrics({"seconds": seconds})
    print("evaluate: seconds " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    return figures
