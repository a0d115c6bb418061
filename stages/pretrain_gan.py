"""DVC stage `pretrain_gan`: progressive StyleGAN v1 (no noise) on the training identities; resumes."""
import argparse

from ivfg.config import load_params
from ivfg.gan.pipeline import GanPaths, pretrain_generator
from ivfg.stage import add_path_arguments, paths_from, run_main
from ivfg.tracking import write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    add_path_arguments(parser, GanPaths)
    parser.add_argument("--metrics", default="metrics/pretrain_gan.json")
    parser.add_argument("--stop-after-steps", type=int, help="stop (with a checkpoint) after this many steps")
    args = parser.parse_args()
    figures = pretrain_generator(load_params(args.params), paths_from(args, GanPaths), args.stop_after_steps)
    if figures is not None:
        write_metrics(args.metrics, figures)


if __name__ == "__main__":
    run_main("pretrain_gan", main)
