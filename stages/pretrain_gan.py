"""DVC stage `pretrain_gan`: progressive StyleGAN v1 (no noise) on the training identities; resumes."""
import argparse
import contextlib
import os
import time
from pathlib import Path

from PIL import Image

from ivfg.stage import run_main
from ivfg.config import ConfigError, load_params
from ivfg.data.files import eer_threshold, write_csv
from ivfg.gan.data import load_training_images
from ivfg.gan.distributed import init_from_env
from ivfg.gan.metrics import GanEvaluator
from ivfg.gan.training import GanTrainer
from ivfg.models.registry import build_inception, build_recognizer
from ivfg.tracking import StageRun, read_run_id, remember_run, stage_run, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--aligned", type=Path, default=Path("data/aligned"))
    parser.add_argument("--split", type=Path, default=Path("data/split.csv"))
    parser.add_argument("--thresholds", type=Path, default=Path("models/thresholds"))
    parser.add_argument("--run-dir", type=Path, default=Path("runs/pretrain_gan"))
    parser.add_argument("--out", type=Path, default=Path("models/generator.pt"))
    parser.add_argument("--metrics", default="metrics/pretrain_gan.json")
    parser.add_argument("--plots", type=Path, default=Path("plots/pretrain_gan.csv"))
    parser.add_argument("--stop-after-steps", type=int, help="stop (with a checkpoint) after this many steps")
    args = parser.parse_args()
    params = load_params(args.params)
    cfg = params.pretrain_gan
    if cfg is None:
        raise ConfigError(f"{args.params} has no pretrain_gan section")
    # Under `torchrun --nproc_per_node N stages/pretrain_gan.py` each process trains on its own device;
    # process 0 alone evaluates, writes and logs.
    ranks, device = init_from_env(cfg.device)
    threshold = eer_threshold(args.thresholds, params.models.eval_recognizer)
    images = load_training_images(args.aligned, args.split, cfg.resolution)
    evaluator = None
    if ranks.main:
        evaluator = GanEvaluator(images, build_inception(device, params.models.weights),
                                 build_recognizer(params.models.eval_recognizer, device, params.models.weights),
                                 threshold, cfg.fid_samples, cfg.diversity_pairs, device, cfg.seed,
                                 fid_dims=tuple(cfg.fid_dims))
    start = time.perf_counter()
    # The MLflow run of an interrupted training (its id is removed once the generator is exported).
    run_id_file = args.run_dir / "mlflow_run_id"
    tracked = {"pretrain_gan": cfg.model_dump(mode="json"),
               "models": {"eval_recognizer": params.models.eval_recognizer, "weights": params.models.weights}}
    run_context = stage_run("pretrain_gan", params=tracked, resume_id=read_run_id(run_id_file))
    with run_context if ranks.main else contextlib.nullcontext(StageRun(None)) as run:
        if ranks.main:
            remember_run(run, run_id_file)
        run.log_params({"eval_threshold": threshold,
                        "train_images": len(images), "device": str(device), "processes": ranks.world})
        trainer = GanTrainer(cfg, images, args.run_dir, device, log_metrics=run.log_metrics, evaluate=evaluator,
                             log_image=lambda path, shown: run.log_image(Image.open(path).convert("RGB"), "samples", step=shown),
                             ranks=ranks)
        trainer.resume(allow_code_change=os.environ.get("IVFG_RESUME_CHANGED_CODE") == "1",
                       allow_settings_change=os.environ.get("IVFG_RESUME_CHANGED_SETTINGS") == "1")
        trainer.train(stop_after_steps=args.stop_after_steps)
        run.log_metrics({"session_seconds": trainer.session_seconds()}, trainer.shown)
        if trainer.shown < trainer.schedule.total:
            print(f"stopped at {trainer.shown / 1000:.1f} of {trainer.schedule.total / 1000:.1f} kimg; "
                  "rerun to resume")
            return
        if not ranks.main:
            return
        trainer.export(args.out)
        run.log_artifact(args.out)
        run_id_file.unlink(missing_ok=True)
    final = trainer.history[-1] if trainer.history else {}
    # Timings go to the log and MLflow, never into the metrics or the checkpoint: a rerun writes the same files.
    write_metrics(args.metrics, {**final, "train_images": len(images), "kimg": trainer.shown / 1000})
    print(f"pretrain_gan: {trainer.session_seconds():.0f} s of training in this session, "
          f"{time.perf_counter() - start:.0f} s in all")
    keys = ["kimg", "resolution", "alpha", "fid192", "fid2048", "identity_diversity", "real_identity_diversity"]
    write_csv(args.plots, keys, trainer.history)

if __name__ == "__main__":
    run_main("pretrain_gan", main)
