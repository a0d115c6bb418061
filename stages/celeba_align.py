"""DVC stage `celeba_align`: CelebA images by identity (identity_CelebA.txt), aligned like LFW (Table 2)."""
import argparse
from pathlib import Path

from ivfg.config import load_params
from ivfg.data.align import RUN_ONLY
from ivfg.data.celeba import prepare_celeba
from ivfg.stage import run_main
from ivfg.tracking import stage_run, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=Path("data/celeba"))
    parser.add_argument("--metrics", default="metrics/celeba_align.json")
    args = parser.parse_args()
    params = load_params(args.params)
    tracked = {"celeba": params.celeba.model_dump(mode="json"), "align": params.align.model_dump(mode="json")}
    with stage_run("celeba_align", params=tracked) as run:
        figures = prepare_celeba(params.celeba, params.align, args.out)
        run.log_metrics(figures)
    print(f"aligned {figures['aligned']} of {figures['images']} CelebA images in {figures['seconds']:.0f} s "
          f"({figures['images_per_second']:.1f} images/s on {figures['device']})")
    write_metrics(args.metrics, {k: v for k, v in figures.items() if k not in RUN_ONLY})


if __name__ == "__main__":
    run_main("celeba_align", main)
