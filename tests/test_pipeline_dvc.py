"""The data half of the DVC pipeline end to end, as a user runs it: `dvc repro` in a fresh git + DVC
project on a small real LFW archive, tracked in MLflow, then rerun (nothing to do) and rerun after a
parameter change (only the stages downstream of it)."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO_ROOT, LfwSubset, build_tgz, sha256_path

pytestmark = pytest.mark.slow

DATA_STAGES = ("download", "align", "split", "triplets")
VENV_BIN = Path(sys.executable).parent


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-6000:]}"
    return result.stdout


def dvc(*args: str, project: Path, env: dict[str, str]) -> str:
    return run([str(VENV_BIN / "dvc"), *args], project, env)


def snapshot(project: Path) -> dict[str, int]:
    """mtime of every output file: equal snapshots mean nothing was rewritten."""
    files = [p for d in ("data", "metrics") for p in (project / d).rglob("*") if p.is_file()]
    return {p.relative_to(project).as_posix(): p.stat().st_mtime_ns for p in files}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def find_key(tree, key: str):
    """The value under `key` anywhere in dvc's nested JSON (its layout differs between releases)."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for value in tree.values():
            found = find_key(value, key)
            if found is not None:
                return found
    return None


def mlflow_runs(uri: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("ivfg")
    return [] if experiment is None else client.search_runs([experiment.experiment_id], max_results=1000)


def make_project(root: Path, lfw_subset: LfwSubset, stages: tuple[str, ...]) -> dict[str, str]:
    """A fresh git + DVC project in `root` with the given stages of this repo's pipeline; its env."""
    if not (VENV_BIN / "dvc").is_file():
        pytest.skip(f"dvc is not installed beside {sys.executable}")
    root.mkdir(parents=True)
    pipeline = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    pipeline["stages"] = {k: v for k, v in pipeline["stages"].items() if k in stages}
    pipeline.pop("plots", None)
    assert set(pipeline["stages"]) == set(stages)
    (root / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["align"]["workers"] = 0
    params["download"].update(lfw_subset.download_params())
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO_ROOT / "stages", root / "stages", ignore=ignore)
    shutil.copytree(REPO_ROOT / "ivfg", root / "ivfg", ignore=ignore)  # the stages' code dependencies
    shutil.copytree(REPO_ROOT / "presets", root / "presets")
    shutil.copy(REPO_ROOT / ".gitignore", root / ".gitignore")  # what git tracks decides what experiments record

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "GIT_", "IVFG_"))}
    env.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "DVC_NO_ANALYTICS": "1",
        # keep DVC's and git's per-user state out of it (and a user's git config, e.g. commit signing)
        "DVC_SITE_CACHE_DIR": str(root.parent / "dvc-site-cache"),
        "DVC_GLOBAL_CONFIG_DIR": str(root.parent / "dvc-global-config"),
        "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "ivfg tests", "GIT_AUTHOR_EMAIL": "tests@ivfg.invalid",
        "GIT_COMMITTER_NAME": "ivfg tests", "GIT_COMMITTER_EMAIL": "tests@ivfg.invalid",
        "PYTHONUNBUFFERED": "1",
    })
    run(["git", "init", "-q"], root, env)
    dvc("init", "-q", project=root, env=env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-q", "-m", "pipeline"], root, env)
    return env


@pytest.fixture(scope="module")
def project(lfw_subset: LfwSubset, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("pipeline") / "project"
    return root, make_project(root, lfw_subset, DATA_STAGES)


@pytest.fixture(scope="module")
def first_repro(project) -> str:
    root, env = project
    return dvc("repro", "triplets", project=root, env=env)


def test_repro_runs_every_data_stage(project, first_repro: str):
    for stage in DATA_STAGES:
        assert f"Running stage '{stage}'" in first_repro, first_repro
    assert (project[0] / "dvc.lock").is_file()


def test_download_output(project, first_repro, lfw_subset: LfwSubset):
    root, _ = project
    raw = root / "data" / "raw" / "lfw"
    assert len(list((raw / "images").glob("*/*.jpg"))) == lfw_subset.n_images
    assert (raw / "pairs.txt").read_bytes() == lfw_subset.pairs.read_bytes()
    assert json.loads((raw / "source.json").read_text())["images"] == lfw_subset.n_images
    assert json.loads((root / "metrics" / "download.json").read_text())["images"] == lfw_subset.n_images


def test_align_output(project, first_repro, lfw_subset: LfwSubset):
    root, _ = project
    metrics = json.loads((root / "metrics" / "align.json").read_text())
    index = read_csv(root / "data" / "aligned" / "index.csv")
    failures = read_csv(root / "data" / "aligned" / "failures.csv")
    assert metrics["images"] == lfw_subset.n_images
    assert metrics["aligned"] == len(index) == len(list((root / "data" / "aligned" / "images").glob("*/*.png")))
    assert metrics["aligned"] + metrics["failed"] == lfw_subset.n_images
    assert metrics["failed"] == len(failures)
    assert metrics["aligned"] >= lfw_subset.n_images - 1  # deep-funneled LFW: MTCNN finds (nearly) every face
    assert {r["identity"] for r in index} == set(lfw_subset.images)


def test_split_output_is_identity_disjoint(project, first_repro, lfw_subset: LfwSubset):
    root, _ = project
    rows = read_csv(root / "data" / "split.csv")
    index = read_csv(root / "data" / "aligned" / "index.csv")
    assert sorted(r["image"] for r in rows) == sorted(r["image"] for r in index)
    splits_of = defaultdict(set)
    for r in rows:
        splits_of[r["identity"]].add(r["split"])
    assert all(len(s) == 1 for s in splits_of.values())
    per_split = defaultdict(set)
    for identity, (split,) in splits_of.items():
        per_split[split].add(identity)
    assert {k: len(v) for k, v in per_split.items()} == {"train": 16, "val": 2, "test": 2}
    metrics = json.loads((root / "metrics" / "split.json").read_text())
    assert {k: v["identities"] for k, v in metrics.items()} == {"train": 16, "val": 2, "test": 2}


def test_triplets_cover_identities(project, first_repro):
    root, _ = project
    split_rows = read_csv(root / "data" / "split.csv")
    metrics = json.loads((root / "metrics" / "triplets.json").read_text())
    for name in ("train", "val", "test"):
        rows = [r for r in split_rows if r["split"] == name]
        identity = {r["image"]: r["identity"] for r in rows}
        multi = {i for i in identity.values() if sum(v == i for v in identity.values()) >= 2}
        triplets = read_csv(root / "data" / "triplets" / f"{name}.csv")
        assert triplets, name
        for t in triplets:
            assert identity[t["x1"]] == identity[t["x2"]] and t["x1"] != t["x2"]
            assert identity[t["y"]] != identity[t["x1"]]
        assert {identity[t["x1"]] for t in triplets} == multi
        assert metrics[name] == {"triplets": len(triplets), "identities": len(multi)}


def test_dvc_metrics_show(project, first_repro):
    root, env = project
    shown = json.loads(dvc("metrics", "show", "--json", project=root, env=env))
    align = find_key(shown, "metrics/align.json")
    assert align is not None, shown
    align = align.get("data", align)
    assert align["aligned"] == json.loads((root / "metrics" / "align.json").read_text())["aligned"]
    for stage in ("download", "split", "triplets"):
        assert find_key(shown, f"metrics/{stage}.json") is not None, stage


def test_mlflow_has_a_run_per_stage(project, first_repro):
    root, env = project
    runs = mlflow_runs(env["MLFLOW_TRACKING_URI"])
    assert sorted(r.info.run_name for r in runs) == sorted(DATA_STAGES)
    assert all(r.info.status == "FINISHED" for r in runs)
    by_name = {r.info.run_name: r for r in runs}
    assert by_name["align"].data.params["align.workers"] == "0"
    assert by_name["align"].data.metrics["aligned"] == json.loads((root / "metrics" / "align.json").read_text())["aligned"]
    assert by_name["split"].data.params["split.seed"] == "0"
    assert (root / "mlartifacts").is_dir()  # the align report, beside the database


@pytest.fixture(scope="module")
def second_repro(project, first_repro) -> tuple[str, dict[str, int], dict[str, int]]:
    root, env = project
    before = snapshot(root)
    output = dvc("repro", "triplets", project=root, env=env)
    return output, before, snapshot(root)


def test_second_repro_does_nothing(project, second_repro):
    root, env = project
    output, before, after = second_repro
    assert "Running stage" not in output, output
    assert "up to date" in output or "didn't change" in output, output
    assert after == before
    assert len(mlflow_runs(env["MLFLOW_TRACKING_URI"])) == len(DATA_STAGES)
    assert "changed" not in dvc("status", project=root, env=env)


def test_param_change_reruns_only_downstream_stages(project, second_repro):
    root, env = project
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["split"]["seed"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "split" in dvc("status", project=root, env=env)
    before = snapshot(root)

    output = dvc("repro", project=root, env=env)

    assert "Running stage 'split'" in output and "Running stage 'triplets'" in output, output
    assert "Running stage 'align'" not in output and "Running stage 'download'" not in output, output
    after = snapshot(root)
    unchanged = [k for k in before if k.startswith(("data/raw/", "data/aligned/", "metrics/align", "metrics/down"))]
    assert unchanged and all(after[k] == before[k] for k in unchanged)
    assert after["data/split.csv"] != before["data/split.csv"]
    assert after["data/triplets/train.csv"] != before["data/triplets/train.csv"]
    runs = mlflow_runs(env["MLFLOW_TRACKING_URI"])
    assert sorted(r.info.run_name for r in runs) == sorted([*DATA_STAGES, "split", "triplets"])
    seeds = sorted(r.data.params["split.seed"] for r in runs if r.info.run_name == "split")
    assert seeds == ["0", "1"]
    assert "up to date" in dvc("repro", project=root, env=env)


def test_an_untracked_key_reruns_nothing(project, second_repro):
    """align.workers cannot change a result: DVC does not track it (dvc.yaml lists the other keys)."""
    root, env = project
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["align"]["workers"] = 1
    params["download"]["cache_dir"] = "elsewhere/downloads"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "changed" not in dvc("status", project=root, env=env)


def other_archive(subset: LfwSubset, directory: Path, drop: int) -> Path:
    """A second real archive: the subset without `drop` of its single-image identities."""
    directory.mkdir(parents=True)
    dropped = set(subset.single[:drop])
    members = {name: blob for name, blob in subset.data.items() if name.split("/")[0] not in dropped}
    shutil.copyfile(subset.pairs, directory / "pairs.txt")
    return build_tgz(directory / f"lfw-minus{drop}.tgz", members)


def set_download_params(root: Path, **values) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["download"].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_switching_the_archive_reruns_download_and_the_lock_names_it(project, second_repro, lfw_subset: LfwSubset,
                                                                    tmp_path: Path):
    root, env = project
    second = other_archive(lfw_subset, tmp_path / "second", drop=1)
    pins = yaml.safe_load((root / "params.yaml").read_text())["download"]["pinned_archives"]
    set_download_params(root, local_archive=str(second),
                        pinned_archives={**pins, second.name: sha256_path(second)})  # accepted on purpose
    assert "download" in dvc("status", "download", project=root, env=env)

    output = dvc("repro", "download", project=root, env=env)

    assert "Running stage 'download'" in output, output
    locked = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["download"]["params"]["params.yaml"]
    assert locked["download.local_archive"] == str(second)
    assert locked["download.pinned_archives"][second.name] == sha256_path(second)
    source = json.loads((root / "data" / "raw" / "lfw" / "source.json").read_text())
    assert source["archive"] == second.name and source["images"] == lfw_subset.n_images - 1


def test_an_unpinned_archive_is_refused_and_nothing_changes(project, second_repro, lfw_subset: LfwSubset,
                                                           tmp_path: Path):
    root, env = project
    third = other_archive(lfw_subset, tmp_path / "third", drop=2)
    set_download_params(root, local_archive=str(third))
    raw = root / "data" / "raw"
    lock, before = (root / "dvc.lock").read_bytes(), sorted(p.relative_to(raw) for p in raw.rglob("*"))

    refused = subprocess.run([str(VENV_BIN / "dvc"), "repro", "download"], cwd=root, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    assert refused.returncode != 0
    assert "is not among download.pinned_archives" in refused.stdout and "pin it on purpose" in refused.stdout
    assert "Traceback" not in refused.stdout  # a user error: one line
    assert (root / "dvc.lock").read_bytes() == lock
    # DVC clears a stage's outputs before running it; the stage itself wrote nothing, not even a
    # temporary, so the locked data come straight back from the cache.
    assert not [p for p in raw.iterdir() if p.name.startswith(".")]
    dvc("checkout", "download", project=root, env=env)
    assert sorted(p.relative_to(raw) for p in raw.rglob("*")) == before
