"""DVC stage `train`: the latent projector P on the training triplets (paper Algorithm 1); resumes."""
import argparse

from ivfg.stage import add_path_arguments, paths_from, run_main
from ivfg.config import load_params
from ivfg.projector.pipeline import TrainPaths, interrupted_run_id, train_projector
from ivfg.tracking import stage_run, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    add_path_arguments(parser, TrainPaths)
    parser.add_argument("--metrics", default="metrics/train.json")
    parser.add_argument("--stop-after-steps", type=int, help="stop (with a checkpoint) after this many steps")
    args = parser.parse_args()
    params = load_params(args.params)
    paths = paths_from(args, TrainPaths)
    tracked = {"train": params.train.model_dump(mode="json"), "models": params.models.model_dump(mode="json")}
    with stage_run("train", params=tracked, resume_id=interrupted_run_id(paths)) as run:
        figures = train_projector(params, paths, run, args.stop_after_steps)
    if figures:
        write_metrics(args.metrics, figures)


if __name__ == "__main__":
    run_main("train", main)
