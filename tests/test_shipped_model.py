"""The model the package ships (ivfg/assets/ivfg.pt) is the export of the committed pipeline run, and the
`ivfg` command uses it when no --model is given, so that it works right after set-up."""
from __future__ import annotations

import hashlib
import subprocess

import yaml

from ivfg.cli import DEFAULT_MODEL, main
from ivfg.virtual import load_model
from tests.helpers import REPO_ROOT


def locked_export() -> dict:
    lock = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())
    (out,) = [o for o in lock["stages"]["export"]["outs"] if o["path"] == "models/ivfg.pt"]
    return out


def test_the_shipped_model_is_the_locked_export():
    out = locked_export()
    data = DEFAULT_MODEL.read_bytes()
    assert DEFAULT_MODEL.parent.name == "assets" and DEFAULT_MODEL.parent.parent.name == "ivfg"
    assert len(data) == out["size"] and hashlib.md5(data).hexdigest() == out["md5"]


def test_the_outputs_git_keeps_are_the_ones_the_locked_run_wrote():
    """Metrics, plots and reports live in git (`cache: false`): each must be the file dvc.lock records, or
    the README's figures and the lock tell two stories."""
    tracked = set(subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, check=True, capture_output=True,
                                 text=True).stdout.splitlines())
    lock = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())
    checked, differ = 0, []
    for name, stage in lock["stages"].items():
        for out in stage.get("outs", []):
            if out["path"] in tracked:
                checked += 1
                if hashlib.md5((REPO_ROOT / out["path"]).read_bytes()).hexdigest() != out["md5"]:
                    differ.append(f"{name}: {out['path']}")
    assert checked >= 10
    assert not differ, f"committed outputs that are not the locked run's (commit the run's files): {differ}"


def test_the_shipped_model_loads_with_both_thresholds_and_keygen_uses_it(tmp_path):
    virtual = load_model(DEFAULT_MODEL)
    info = virtual.model_info
    assert info["eval_recognizer"] == "dlib-resnet" and info["eval_threshold"] is not None
    assert info["virtual_threshold"] is not None
    assert main(["keygen", "-o", str(tmp_path / "k.key")]) == 0  # no --model: the shipped one
    assert len((tmp_path / "k.key").read_text().strip()) == virtual.key_bits
