"""ivfg.tracking: every stage logs to one MLflow store, found from the project root."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ivfg.tracking import flatten, project_root, stage_run, tracking_enabled, tracking_uri, write_metrics


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DVC-looking project directory as the working directory, with tracking switched on."""
    root = tmp_path / "proj"
    (root / ".dvc").mkdir(parents=True)
    monkeypatch.chdir(root)
    monkeypatch.delenv("IVFG_TRACKING", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return root


def test_project_root_finds_the_nearest_dvc_ancestor(project: Path):
    nested = project / "data" / "aligned" / "images"
    nested.mkdir(parents=True)
    assert project_root(nested) == project
    assert project_root() == project


def test_project_root_lifts_out_of_dvc_experiment_workspaces(project: Path):
    # `dvc exp run --temp` copies the workspace (with its own .dvc/) under .dvc/tmp/exps/.
    workspace = project / ".dvc" / "tmp" / "exps" / "xyz"
    (workspace / ".dvc").mkdir(parents=True)
    (workspace / "stages").mkdir()
    assert project_root(workspace) == project
    assert project_root(workspace / "stages") == project


def test_project_root_without_dvc_is_the_start(tmp_path: Path):
    assert project_root(tmp_path) == tmp_path.resolve()


def test_default_tracking_uri_is_the_project_database(project: Path, monkeypatch: pytest.MonkeyPatch):
    (project / "stages").mkdir()
    monkeypatch.chdir(project / "stages")
    assert tracking_uri() == f"sqlite:///{project / 'mlflow.db'}"


def test_tracking_uri_environment_override(project: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/x.db")
    assert tracking_uri() == "sqlite:////elsewhere/x.db"


@pytest.mark.parametrize(("value", "enabled"), [(None, True), ("on", True), ("off", False), ("OFF", False),
                                                 ("0", False), ("false", False), ("no", False)])
def test_tracking_switch(value, enabled, monkeypatch: pytest.MonkeyPatch):
    if value is None:
        monkeypatch.delenv("IVFG_TRACKING", raising=False)
    else:
        monkeypatch.setenv("IVFG_TRACKING", value)
    assert tracking_enabled() is enabled


def test_flatten_nested_mappings():
    assert flatten({"align": {"batch_size": 8, "thresholds": (0.6, 0.7, 0.7)}, "train": {"val": {"images": 3}}}) == {
        "align.batch_size": 8, "align.thresholds": (0.6, 0.7, 0.7), "train.val.images": 3}


def test_stage_run_logs_params_metrics_and_artifacts(project: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    import mlflow

    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    report = project / "report.json"
    report.write_text('{"ok": true}\n')

    with stage_run("align", tags={"note": "test"}) as run:
        assert run.active
        run.log_params({"align": {"batch_size": 8, "device": "cpu", "thresholds": (0.6, 0.7, 0.7)}})
        run.log_metrics({"aligned": 37, "aligned_fraction": 0.925, "device": "cpu",
                         "train": {"identities": 8, "images": 20}})
        run.log_metrics({"loss": 0.5}, step=3)
        run.log_artifact(report)
    assert mlflow.active_run() is None

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("ivfg")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    logged = runs[0]
    assert logged.info.run_name == "align"
    assert logged.info.status == "FINISHED"
    assert logged.data.tags["stage"] == "align" and logged.data.tags["note"] == "test"
    assert logged.data.params == {"align.batch_size": "8", "align.device": "cpu",
                                  "align.thresholds": "(0.6, 0.7, 0.7)"}
    # numbers only: the device string is left to the params/metrics file
    assert logged.data.metrics == {"aligned": 37.0, "aligned_fraction": 0.925, "train.identities": 8.0,
                                   "train.images": 20.0, "loss": 0.5}
    assert [m.step for m in client.get_metric_history(logged.info.run_id, "loss")] == [3]

    # Artifacts are kept beside the database, not in whatever directory the stage ran from.
    assert [a.path for a in client.list_artifacts(logged.info.run_id)] == ["report.json"]
    stored = list((store / "mlartifacts").rglob("report.json"))
    assert len(stored) == 1 and stored[0].read_text() == '{"ok": true}\n'
    assert not (project / "mlartifacts").exists()


def test_stage_runs_accumulate_in_one_experiment(project: Path, monkeypatch: pytest.MonkeyPatch):
    import mlflow

    # Default store: the project's mlflow.db, even when the stage runs from a sub-directory.
    (project / "stages").mkdir()
    monkeypatch.chdir(project / "stages")
    for stage in ("download", "align"):
        with stage_run(stage) as run:
            run.log_metrics({"images": 5})
    assert (project / "mlflow.db").is_file()
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ivfg").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["align", "download"]


def test_stage_run_failure_marks_the_run_failed(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'fail.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(ValueError):
        with stage_run("split"):
            raise ValueError("bad split")
    client = mlflow.MlflowClient(uri)
    (logged,) = client.search_runs([client.get_experiment_by_name("ivfg").experiment_id])
    assert logged.info.run_name == "split" and logged.info.status == "FAILED"
    assert mlflow.active_run() is None


def test_tracking_off_writes_nothing(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    db = tmp_path / "off" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.setenv("IVFG_TRACKING", "off")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with stage_run("align") as run:
        assert not run.active
        run.log_params({"align": {"batch_size": 8}})
        run.log_metrics({"aligned": 1})
        run.log_artifact(tmp_path / "does-not-matter.json")
    assert not db.exists()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_write_metrics_is_a_dvc_metrics_file(tmp_path: Path):
    write_metrics(tmp_path / "metrics" / "align.json", {"aligned": 3, "device": "cpu"})
    assert json.loads((tmp_path / "metrics" / "align.json").read_text()) == {"aligned": 3, "device": "cpu"}


def test_the_experiment_opens_on_its_runs_in_the_mlflow_ui(tmp_path, monkeypatch):
    """MLflow 3 shows an experiment without a kind as a GenAI traces overview; ours is model development."""
    import mlflow

    from ivfg.tracking import EXPERIMENT, stage_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("IVFG_TRACKING", raising=False)
    client = mlflow.MlflowClient(uri)
    client.create_experiment(EXPERIMENT)  # a store made before the tag existed
    with stage_run("evaluate"):
        pass
    tags = client.get_experiment_by_name(EXPERIMENT).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_ui_link_opens_the_projects_experiment_on_model_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """MLflow 3.17's UI ignores the experiment's kind tag and opens on GenAI unless the link asks otherwise."""
    import mlflow

    from ivfg.tracking import EXPERIMENT, experiment_id, stage_run, ui_link

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("IVFG_TRACKING", raising=False)
    assert experiment_id(uri) is None  # no stage has run yet: the experiment list
    assert ui_link("http://127.0.0.1:5000/", None) == "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
    mlflow.MlflowClient(uri).create_experiment("another")  # ids are the store's, not always 1
    with stage_run("evaluate"):
        pass
    found = experiment_id(uri)
    assert found == mlflow.MlflowClient(uri).get_experiment_by_name(EXPERIMENT).experiment_id != "0"
    assert ui_link("http://h:1", found) == f"http://h:1/#/experiments/{found}?workflowType=machine_learning"


def test_stage_params_are_logged_and_hashed_into_a_tag(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import mlflow

    from ivfg.tracking import params_sha256

    uri = f"sqlite:///{tmp_path / 'params.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    params = {"split": {"seed": 1, "train": 0.8}}
    with stage_run("split", params=params):
        pass
    with stage_run("split", params={"split": {"seed": 2, "train": 0.8}}):
        pass
    client = mlflow.MlflowClient(uri)
    first, second = sorted(client.search_runs([client.get_experiment_by_name("ivfg").experiment_id]),
                           key=lambda r: r.info.start_time)
    assert first.data.params == {"split.seed": "1", "split.train": "0.8"}
    assert first.data.tags["params_sha256"] == params_sha256(params) != second.data.tags["params_sha256"]
