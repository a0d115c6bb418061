"""DVC stage `export`: the projector and the generator as the one model file users need (`ivfg` CLI)."""
import argparse
from pathlib import Path

from ivfg.stage import run_main
from ivfg.tracking import stage_run
from ivfg.virtual import export_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--projector", type=Path, default=Path("models/projector.pt"))
    parser.add_argument("--generator", type=Path, default=Path("models/generator.pt"))
    parser.add_argument("--out", type=Path, default=Path("models/ivfg.pt"))
    args = parser.parse_args()
    with stage_run("export", params={}) as run:  # no params: the hash of none
        info = export_model(args.out, args.projector, args.generator)
        run.log_params(info)
        run.log_artifact(args.out)
    print(f"wrote {args.out}: {info['key_bits']}-bit keys, encoder {info['encoder']}, "
          f"{info['resolution']}x{info['resolution']} faces")


if __name__ == "__main__":
    run_main("export", main)
