"""The model the package ships (ivfg/assets/ivfg.pt) is the export of the committed pipeline run, and the
`ivfg` command uses it when no --model is given, so that it works right after set-up."""
from __future__ import annotations

import hashlib

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


def test_the_shipped_model_loads_with_both_thresholds_and_keygen_uses_it(tmp_path):
    virtual = load_model(DEFAULT_MODEL)
    info = virtual.model_info
    assert info["eval_recognizer"] == "dlib-resnet" and info["eval_threshold"] is not None
    assert info["virtual_threshold"] is not None
    assert main(["keygen", "-o", str(tmp_path / "k.key")]) == 0  # no --model: the shipped one
    assert len((tmp_path / "k.key").read_text().strip()) == virtual.key_bits
