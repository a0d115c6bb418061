"""MLflow tracking and DVC metrics files for every stage.

The default store is `sqlite:///<project root>/mlflow.db`. The project root is found from the working
directory so that `dvc exp run --temp` workspaces (under `.dvc/tmp/exps/`) log into the same store as
the main workspace. `MLFLOW_TRACKING_URI` overrides it; `IVFG_TRACKING=off` switches MLflow off
(metrics files are still written).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator, Mapping

from ivfg.config import flatten
from ivfg.fileio import write_json

EXPERIMENT = "ivfg"
# Marks the experiment as model development for the MLflow versions whose UI reads the tag. MLflow 3.17's
# UI ignores it: a GenAI / Model training switch (default GenAI, remembered by the browser) decides, so a
# link must carry `workflowType=machine_learning` to open on the runs table (see `ui_link`).
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def ui_link(base_url: str, experiment_id: str | None) -> str:
    """The MLflow UI page of the experiment's runs table (the experiment list when there is none yet)."""
    base = base_url.rstrip("/")
    if experiment_id is None:
        return f"{base}/#/experiments?workflowType=machine_learning"
    return f"{base}/#/experiments/{experiment_id}?workflowType=machine_learning"


def experiment_id(uri: str | None = None) -> str | None:
    """The id of the project's experiment in the tracking store, or None before any stage has run."""
    import mlflow

    experiment = mlflow.MlflowClient(uri or tracking_uri()).get_experiment_by_name(EXPERIMENT)
    return experiment.experiment_id if experiment else None


def project_root(start: str | Path | None = None) -> Path:
    """The DVC project's root: DVC_ROOT where DVC runs the stage (it points at the main workspace from
    `dvc exp run --temp` too); else the nearest ancestor holding `.dvc/`, lifted out of DVC's
    temporary experiment workspaces."""
    if start is None and os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
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


class StageRun:
    """One stage's MLflow run (or a no-op when tracking is off)."""

    def __init__(self, mlflow_module: Any | None):
        self._mlflow = mlflow_module

    @property
    def active(self) -> bool:
        return self._mlflow is not None

    @property
    def run_id(self) -> str | None:
        return self._mlflow.active_run().info.run_id if self._mlflow else None

    def log_params(self, params: Mapping[str, Any]) -> None:
        if not self._mlflow:
            return
        values = {k: str(v)[:6000] for k, v in flatten(params).items()}
        logged = self._mlflow.active_run().data.params  # a resumed run has them; MLflow refuses changes
        self._mlflow.log_params({k: v for k, v in values.items() if k not in logged})

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


def params_sha256(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def run_tags(stage: str, params: Mapping[str, Any] | None = None) -> dict[str, str]:
    """What ties an MLflow run to DVC: the experiment's name and baseline commit (`dvc exp run` passes
    both to stage commands), the workspace's commit, the stage and a hash of the params it read."""
    tags = {"stage": stage}
    for tag, variable in (("dvc.exp_name", "DVC_EXP_NAME"), ("dvc.baseline_rev", "DVC_EXP_BASELINE_REV")):
        if os.environ.get(variable):
            tags[tag] = os.environ[variable]
    commit = _git_commit()
    if commit:
        tags["git.commit"] = commit
    if params is not None:
        tags["params_sha256"] = params_sha256(params)
    return tags


def read_run_id(path: Path) -> str | None:
    return path.read_text().strip() or None if path.is_file() else None


def remember_run(run: StageRun, path: Path) -> None:
    """Note the run's id in a run directory, so that a rerun after an interruption continues it."""
    if run.run_id:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run.run_id + "\n")


@contextlib.contextmanager
def stage_run(stage: str, tags: Mapping[str, str] | None = None, params: Mapping[str, Any] | None = None,
              resume_id: str | None = None) -> Iterator[StageRun]:
    """An MLflow run for one stage, named after the DVC experiment when there is one ("exp/stage") and
    tagged by `run_tags`; `params` (the sections the stage reads) are logged and hashed into a tag.
    `resume_id` continues an interrupted run of the same stage instead."""
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
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts, tags=EXPERIMENT_TAGS)
    experiment = mlflow.set_experiment(EXPERIMENT)
    for key, value in EXPERIMENT_TAGS.items():  # also for a store made before the tag was set
        if experiment.tags.get(key) != value:
            mlflow.set_experiment_tag(key, value)
    all_tags = {**run_tags(stage, params), **(tags or {})}
    if resume_id is not None:
        try:
            if mlflow.get_run(resume_id).data.tags.get("stage") != stage:
                resume_id = None
        except mlflow.exceptions.MlflowException:
            resume_id = None  # not in this store (another MLFLOW_TRACKING_URI, a deleted database)
    name = f"{all_tags['dvc.exp_name']}/{stage}" if "dvc.exp_name" in all_tags else stage
    with mlflow.start_run(run_id=resume_id, run_name=None if resume_id else name, tags=all_tags):
        run = StageRun(mlflow)
        if params:
            run.log_params(params)
        yield run


def write_metrics(path: str | Path, metrics: Mapping[str, Any]) -> None:
    """A DVC metrics file (`dvc metrics show`)."""
    write_json(path, dict(metrics))
