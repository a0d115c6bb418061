"""The `pretrain_gan` stage's work, from files to files: train the generator on the training split's
aligned faces (resuming the run directory's checkpoint), export it, and return the final figures.

Under `torchrun --nproc_per_node N stages/pretrain_gan.py` each process trains on its own device and
process 0 alone evaluates, writes and logs (the others get a StageRun that logs nothing)."""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ivfg.config import ConfigError, Params
from ivfg.data.files import eer_threshold, write_csv
from ivfg.gan.data import load_training_images
from ivfg.gan.distributed import init_from_env
from ivfg.gan.metrics import GanEvaluator
from ivfg.gan.training import GanTrainer
from ivfg.models.registry import build_inception, build_recognizer
from ivfg.tracking import StageRun, read_run_id, remember_run, stage_run

PLOT_COLUMNS = ["kimg", "resolution", "alpha", "fid192", "fid2048", "identity_diversity", "real_identity_diversity"]


@dataclass(frozen=True)
class GanPaths:
    aligned: Path = Path("data/aligned")
    split: Path = Path("data/split.csv")
    thresholds: Path = Path("models/thresholds")
    run_dir: Path = Path("runs/pretrain_gan")
    out: Path = Path("models/generator.pt")
    plots: Path = Path("plots/pretrain_gan.csv")


def pretrain_generator(params: Params, paths: GanPaths, stop_after_steps: int | None = None) -> dict | None:
    """Train (or resume) and export the generator; its final figures for the metrics file, or None when
    stopped early or in a process other than the first."""
    cfg = params.pretrain_gan
    if cfg is None:
        raise ConfigError("params.yaml has no pretrain_gan section")
    ranks, device = init_from_env(cfg.device)
    threshold = eer_threshold(paths.thresholds, params.models.eval_recognizer)
    images = load_training_images(paths.aligned, paths.split, cfg.resolution)
    evaluator = None
    if ranks.main:
        evaluator = GanEvaluator(images, build_inception(device, params.models.weights),
                                 build_recognizer(params.models.eval_recognizer, device, params.models.weights),
                                 threshold, cfg.fid_samples, cfg.diversity_pairs, device, cfg.seed,
                                 fid_dims=tuple(cfg.fid_dims))
    start = time.perf_counter()
    # The MLflow run of an interrupted training (its id is removed once the generator is exported).
    run_id_file = paths.run_dir / "mlflow_run_id"
    tracked = {"pretrain_gan": cfg.model_dump(mode="json"),
               "models": {"eval_recognizer": params.models.eval_recognizer, "weights": params.models.weights}}
    run_context = stage_run("pretrain_gan", params=tracked, resume_id=read_run_id(run_id_file))
    with run_context if ranks.main else contextlib.nullcontext(StageRun(None)) as run:
        if ranks.main:
            remember_run(run, run_id_file)
        run.log_params({"eval_threshold": threshold,
                        "train_images": len(images), "device": str(device), "processes": ranks.world})
        trainer = GanTrainer(cfg, images, paths.run_dir, device, log_metrics=run.log_metrics, evaluate=evaluator,
                             log_image=lambda path, shown: run.log_image(Image.open(path).convert("RGB"), "samples",
                                                                         step=shown),
                             ranks=ranks)
        trainer.resume(allow_code_change=os.environ.get("IVFG_RESUME_CHANGED_CODE") == "1",
                       allow_settings_change=os.environ.get("IVFG_RESUME_CHANGED_SETTINGS") == "1")
        trainer.train(stop_after_steps=stop_after_steps)
        run.log_metrics({"session_seconds": trainer.session_seconds()}, trainer.shown)
        if trainer.shown < trainer.schedule.total:
            print(f"stopped at {trainer.shown / 1000:.1f} of {trainer.schedule.total / 1000:.1f} kimg; "
                  "rerun to resume")
            return None
        if not ranks.main:
            return None
        trainer.export(paths.out)
        run.log_artifact(paths.out)
        run_id_file.unlink(missing_ok=True)
    print(f"pretrain_gan: {trainer.session_seconds():.0f} s of training in this session, "
          f"{time.perf_counter() - start:.0f} s in all")
    write_csv(paths.plots, PLOT_COLUMNS, trainer.history)
    # Timings go to the log and MLflow, never into the metrics or the checkpoint: a rerun writes the same files.
    final = trainer.history[-1] if trainer.history else {}
    return {**final, "train_images": len(images), "kimg": trainer.shown / 1000}
