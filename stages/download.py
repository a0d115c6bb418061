"""DVC stage `download`: LFW images and protocol files into data/raw/lfw."""
import argparse
from pathlib import Path

from ivfg.stage import run_main
from ivfg.config import load_params
from ivfg.data.download import prepare_lfw
from ivfg.tracking import project_root, stage_run, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="data/raw/lfw")
    parser.add_argument("--metrics", default="metrics/download.json")
    args = parser.parse_args()
    cfg = load_params(args.params).download
    with stage_run("download", params={"download": cfg.model_dump(mode="json")}) as run:
        figures = prepare_lfw(cfg, Path(args.out), project_root())
        run.log_metrics(figures)
    write_metrics(args.metrics, figures)


if __name__ == "__main__":
    run_main("download", main)
