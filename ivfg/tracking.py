"""MLflow tracking and DVC metrics files for every stage.

The default store is `sqlite:///<project root>/mlflow.db`. The project root is found from the working
directory so that `dvc exp run --temp` workspaces (under `.dvc/tmp/exps/`) log into the same store as
the main workspace. `MLFLOW_TRACKING_URI` overrides it; `IVFG_TRACKING=off` switches MLflow off
(metrics files are still written).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from ivfg.fileio import write_json

EXPERIMENT = "ivfg"


def project_root(start: str | Path | None = None) -> Path:
    """The nearest ancestor holding `.dvc/`, lifted out of DVC's temporary experiment workspaces."""
    here = Path(start or Path.cwd()).resolve()
    if ".dvc" in here.parts:
        here = Path(*here.parts[: here.parts.index(".dvc")])
    for candidate in (here, *here.parents):
        if (candidate / ".dvc").is_dir():
            return candidate
    return here


def tracking_enabled() -> bool:
    return os.environ.get("IVFG_TRACKING", "on").lower() not in {"off", "0", "false", "no"}


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    else:
        out[prefix] = value


def flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _flatten("", data, out)
    return out


class StageRun:
    """One stage's MLflow run (or a no-op when tracking is off)."""

    def __init__(self, mlflow_module: Any | None):
        self._mlflow = mlflow_module

    @property
    def active(self) -> bool:
        return self._mlflow is not None

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self._mlflow:
            self._mlflow.log_params({k: str(v)[:6000] for k, v in flatten(params).items()})

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if self._mlflow:
            numeric = {k: float(v) for k, v in flatten(metrics).items() if isinstance(v, (int, float))}
            self._mlflow.log_metrics(numeric, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self._mlflow:
            self._mlflow.log_artifact(str(path), artifact_path)

    def log_image(self, image: Any, key: str, step: int) -> None:
        """An image with its step (MLflow's image view steps through them), e.g. a sample grid."""
        if self._mlflow:
            self._mlflow.log_image(image, key=key, step=step)


@contextlib.contextmanager
def stage_run(stage: str, tags: Mapping[str, str] | None = None) -> Iterator[StageRun]:
    if not tracking_enabled():
        yield StageRun(None)
        return
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        artifacts = None
        if uri.startswith("sqlite:///"):
            # Keep artifacts beside the database rather than in whatever directory DVC runs from.
            database = Path(uri[len("sqlite:///"):]).resolve()
            artifacts = (database.parent / "mlartifacts").as_uri()
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=stage, tags={"stage": stage, **(tags or {})}):
        yield StageRun(mlflow)


def write_metrics(path: str | Path, metrics: Mapping[str, Any]) -> None:
    """A DVC metrics file (`dvc metrics show`)."""
    write_json(path, dict(metrics))
