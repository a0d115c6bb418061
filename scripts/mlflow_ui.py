"""`mlflow ui` on the project's store, with the link that opens the experiment on its runs table.

MLflow 3.17's UI opens every experiment on a GenAI overview unless the link (or the switch at its top
left, which the browser then remembers) asks for "Model training"; this prints such a link first.

    python scripts/mlflow_ui.py [--port 5000] [--host 127.0.0.1]      (or: make mlflow-ui)
"""
import argparse
import os
import sys

from ivfg.tracking import experiment_id, tracking_uri, ui_link


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    uri = tracking_uri()
    print(f"open {ui_link(f'http://{args.host}:{args.port}', experiment_id(uri))}", flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                              "--host", args.host, "--port", str(args.port)])


if __name__ == "__main__":
    main()
