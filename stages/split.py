"""DVC stage `split`: identity-disjoint train/val/test assignment of the aligned images."""
import argparse
from pathlib import Path

from ivfg.stage import run_main
from ivfg.config import load_params
from ivfg.data.files import read_index, write_csv
from ivfg.data.split import split_index
from ivfg.tracking import stage_run, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--index", default="data/aligned/index.csv")
    parser.add_argument("--out", default="data/split.csv")
    parser.add_argument("--metrics", default="metrics/split.json")
    args = parser.parse_args()
    cfg = load_params(args.params).split
    with stage_run("split", params={"split": cfg.model_dump(mode="json")}) as run:
        rows, figures = split_index(read_index(Path(args.index)), cfg)
        write_csv(Path(args.out), ["image", "identity", "split"], rows)
        run.log_metrics(figures)
    write_metrics(args.metrics, figures)


if __name__ == "__main__":
    run_main("split", main)
