"""ivfg.evaluation.baseline: τ per recognizer, in files that later stages can depend on alone."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ivfg.errors import InputError
from ivfg.data.files import eer_threshold, write_thresholds


def result(threshold: float, ms: float) -> dict:
    return {"lfw_pairs": {"accuracy": 0.99}, "ms_per_image": ms,
            "test_split": {"auc": 0.999, "eer": 0.01, "eer_threshold": threshold, "genuine": 10, "pairs": 20}}


def test_thresholds_round_trip_and_carry_no_timings(tmp_path: Path):
    write_thresholds(tmp_path / "thresholds", {"sface": result(0.35, 45.0), "dlib-resnet": result(-0.5975041389465332, 77.0)})
    assert sorted(p.name for p in (tmp_path / "thresholds").iterdir()) == ["dlib-resnet.json", "sface.json"]
    assert eer_threshold(tmp_path / "thresholds", "dlib-resnet") == -0.5975041389465332  # exact, not rounded
    assert json.loads((tmp_path / "thresholds" / "sface.json").read_text()) == {
        "recognizer": "sface", "eer_threshold": 0.35, "eer": 0.01, "pairs": 20, "genuine": 10}


def test_a_rerun_with_other_timings_writes_identical_bytes(tmp_path: Path):
    write_thresholds(tmp_path / "a", {"dlib-resnet": result(-0.6, 77.2)})
    write_thresholds(tmp_path / "b", {"dlib-resnet": result(-0.6, 75.9)})
    assert (tmp_path / "a" / "dlib-resnet.json").read_bytes() == (tmp_path / "b" / "dlib-resnet.json").read_bytes()


def test_a_recognizer_the_baseline_did_not_run_is_named(tmp_path: Path):
    write_thresholds(tmp_path / "t", {"sface": result(0.35, 45.0)})
    with pytest.raises(InputError, match=r"dlib-resnet\.json is missing: list 'dlib-resnet' in baseline\.recognizers"):
        eer_threshold(tmp_path / "t", "dlib-resnet")
