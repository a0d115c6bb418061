"""The `train` stage's work, from files to files: build T(x, k) on the pretrained generator, train P on
the training triplets with an end-of-epoch validation check, and write P with w-bar as one model."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ivfg.config import AlignConfig, ConfigError, ModelsConfig, Params, TrainConfig
from ivfg.data.align import FaceAligner
from ivfg.data.files import eer_threshold, load_faces, read_split, read_triplets, write_csv
from ivfg.device import resolve_device
from ivfg.errors import InputError
from ivfg.fileio import atomic_path, sha256_file
from ivfg.gan.export import load_generator
from ivfg.models.recognizers import MirrorAveraged, Recognizer
from ivfg.models.registry import build_recognizer
from ivfg.projector.data import discriminant_directions, frozen_embeddings, identity_indices, index_triplets
from ivfg.projector.network import Projector
from ivfg.projector.training import ProjectorTrainer, training_settings
from ivfg.projector.validation import ValidationCheck, calibrate_virtual_threshold, choose_validation_faces
from ivfg.tracking import StageRun, read_run_id, remember_run
from ivfg.virtual import VirtualFaces, save_projector

log = logging.getLogger(__name__)
# The loss curve as DVC plots it; the steps/s of each window is a timing and goes to MLflow only.
CURVE_COLUMNS = ["step", "epoch", "pri", "con", "intra", "inter", "reg", "total"]


@dataclass(frozen=True)
class TrainPaths:
    aligned: Path = Path("data/aligned")
    split: Path = Path("data/split.csv")
    triplets: Path = Path("data/triplets/train.csv")
    generator: Path = Path("models/generator.pt")
    thresholds: Path = Path("models/thresholds")
    run_dir: Path = Path("runs/train")
    out: Path = Path("models/projector.pt")
    plots: Path = Path("plots/train.csv")
    val_plots: Path = Path("plots/train_val.csv")


def encoders(cfg: TrainConfig, models: ModelsConfig, device: torch.device) -> tuple[Recognizer, Recognizer]:
    """E for the training faces' embeddings, and E as T(x, k) runs it (the validation checks, τ_v, the model
    file), in their fast form: `train.encoder_mirror` says which of them read each face with its mirror image."""
    training = build_recognizer(models.encoder, device, models.weights, fast=True,
                                mirror=cfg.encoder_mirror == "both")
    return training, MirrorAveraged(training).freeze() if cfg.encoder_mirror == "inference" else training


def untrained_virtual_faces(cfg: TrainConfig, encoder, generator, device: torch.device,
                            input_projection: tuple[torch.Tensor, torch.Tensor] | None = None) -> VirtualFaces:
    """T(x, k) with a freshly seeded P that starts at the generator's w-bar; `input_projection` (mean,
    directions) is what P reads E(x) through when `train.lda_dims` is set."""
    torch.manual_seed(cfg.seed)
    projector = Projector(encoder.embedding_dim, cfg.key_bits, generator.style_dim, cfg.hidden_layers,
                          cfg.hidden_dim, cfg.latent_space, cfg.key_input, cfg.lda_dims)
    projector.w_avg.copy_(generator.w_avg.cpu())
    if cfg.lda_dims is not None:
        projector.set_input_projection(*input_projection)
    return VirtualFaces(encoder, projector.to(device), generator, cfg.truncation_psi)


def interrupted_run_id(paths: TrainPaths) -> str | None:
    """The MLflow run of an interrupted training in the run directory, to continue it on resume."""
    checkpoint = paths.run_dir / "checkpoint.pt"
    if not checkpoint.is_file() or torch.load(checkpoint, map_location="cpu", weights_only=False)["finished"]:
        return None
    return read_run_id(paths.run_dir / "mlflow_run_id")


def check_recognizers(params: Params) -> None:
    models = params.models
    if models.train_recognizer == models.eval_recognizer:
        raise ConfigError(f"models.train_recognizer and models.eval_recognizer are both '{models.eval_recognizer}': "
                          "the evaluation recognizer must never see training; choose another for one of them")


def train_projector(params: Params, paths: TrainPaths, run: StageRun, stop_after_steps: int | None = None) -> dict:
    """Train P (resuming the run directory's checkpoint) and export it; returns the stage's figures,
    or {} when stopped early."""
    cfg, models = params.train, params.models
    check_recognizers(params)
    device = resolve_device(cfg.device)
    threshold = eer_threshold(paths.thresholds, models.eval_recognizer)
    generator = load_generator(paths.generator, device)

    # Both in their fast form (equal up to float rounding, about twice as fast on a CPU): R runs forward and
    # backward four times per triplet, and E's is the form evaluate and the CLI run, so P learns from the same E(x).
    train_encoder, encoder = encoders(cfg, models, device)
    recognizer = build_recognizer(models.train_recognizer, device, models.weights, fast=True)
    evaluator = build_recognizer(models.eval_recognizer, device, models.weights)
    if not recognizer.differentiable:
        raise ConfigError(f"models.train_recognizer '{models.train_recognizer}' is not differentiable")

    images, table = index_triplets(read_triplets(paths.triplets))
    cache = paths.run_dir / "embeddings"
    enc_emb = frozen_embeddings(train_encoder, paths.aligned, images, 32, device, cache)
    # R(x) of the real faces: E's when they are one network (averaged with the mirror image's when E's is:
    # the better estimate of whom the real face shows).
    rec_emb = enc_emb if models.train_recognizer == models.encoder else \
        frozen_embeddings(recognizer, paths.aligned, images, 32, device, cache)
    val_rows = choose_validation_faces(read_split(paths.split)["val"], cfg.val_images, cfg.seed)
    if len({r["identity"] for r in val_rows}) < 2:
        raise InputError(f"{paths.split}: the validation split needs two identities with two or more images")
    val_images = [r["image"] for r in val_rows]
    check = ValidationCheck(load_faces(paths.aligned, val_images), [r["identity"] for r in val_rows],
                            frozen_embeddings(encoder, paths.aligned, val_images, 32, device, cache),
                            evaluator, threshold, cfg.key_bits, cfg.seed, cfg.grid_identities,
                            detector=FaceAligner(AlignConfig(device=str(device))))  # as evaluate detects

    identities = identity_indices(images)
    projection = None if cfg.lda_dims is None else discriminant_directions(enc_emb, identities, cfg.lda_dims)
    virtual = untrained_virtual_faces(cfg, encoder, generator, device, projection)
    settings = training_settings(cfg, encoder=models.encoder, train_recognizer=models.train_recognizer,
                                 generator=sha256_file(paths.generator), triplets=sha256_file(paths.triplets))

    def end_of_epoch(epoch: int) -> dict:
        virtual.eval()
        figures = check(virtual)
        grid = (check.grid(virtual).permute(1, 2, 0).mul(255).round().byte().numpy())
        sample = paths.run_dir / "samples" / f"epoch{epoch:03d}.png"
        sample.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(sample) as tmp:
            Image.fromarray(grid).save(tmp, format="png")
        run.log_image(grid, key="samples", step=epoch)
        virtual.projector.train()
        log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.3f}" for k, v in figures.items()
                                                   if isinstance(v, float)))
        return figures

    run.log_params({"eval_threshold": threshold, "train_triplets": len(table), "train_faces": len(images),
                    "val_faces": len(val_rows), "device": str(device)})
    trainer = ProjectorTrainer(cfg, virtual, recognizer, enc_emb, rec_emb, table, paths.run_dir, device, settings,
                               log_metrics=run.log_metrics, end_of_epoch=end_of_epoch,
                               identities=identities)
    trainer.resume()
    remember_run(run, paths.run_dir / "mlflow_run_id")
    trainer.train(stop_after_steps=stop_after_steps)
    if not trainer.finished:
        print(f"stopped at epoch {trainer.epoch} of {cfg.epochs}, step {trainer.steps}; rerun to resume")
        return {}

    trainer.keep_averaged_weights()
    virtual.eval()
    val_all = read_split(paths.split)["val"]
    calibration = calibrate_virtual_threshold(
        virtual, frozen_embeddings(encoder, paths.aligned, [r["image"] for r in val_all], 32, device, cache),
        [r["identity"] for r in val_all], evaluator, cfg.seed)
    log.info("τ_v %.4f (EER %.4f over %d virtual validation faces), τ_1 %.4f (Set-B EER %.4f over %d keys)",
             calibration["threshold"], calibration["eer"], calibration["faces"], calibration["one_key_threshold"],
             calibration["set_b_eer"], calibration["one_key_draws"])
    save_projector(paths.out, trainer.projector, models.encoder, models.train_recognizer,
                   eval_recognizer=models.eval_recognizer, eval_threshold=threshold,
                   virtual_threshold=calibration["threshold"], one_key_threshold=calibration["one_key_threshold"],
                   encoder_mirror=cfg.encoder_mirror != "none", truncation_psi=cfg.truncation_psi,
                   epochs=trainer.epoch, steps=trainer.steps, generator_sha256=settings["generator"])
    run.log_artifact(paths.out)
    # Needed only to continue an interrupted run; a random id would change runs/train's hash on every rerun.
    (paths.run_dir / "mlflow_run_id").unlink(missing_ok=True)
    write_csv(paths.plots, CURVE_COLUMNS, trainer.curve)
    val_columns = list(trainer.validation[-1]) if trainer.validation else ["epoch"]
    write_csv(paths.val_plots, val_columns, trainer.validation)
    final_terms = trainer.curve[-1] if trainer.curve else {}
    # Timings belong to the run (MLflow, the log), not to the metrics file or checkpoint a rerun must reproduce.
    timings = {"train_seconds": trainer.session_seconds,
               "median_steps_per_second": float(np.median(trainer.rates)) if trainer.rates else 0.0}
    run.log_metrics(timings)
    print("train: " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    return {"loss": {k: final_terms.get(k) for k in CURVE_COLUMNS[2:]},
            "validation": trainer.validation[-1] if trainer.validation else {},
            "virtual_threshold": calibration,
            "epochs": trainer.epoch, "steps": trainer.steps, "triplets": len(table),
            "triplets_per_epoch": trainer.per_epoch}
