"""DVC stage `baseline`: verification on real aligned LFW faces (paper Table 1, "Original")."""
import argparse

from ivfg.config import load_params
from ivfg.evaluation.baseline import BaselinePaths, run_baseline
from ivfg.stage import add_path_arguments, paths_from, run_main
from ivfg.tracking import stage_run, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    add_path_arguments(parser, BaselinePaths)
    parser.add_argument("--metrics", default="metrics/baseline.json")
    parser.add_argument("--recognizers", nargs="*", help="override baseline.recognizers")
    args = parser.parse_args()
    params = load_params(args.params)
    tracked = {"baseline": params.baseline.model_dump(mode="json"), "models": {"weights": params.models.weights}}
    with stage_run("baseline", params=tracked) as run:
        results = run_baseline(params, paths_from(args, BaselinePaths), args.recognizers or params.baseline.recognizers,
                               run.log_metrics)
    write_metrics(args.metrics, results)


if __name__ == "__main__":
    run_main("baseline", main)
