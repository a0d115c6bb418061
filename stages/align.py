"""DVC stage `align`: MTCNN + 5-point alignment of every LFW image into the canonical 128x128 frame."""
import argparse
from pathlib import Path

from ivfg.stage import run_main
from ivfg.config import load_params
from ivfg.data.align import RUN_ONLY, align_directory
from ivfg.tracking import stage_run, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--images", default="data/raw/lfw/images")
    parser.add_argument("--out", default="data/aligned")
    parser.add_argument("--metrics", default="metrics/align.json")
    args = parser.parse_args()
    cfg = load_params(args.params).align
    with stage_run("align", params={"align": cfg.model_dump(mode="json")}) as run:
        figures = align_directory(Path(args.images), Path(args.out), cfg)
        run.log_metrics({k: v for k, v in figures.items() if k != "device"})  # timings included
        run.log_artifact(Path(args.out) / "report.json")
        run.log_artifact(Path(args.out) / "failures.csv")
    print(f"aligned {figures['aligned']} of {figures['images']} images in {figures['seconds']:.0f} s "
          f"({figures['images_per_second']:.1f} images/s on {figures['device']})")
    # The metrics file is a DVC output too: results only, so that a rerun reproduces the lock's hash.
    write_metrics(args.metrics, {k: v for k, v in figures.items() if k not in RUN_ONLY})


if __name__ == "__main__":
    run_main("align", main)
