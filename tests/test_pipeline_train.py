"""The projector's training through DVC on the tiny presets, as a user runs it: `dvc exp run` of the
whole pipeline, then `dvc exp run -S train.key_bits=128`, which reruns `train` alone. Checks the model,
the curves, the MLflow run, and that no key reaches any log, parameter, metric or artifact."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

from tests.helpers import REPO_ROOT, LfwSubset
from tests.test_pipeline_dvc import dvc, make_project, mlflow_runs, read_csv, run

pytestmark = pytest.mark.slow
STAGES = ("download", "align", "split", "triplets", "baseline", "pretrain_gan", "train")
# A key written out: 32 or more binary digits in a row, or 16 or more 0/1 numbers in a list.
KEY_TEXT = re.compile(rb"[01]{32,}|(?:[01](?:\.0)?,\s*){16,}")


def preset_args(*names: str) -> list[str]:
    return [arg for name in names for arg in (REPO_ROOT / "presets" / f"{name}.args").read_text().split()]


# The subset has 20 identities: a larger validation share gives it two identities with two images.
SMALL = ["-S", "baseline.recognizers=[dlib-resnet]", "-S", "pretrain_gan.amp=fp32", "-S", "train.amp=fp32",
         "-S", "split.train=0.6", "-S", "split.val=0.2", "-S", "split.test=0.2"]


@pytest.fixture(scope="module")
def project(lfw_subset: LfwSubset, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("train") / "project"
    env = make_project(root, lfw_subset, STAGES)
    first = dvc("exp", "run", *preset_args("pretrain_gan-tiny", "train-tiny"), *SMALL, project=root, env=env)
    return root, env, first


def test_the_pipeline_trains_p_and_writes_its_model_curves_and_metrics(project):
    from ivfg.virtual import load_virtual_faces

    root, _, output = project
    assert "Running stage 'train'" in output, output
    metrics = json.loads((root / "metrics" / "train.json").read_text())
    assert metrics["epochs"] == 2 and metrics["steps"] == 4 and metrics["triplets_per_epoch"] == 8
    assert set(metrics["loss"]) == {"pri", "con", "intra", "inter", "reg", "total"}
    validation = metrics["validation"]
    assert 0 <= validation["protection"] <= 1 and 0 <= validation["key_diversity"] <= 1
    assert 0 <= validation["set_a_eer"] <= 1 and validation["identities"] >= 2
    curve = read_csv(root / "plots" / "train.csv")
    assert [int(r["step"]) for r in curve] == [1, 2, 3, 4]
    assert [int(r["epoch"]) for r in read_csv(root / "plots" / "train_val.csv")] == [1, 2]
    assert sorted(p.name for p in (root / "runs" / "train" / "samples").glob("*.png")) == \
        ["epoch001.png", "epoch002.png"]

    virtual = load_virtual_faces(root / "models" / "projector.pt", root / "models" / "generator.pt")
    assert virtual.key_bits == 8
    faces = torch.rand(2, 3, 128, 128)
    k1, k2 = torch.zeros(8), torch.ones(8)
    with torch.no_grad():
        a, b, c = virtual(faces, k1), virtual(faces, k1), virtual(faces, k2)
    assert a.shape == (2, 3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)


def test_the_mlflow_run_holds_terms_validation_and_sample_grids(project):
    import mlflow

    root, env, _ = project
    runs = [r for r in mlflow_runs(env["MLFLOW_TRACKING_URI"]) if r.data.tags["stage"] == "train"]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    data = runs[0].data
    for key in ("train/pri", "train/con", "train/intra", "train/inter", "train/reg", "train/total",
                "train/steps_per_second", "val/protection", "val/set_a_eer", "val/set_b_eer"):
        assert key in data.metrics, key
    assert data.params["train.weights.reg"] == "20.0" and data.params["models.train_recognizer"] == "sface"
    # Tied to the DVC experiment that ran it.
    experiment = data.tags["dvc.exp_name"]
    assert runs[0].info.run_name == f"{experiment}/train" and len(data.tags["dvc.baseline_rev"]) == 40
    assert len(data.tags["params_sha256"]) == 64 and len(data.tags["git.commit"]) == 40
    assert experiment in run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], root, env)
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    history = client.get_metric_history(runs[0].info.run_id, "train/total")
    assert [m.step for m in history] == [1, 2, 3, 4]
    artifacts = [a.path for a in client.list_artifacts(runs[0].info.run_id)]
    assert "projector.pt" in artifacts and "images" in artifacts  # log_image keeps stepped images there


def test_a_128_bit_experiment_reruns_only_train(project):
    from ivfg.virtual import load_projector

    root, env, _ = project
    output = dvc("exp", "run", "-S", "train.key_bits=128", project=root, env=env)
    ran = re.findall(r"Running stage '(\w+)'", output)
    assert ran == ["train"], output
    projector, _ = load_projector(root / "models" / "projector.pt")
    assert projector.key_bits == 128 and projector.mlp[0].in_features == 128 + 128
    shown = dvc("exp", "show", "--csv", project=root, env=env)
    assert "train.key_bits" in shown.splitlines()[0] or "key_bits" in shown.splitlines()[0]


def test_no_key_reaches_logs_params_metrics_or_artifacts(project):
    """Keys are secrets: run output, MLflow params, tags, metric names and artifacts, and the stage's
    outputs hold no run of key bits (the 128-bit run makes any leak a 128-digit string)."""
    import mlflow

    root, env, _ = project
    output = run([sys.executable, "stages/train.py"], root, {**env, "PYTHONUNBUFFERED": "1"})
    texts = [output.encode()]
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    for r in mlflow_runs(env["MLFLOW_TRACKING_URI"]):
        texts.append(json.dumps([r.data.params, r.data.tags, sorted(r.data.metrics)]).encode())
    for path in [*(root / "mlartifacts").rglob("*"), *(root / "metrics").rglob("*"), *(root / "plots").rglob("*"),
                 *(root / "runs" / "train" / "samples").rglob("*")]:
        if path.is_file():
            texts.append(path.read_bytes())
    assert len(texts) > 10
    leaks = [m.group()[:40] for text in texts for m in KEY_TEXT.finditer(text)]
    assert not leaks, leaks


def test_an_interrupted_run_under_changed_settings_is_refused_naming_the_key(project):
    root, env, _ = project
    (root / "runs" / "train" / "checkpoint.pt").unlink()  # start an unfinished run on purpose
    stopped = run([sys.executable, "stages/train.py", "--stop-after-steps", "1"], root,
                  {**env, "PYTHONUNBUFFERED": "1"})
    assert "stopped at epoch 0 of 2, step 1; rerun to resume" in stopped
    params = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(params.replace("margin: 0.4", "margin: 0.3"))
    refused = subprocess.run([sys.executable, "stages/train.py"], cwd=root, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    (root / "params.yaml").write_text(params)
    assert refused.returncode == 2, refused.stdout[-3000:]
    assert "unfinished run under other settings: margin differ" in refused.stdout
    # Restored, the run resumes and finishes in the same MLflow run as the part before the interruption.
    interrupted = (root / "runs" / "train" / "mlflow_run_id").read_text().strip()
    resumed = run([sys.executable, "stages/train.py"], root, {**env, "PYTHONUNBUFFERED": "1"})
    assert "resumed from runs/train/checkpoint.pt at epoch 0, step 1" in resumed
    by_id = {r.info.run_id: r for r in mlflow_runs(env["MLFLOW_TRACKING_URI"])}
    assert by_id[interrupted].info.status == "FINISHED"
    assert (root / "runs" / "train" / "mlflow_run_id").read_text().strip() == interrupted
