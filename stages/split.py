"""DVC stage `split`: identity-disjoint train/val/test assignment of the aligned images."""
import argparse

from ivfg.config import load_params
from ivfg.data.split import SplitPaths, write_split
from ivfg.stage import add_path_arguments, paths_from, run_main
from ivfg.tracking import stage_run, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    add_path_arguments(parser, SplitPaths)
    parser.add_argument("--metrics", default="metrics/split.json")
    args = parser.parse_args()
    cfg = load_params(args.params).split
    with stage_run("split", params={"split": cfg.model_dump(mode="json")}) as run:
        figures = write_split(cfg, paths_from(args, SplitPaths))
        run.log_metrics(figures)
    write_metrics(args.metrics, figures)


if __name__ == "__main__":
    run_main("split", main)
