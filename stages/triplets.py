"""DVC stage `triplets`: (x1, x2, y) triplets for each split."""
import argparse

from ivfg.config import load_params
from ivfg.data.triplets import TripletsPaths, write_triplets
from ivfg.stage import add_path_arguments, paths_from, run_main
from ivfg.tracking import stage_run, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    add_path_arguments(parser, TripletsPaths)
    parser.add_argument("--metrics", default="metrics/triplets.json")
    args = parser.parse_args()
    cfg = load_params(args.params).triplets
    with stage_run("triplets", params={"triplets": cfg.model_dump(mode="json")}) as run:
        figures = write_triplets(cfg, paths_from(args, TripletsPaths))
        run.log_metrics(figures)
    write_metrics(args.metrics, figures)


if __name__ == "__main__":
    run_main("triplets", main)
