"""DVC stages `evaluate` (the paper's tables and figures on the LFW test split, and the attacks it leaves
out) and `evaluate_celeba` (Table 2 on aligned CelebA faces: --dataset celeba --aligned data/celeba)."""
import argparse

from ivfg.config import load_params
from ivfg.evaluation.pipeline import EvaluatePaths, evaluate_model
from ivfg.stage import add_path_arguments, paths_from, run_main
from ivfg.tracking import stage_run, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    add_path_arguments(parser, EvaluatePaths)
    parser.add_argument("--dataset", choices=["lfw", "celeba"], default="lfw")
    parser.add_argument("--metrics", default="metrics/evaluate.json")
    args = parser.parse_args()
    params = load_params(args.params)
    paths = paths_from(args, EvaluatePaths)
    tracked = {"evaluate": params.evaluate.model_dump(mode="json"), "models": params.models.model_dump(mode="json")}
    stage = "evaluate" if args.dataset == "lfw" else f"evaluate_{args.dataset}"
    with stage_run(stage, params=tracked) as run:
        figures = evaluate_model(params, paths, run, args.dataset)
    write_metrics(args.metrics, figures)


if __name__ == "__main__":
    run_main("evaluate", main)
