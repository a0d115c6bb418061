"""DVC stage `triplets`: (x1, x2, y) triplets for each split."""
import argparse
from pathlib import Path

from ivfg.stage import run_main
from ivfg.config import load_params
from ivfg.data.files import SPLITS, TRIPLET_COLUMNS, read_split, write_csv
from ivfg.data.triplets import make_triplets
from ivfg.fileio import atomic_dir
from ivfg.tracking import stage_run, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--split", default="data/split.csv")
    parser.add_argument("--out", default="data/triplets")
    parser.add_argument("--metrics", default="metrics/triplets.json")
    args = parser.parse_args()
    cfg = load_params(args.params).triplets
    splits = read_split(Path(args.split))
    figures = {}
    with stage_run("triplets", params={"triplets": cfg.model_dump(mode="json")}) as run, atomic_dir(args.out) as tmp:
        for salt, name in enumerate(SPLITS):
            triplets = make_triplets(splits[name], cfg, salt=salt)
            write_csv(tmp / f"{name}.csv", TRIPLET_COLUMNS, triplets)
            figures[name] = {"triplets": len(triplets), "identities": len({Path(t[0]).parent.name for t in triplets})}
        run.log_metrics(figures)
    write_metrics(args.metrics, figures)


if __name__ == "__main__":
    run_main("triplets", main)
