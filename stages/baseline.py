"""DVC stage `baseline`: verification on real aligned LFW faces (paper Table 1, "Original")."""
import argparse
from pathlib import Path

from ivfg.stage import run_main
from ivfg.config import load_params
from ivfg.data.files import read_index, write_thresholds
from ivfg.device import resolve_device
from ivfg.evaluation.baseline import evaluate_recognizer
from ivfg.models.registry import build_recognizer
from ivfg.tracking import stage_run, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--aligned", default="data/aligned")
    parser.add_argument("--split", default="data/split.csv")
    parser.add_argument("--pairs", default="data/raw/lfw/pairs.txt")
    parser.add_argument("--metrics", default="metrics/baseline.json")
    parser.add_argument("--thresholds", type=Path, default=Path("models/thresholds"))
    parser.add_argument("--recognizers", nargs="*", help="override baseline.recognizers")
    args = parser.parse_args()
    params = load_params(args.params)
    cfg = params.baseline
    device = resolve_device(cfg.device)
    aligned = Path(args.aligned)
    index_rows = read_index(aligned / "index.csv")
    split_rows = read_index(Path(args.split))
    results = {}
    tracked = {"baseline": cfg.model_dump(mode="json"), "models": {"weights": params.models.weights}}
    with stage_run("baseline", params=tracked) as run:
        for name in args.recognizers or cfg.recognizers:
            # SFace's fast form (batch norms folded: equal to float rounding, ~2.5x faster on a CPU), the form
            # train, evaluate and the CLI run, so τ belongs to the network they use.
            recognizer = build_recognizer(name, device, params.models.weights, fast=True)
            results[name] = evaluate_recognizer(recognizer, aligned, index_rows, split_rows, Path(args.pairs),
                                                cfg.batch_size, device, cfg.seed)
            run.log_metrics({name: results[name]})
            # How fast this machine was is the run's, not the result's: MLflow and the log, not the metrics.
            ms = results[name].pop("ms_per_image")
            lfw, test = results[name]["lfw_pairs"], results[name]["test_split"]
            print(f"{name}: LFW pairs.txt acc {lfw.get('accuracy', float('nan')):.4f} "
                  f"± {lfw.get('accuracy_std', float('nan')):.4f}, AUC {lfw.get('auc', float('nan')):.4f}, "
                  f"EER {lfw.get('eer', float('nan')):.4f} ({lfw['pairs']} pairs); "
                  f"test split EER {test.get('eer', float('nan')):.4f} ({test['pairs']} pairs); {ms:.1f} ms/image")
    write_thresholds(args.thresholds, results)
    write_metrics(args.metrics, results)


if __name__ == "__main__":
    run_main("baseline", main)
