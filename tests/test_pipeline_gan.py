"""Generator pretraining through DVC with the tiny preset, as a user runs it: `dvc exp run` with the
preset's arguments, then an interrupted run that the next `dvc repro` resumes."""
from __future__ import annotations

import json
import sys

import pytest
import torch

from tests.helpers import REPO_ROOT, LfwSubset
from tests.test_pipeline_dvc import dvc, make_project, mlflow_runs, read_csv, run

pytestmark = pytest.mark.slow
STAGES = ("download", "align", "split", "baseline", "pretrain_gan")


def preset_args(name: str) -> list[str]:
    return (REPO_ROOT / "presets" / f"pretrain_gan-{name}.args").read_text().split()


@pytest.fixture(scope="module")
def project(lfw_subset: LfwSubset, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("gan") / "project"
    env = make_project(root, lfw_subset, STAGES)
    # The subset's 37 faces: evaluate with one cheap recognizer (dlib is also the evaluator).
    output = dvc("exp", "run", *preset_args("tiny"), "-S", "baseline.recognizers=[dlib-resnet]",
                 "-S", "pretrain_gan.amp=fp32", project=root, env=env)
    return root, env, output


def test_tiny_preset_trains_to_the_end_and_exports_the_generator(project):
    from ivfg.gan.export import load_generator

    root, _, output = project
    assert "Running stage 'pretrain_gan'" in output, output
    g = load_generator(root / "models" / "generator.pt")
    assert g.resolution == 16 and g.w_avg.abs().sum() > 0
    with torch.no_grad():
        assert g(torch.randn(2, 32)).shape == (2, 3, 16, 16)
    metrics = json.loads((root / "metrics" / "pretrain_gan.json").read_text())
    assert metrics["kimg"] == pytest.approx(0.504, abs=0.01)
    assert 0 <= metrics["identity_diversity"] <= 1 and metrics["fid192"] > 0
    curve = read_csv(root / "plots" / "pretrain_gan.csv")
    assert [float(r["kimg"]) for r in curve] == sorted(float(r["kimg"]) for r in curve) and len(curve) >= 2
    assert list((root / "runs" / "pretrain_gan" / "samples").glob("*.png"))


def test_sample_grids_are_mlflow_images_with_their_step(project):
    import mlflow

    root, env, _ = project
    (train_run,) = [r for r in mlflow_runs(env["MLFLOW_TRACKING_URI"]) if r.data.tags.get("stage") == "pretrain_gan"]
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    logged = [a.path for a in client.list_artifacts(train_run.info.run_id, "images")]
    # MLflow names each image "<key>+step+<step>+…"; the step is the number of images shown.
    steps = sorted(int(p.split("+step+")[1].split("+")[0]) for p in logged if p.endswith(".png"))
    assert len(steps) >= 2 and len(set(steps)) == len(steps), logged
    assert steps[-1] == 504  # the last grid, at the end of training
    assert all(p.startswith("images/samples+step+") for p in logged), logged


def test_a_baseline_rerun_writes_the_same_metrics_and_leaves_pretrain_gan_up_to_date(project):
    """pretrain_gan depends on τ (models/thresholds/dlib-resnet.json), and no timing makes a rerun differ."""
    root, env, _ = project
    metrics = (root / "metrics" / "baseline.json").read_bytes()
    threshold = (root / "models" / "thresholds" / "dlib-resnet.json").read_bytes()
    output = dvc("repro", "--force", "--single-item", "baseline", project=root, env=env)
    assert "Running stage 'baseline'" in output and "ms/image" in output, output
    assert (root / "metrics" / "baseline.json").read_bytes() == metrics
    assert "ms_per_image" not in json.loads(metrics)["dlib-resnet"]
    assert (root / "models" / "thresholds" / "dlib-resnet.json").read_bytes() == threshold
    assert "changed" not in dvc("status", "pretrain_gan", project=root, env=env)


def test_the_experiment_commit_records_its_metrics_for_dvc_exp_show(project):
    root, env, _ = project
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], root, env).split()
    refs = [ref for ref in refs if not ref.startswith("refs/exps/exec/")]  # DVC's own bookkeeping
    assert len(refs) == 1, refs
    recorded = json.loads(run(["git", "show", f"{refs[0]}:metrics/pretrain_gan.json"], root, env))
    assert recorded == json.loads((root / "metrics" / "pretrain_gan.json").read_text())
    assert "kimg," in run(["git", "show", f"{refs[0]}:plots/pretrain_gan.csv"], root, env)


def test_interrupted_training_resumes_under_dvc_repro(project):
    root, env, _ = project
    params = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(params.replace("seed: 0\n  device", "seed: 1\n  device"))
    assert "seed: 1\n  device" in (root / "params.yaml").read_text()
    checkpoint = root / "runs" / "pretrain_gan" / "checkpoint.pt"
    checkpoint.unlink()  # another seed is another run: start it on purpose
    # An interruption: the stage stops after 10 steps, leaving its checkpoint (DVC keeps the folder).
    stopped = run([sys.executable, "stages/pretrain_gan.py", "--stop-after-steps", "10"], root, env)
    assert "stopped at 0.1 of 0.5 kimg" in stopped
    shown = torch.load(checkpoint, weights_only=False)["shown"]
    assert shown == 80
    interrupted = (root / "runs" / "pretrain_gan" / "mlflow_run_id").read_text().strip()
    output = dvc("repro", "pretrain_gan", project=root, env=env)
    assert "resumed from runs/pretrain_gan/checkpoint.pt at 0.1 kimg" in output, output
    assert torch.load(checkpoint, weights_only=False)["shown"] == 504
    # The resumed training continued the interrupted MLflow run and finished it.
    by_id = {r.info.run_id: r for r in mlflow_runs(env["MLFLOW_TRACKING_URI"])}
    assert by_id[interrupted].info.status == "FINISHED"
    assert not (root / "runs" / "pretrain_gan" / "mlflow_run_id").exists()


def test_a_run_of_other_training_code_is_not_resumed_silently(project):
    """After an edit to ivfg/gan, DVC reruns the stage; the persisted run must not pass off the old
    code's weights as the new code's product."""
    import subprocess

    root, env, _ = project
    checkpoint = root / "runs" / "pretrain_gan" / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=False)
    state["code"] = "an earlier version of ivfg/gan"
    torch.save(state, checkpoint)
    generator = (root / "models" / "generator.pt").read_bytes()
    refused = subprocess.run([sys.executable, "stages/pretrain_gan.py"], cwd=root, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert refused.returncode == 2, refused.stdout
    assert "runs/pretrain_gan/checkpoint.pt was written by other training code" in refused.stdout
    assert "IVFG_RESUME_CHANGED_CODE=1" in refused.stdout
    assert (root / "models" / "generator.pt").read_bytes() == generator  # nothing overwritten
    output = run([sys.executable, "stages/pretrain_gan.py"], root, {**env, "IVFG_RESUME_CHANGED_CODE": "1"})
    assert "resumed from runs/pretrain_gan/checkpoint.pt" in output
    # A finished run continued on purpose trains nothing more: its checkpoint still names the code
    # that trained it, and the generator is exported again from it.
    assert torch.load(checkpoint, weights_only=False)["code"] == state["code"]
    assert (root / "models" / "generator.pt").read_bytes() == generator
