"""The projector's training and its evaluation through DVC on the tiny presets, as a user runs them:
`dvc exp run` of the whole pipeline, then `dvc exp run -S train.key_bits=128`, which reruns `train` and
`evaluate` alone. Checks the model, the curves, the tables and figures, the MLflow runs, `dvc exp show`
side by side, and that no key reaches any log, parameter, metric or artifact."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
import yaml

from tests.helpers import REPO_ROOT, LfwSubset, shared_data_dir
from tests.test_pipeline_dvc import dvc, make_project, mlflow_runs, read_csv, run

pytestmark = pytest.mark.slow
STAGES = ("download", "align", "split", "triplets", "baseline", "pretrain_gan", "train", "evaluate", "export", "celeba_align",
          "evaluate_celeba")
# A key written out: 32 or more binary digits in a row, or 16 or more 0/1 numbers in a list.
KEY_TEXT = re.compile(rb"[01]{32,}|(?:[01](?:\.0)?,\s*){16,}")


def preset_args(*names: str) -> list[str]:
    return [arg for name in names for arg in (REPO_ROOT / "presets" / f"{name}.args").read_text().split()]


# The subset has 20 identities: a larger validation share gives it two identities with two images.
SMALL = ["-S", "baseline.recognizers=[dlib-resnet]", "-S", "pretrain_gan.amp=fp32", "-S", "train.amp=fp32",
         "-S", "split.train=0.6", "-S", "split.val=0.2", "-S", "split.test=0.2"]


def celeba_args() -> list[str]:
    """The CelebA development subset in shared/data, 16 of its faces."""
    directory = shared_data_dir() / "celeba-dev"
    if not (directory / "identity_CelebA.txt").is_file():
        pytest.skip(f"the CelebA development subset is not at {directory}")
    return ["-S", f"celeba.images={directory / 'img_align_celeba_small.tgz'}",
            "-S", f"celeba.identities={directory / 'identity_CelebA.txt'}", "-S", "celeba.max_images=16"]


@pytest.fixture(scope="module")
def project(lfw_subset: LfwSubset, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("train") / "project"
    env = make_project(root, lfw_subset, STAGES)
    first = dvc("exp", "run", *preset_args("pretrain_gan-tiny", "train-tiny", "evaluate-tiny"), *SMALL,
                *celeba_args(), project=root, env=env)
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
    calibration = metrics["virtual_threshold"]  # τ_v, on every validation face's virtual face
    assert calibration["faces"] >= validation["faces"] and 0 <= calibration["eer"] <= 1
    assert calibration["one_key_draws"] == 4 and 0 <= calibration["set_b_impostor_rejected_one_key"] <= 1
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


def test_every_stage_run_of_one_dvc_experiment_is_found_by_its_name(project):
    """`dvc exp run` of the whole pipeline: each stage's MLflow run carries the experiment's name, its
    baseline commit, the stage and the hash of the params it read."""
    _, env, _ = project
    runs = mlflow_runs(env["MLFLOW_TRACKING_URI"])
    experiment = next(r for r in runs if r.data.tags["stage"] == "train").data.tags["dvc.exp_name"]
    mine = [r for r in runs if r.data.tags.get("dvc.exp_name") == experiment]
    assert sorted(r.data.tags["stage"] for r in mine) == sorted(STAGES)
    for r in mine:
        tags = r.data.tags
        assert r.info.run_name == f"{experiment}/{tags['stage']}" and r.info.status == "FINISHED"
        assert len(tags["dvc.baseline_rev"]) == 40 and len(tags["params_sha256"]) == 64, tags


def test_the_mlflow_run_holds_terms_validation_and_sample_grids(project):
    import mlflow

    root, env, _ = project
    runs = [r for r in mlflow_runs(env["MLFLOW_TRACKING_URI"]) if r.data.tags["stage"] == "train"]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    data = runs[0].data
    for key in ("train/pri", "train/con", "train/intra", "train/inter", "train/reg", "train/total",
                "train/steps_per_second", "val/protection", "val/set_a_eer", "val/set_b_eer", "train_seconds"):
        assert key in data.metrics, key
    params = yaml.safe_load((root / "params.yaml").read_text())["train"]
    assert data.params["train.weights.reg"] == str(float(params["weights"]["reg"]))
    assert data.params["train.latent_space"] == params["latent_space"] and data.params["models.train_recognizer"] == "sface"
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


TABLE_ROWS = ("original", "original_lowres", "set_a", "set_b", "protection", "diversity", "recoverability",
              "detection", "fid_virtual", "fid_lowres", "baselines", "linkage", "key_search", "latent_spread")


def test_evaluate_writes_every_table_its_figures_and_the_comparison_with_the_paper(project):
    root, _, output = project
    assert "Running stage 'evaluate'" in output, output
    figures = json.loads((root / "metrics" / "evaluate.json").read_text())
    assert set(TABLE_ROWS) <= set(figures), sorted(figures)
    assert figures["recognizer"] == "dlib-resnet" and figures["recognizer_role"] == "evaluation"
    assert figures["repeats"] == 2 and figures["key_bits"] == 8 and figures["identities"] >= 2
    n = figures["faces"]
    assert figures["set_a"]["pairs"] == n * (n - 1) // 2 and "eer_std" in figures["set_a"]
    # Measured on the exported model, with its τ_v beside τ; diversity over a second key per face.
    assert {"genuine_accepted_v", "impostor_rejected_v"} <= set(figures["set_a"])
    assert {"genuine_accepted_1", "impostor_rejected_1"} <= set(figures["set_b"])  # at τ_1, Set-B's own
    assert figures["diversity"]["pairs"] == n and figures["original_lowres"]["resolution"] == 16
    assert figures["latent_spread"]["ratio"] >= 0
    for row in ("protection", "diversity", "recoverability", "detection"):
        assert 0.0 <= figures[row]["rate"] <= 1.0, row
    assert set(figures["baselines"]) == {"pixelization", "blur"}
    assert {"detection", "fid192", "protection"} <= set(figures["baselines"]["blur"])
    assert figures["fid_virtual"]["fid192"] > 0
    assert figures["fid_lowres"]["fid192"] > 0  # the shrunk originals, not the originals against themselves
    search = figures["key_search"]
    assert search["exhaustive"] == 1 and search["candidates"] == 256  # all 8-bit keys
    assert "seconds" not in figures  # timings go to MLflow and the log; a rerun writes the same metrics
    assert "evaluate: seconds " in output and "inception" in output
    for name in ("identity_grid", "key_grid", "roc", "tsne"):
        assert (root / "plots" / "evaluate" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_csv(root / "plots" / "evaluate" / "roc" / "set_a.csv")[0].keys() == {"fpr", "tpr"}
    report = (root / "reports" / "evaluate.md").read_text()
    assert "| Set-A EER |" in report and "0.018 ± 0.005" in report and "| Protection rate |" in report


def test_every_script_and_benchmark_runs_on_the_tiny_project(project, lfw_subset, tmp_path):
    """Scripts nothing else runs rot unseen: each runs here on the tiny project's files (the GPU check,
    which needs CUDA, is syntax-checked), and a new one must be added to this list."""
    root, env, _ = project
    ran = set()

    def go(name: str, *args) -> str:
        ran.add(name)
        return run([sys.executable, str(REPO_ROOT / name), *map(str, args)], root, env)

    go("scripts/readme_picture.py", "plots/evaluate/identity_grid.png", tmp_path / "pic.png", "--rows", "2",
       "--cell", "32")
    assert (tmp_path / "pic.png").read_bytes()[:4] == b"\x89PNG"
    photo, virtual, secret = tmp_path / "photo.jpg", tmp_path / "virtual.jpg", tmp_path / "secret.txt"
    photo.write_bytes(lfw_subset.image_bytes(lfw_subset.multi[0]))
    secret.write_text("a passphrase for the script test\n")
    run([sys.executable, "-m", "ivfg.cli", "anonymize", "--passphrase-file", str(secret), "--model",
         "models/ivfg.pt", str(photo), "-o", str(virtual)], root, env)
    assert "face" in go("scripts/protection_check.py", "--model", "models/ivfg.pt", photo, virtual)
    go("scripts/gpu_train_check.py", "bundle", "--out", tmp_path / "bundle.pt")
    assert '"epoch": 1' in go("scripts/gpu_train_check.py", "run", tmp_path / "bundle.pt", "-S", "epochs=1",
                              "--run-dir", tmp_path / "check")
    assert "usage" in go("scripts/mlflow_ui.py", "--help")  # it serves until stopped
    ran.add("scripts/gpu_check.sh")
    run(["bash", "-n", str(REPO_ROOT / "scripts/gpu_check.sh")], root, env)  # needs CUDA to run
    go("benchmarks/align_throughput.py", "--images", "data/raw/lfw/images", "-n", "8", "--batch-size", "4",
       "--device", "cpu")
    go("benchmarks/recognizer_speed.py", "--aligned", "data/aligned", "--batch", "4", "--repeats", "1")
    go("benchmarks/gan_speed.py", "--sizes", "preset", "--resolutions", "8", "--steps", "1", "--seconds", "0.1")
    go("benchmarks/train_speed.py", "--sizes", "cpu", "--batch", "2", "--seconds", "0.1", "--scratch",
       tmp_path / "speed")
    go("benchmarks/evaluate_speed.py", "--sizes", "cpu", "--faces", "data/aligned", "--faces-n", "8",
       "--seconds", "0.1")
    out = go("benchmarks/validation_sets.py", "workspace", "--key-draws", "1")
    assert '"set_b_eer"' in out and '"set_a_eer"' in out
    out = go("benchmarks/validation_sets.py", "workspace", "--key-draws", "1", "--split", "train", "--faces", "8")
    assert '"split": "train"' in out and '"set_b_eer"' in out
    out = go("benchmarks/identity_range.py", "workspace", "--people", "8", "--key-draws", "1")
    assert '"eer_full"' in out and '"set": "generator"' in out and '"set": "one key"' in out
    assert '"different_people_msd"' in out and '"latent_msd"' in out
    out = go("benchmarks/compare_pairs.py", "--model", "models/ivfg.pt", "--keys", "1", "--pairs", "1",
             "--people", "train")  # the tiny split's test people may have one photo each
    totals = json.loads([line for line in out.splitlines() if line.startswith('{"keys"')][-1])
    assert totals["same_pairs"] == totals["different_pairs"] == 1 and totals["skipped"] == 0
    assert 0 <= totals["same_accepted"] <= 1 and 0 <= totals["different_rejected"] <= 1
    out = go("benchmarks/video_quality.py", "--model", "models/ivfg.pt", "--lfw", lfw_subset.archive, "--width", "320",
             "--seconds", "1", "--no-deface")
    assert '"identity_consistency"' in out and '"ivfg_frames_per_second"' in out
    assert '"audio_kept": null' in out  # the built clip has no audio track
    every = {p.relative_to(REPO_ROOT).as_posix() for folder in ("scripts", "benchmarks")
             for p in (REPO_ROOT / folder).iterdir() if p.suffix in (".py", ".sh")}
    every.discard("scripts/setup.sh")  # every make target runs it, CI first of all
    assert ran == every, f"not run by this test: {sorted(every - ran)}"


def test_celeba_is_aligned_by_identity_and_evaluated_for_table_2(project):
    root, _, output = project
    assert "Running stage 'celeba_align'" in output and "Running stage 'evaluate_celeba'" in output
    prepared = json.loads((root / "metrics" / "celeba_align.json").read_text())
    assert prepared["chosen"] <= 16 and prepared["found"] == prepared["chosen"] and prepared["aligned"] >= 4
    rows = read_csv(root / "data" / "celeba" / "index.csv")
    assert all(r["image"].startswith(f"images/{r['identity']}/") for r in rows)
    figures = json.loads((root / "metrics" / "evaluate_celeba.json").read_text())
    assert figures["dataset"] == "celeba" and figures["faces"] == len(rows)
    assert {"original", "set_a", "set_b", "protection", "diversity"} <= set(figures)
    assert "key_search" not in figures and "eer" in figures["original"]
    report = (root / "reports" / "evaluate_celeba.md").read_text()
    assert "CelebA" in report and "0.035 ± 0.002" in report
    # The lock records the external data by hash, so changed data reruns the stage.
    lock = (root / "dvc.lock").read_text()
    assert "identity_CelebA.txt" in lock and "img_align_celeba_small.tgz" in lock


def test_a_128_bit_experiment_reruns_train_and_evaluate_and_both_show_side_by_side(project):
    import mlflow

    from ivfg.virtual import load_projector

    root, env, _ = project
    output = dvc("exp", "run", "-S", "train.key_bits=128", project=root, env=env)
    ran = re.findall(r"Running stage '(\w+)'", output)
    assert sorted(ran) == ["evaluate", "evaluate_celeba", "export", "train"], output
    projector, _ = load_projector(root / "models" / "projector.pt")
    # P reads the key beside E(x) on the tiny preset's 4 discriminant directions (train.lda_dims).
    assert projector.key_bits == 128 and projector.input_dims == 4 and projector.mlp[0].in_features == 4 + 128
    figures = json.loads((root / "metrics" / "evaluate.json").read_text())
    assert figures["key_bits"] == 128 and figures["key_search"]["exhaustive"] == 0

    shown = json.loads(dvc("exp", "show", "--json", project=root, env=env))
    experiments = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for revision in exp["revs"]:
                data = revision["data"]
                evaluate = data["metrics"]["metrics/evaluate.json"]["data"]
                experiments[revision["name"]] = (data["params"]["params.yaml"]["data"]["train"]["key_bits"],
                                                 evaluate["set_a"]["eer"])
    assert sorted(bits for bits, _ in experiments.values()) == [8, 128], experiments
    # `dvc plots diff` draws both experiments' loss curves and ROC curves together.
    names = sorted(experiments, key=lambda name: experiments[name][0])
    drawn = json.loads(dvc("plots", "diff", *names, "--json", project=root, env=env))["data"]
    for plot in ("plots/train.csv", "plots/train_val.csv", "plots/evaluate/roc/set_a.csv"):
        (vega,) = [entry for entry in drawn[plot] if entry["type"] == "vega"]
        assert sorted(vega["revisions"]) == sorted(names), plot
        assert {row["rev"] for row in vega["content"]["data"]["values"]} == set(names), plot
    # The MLflow UI finds both evaluations by experiment name.
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("ivfg")
    runs = [r for r in mlflow_runs(env["MLFLOW_TRACKING_URI"]) if r.data.tags["stage"] == "evaluate"]
    by_name = {r.data.tags["dvc.exp_name"]: r for r in runs}
    assert set(experiments) <= set(by_name), (set(experiments), set(by_name))
    for name in experiments:
        run_ = by_name[name]
        assert run_.info.run_name == f"{name}/evaluate" and run_.info.status == "FINISHED"
        assert "set_a.eer" in run_.data.metrics and "protection.rate" in run_.data.metrics
        found = client.search_runs([experiment.experiment_id], filter_string=f"tags.`dvc.exp_name` = '{name}'")
        assert {r.data.tags["stage"] for r in found} >= {"train", "evaluate"}


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
                 *(root / "reports").rglob("*"), *(root / "runs" / "train" / "samples").rglob("*")]:
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
    changed, n = re.subn(r"(?m)^(  margin:) [0-9.]+", r"\1 0.35", params)
    assert n == 1, "params.yaml's train.margin line not found"
    (root / "params.yaml").write_text(changed)
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
    # Once finished, the run directory keeps no run id: a rerun reproduces its hash.
    assert not (root / "runs" / "train" / "mlflow_run_id").exists()
