"""ivfg.fileio: results appear whole or not at all."""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from ivfg.fileio import atomic_dir, atomic_path, sha256_file, write_json, write_text


class Boom(RuntimeError):
    pass


def test_atomic_path_replaces_target_on_success(tmp_path: Path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_atomic_path_keeps_old_target_on_failure(tmp_path: Path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            tmp.write_text("half-written")
            raise Boom
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_dir_creates_and_replaces(tmp_path: Path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        assert tmp.is_dir() and not any(tmp.iterdir())
        (tmp / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_failure_leaves_previous_dir_untouched(tmp_path: Path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    with pytest.raises(Boom):
        with atomic_dir(target) as tmp:
            (tmp / "partial.txt").write_text("x")
            raise Boom
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_failure_creates_nothing(tmp_path: Path):
    with pytest.raises(Boom):
        with atomic_dir(tmp_path / "out"):
            raise Boom
    assert list(tmp_path.iterdir()) == []


def test_results_get_the_usual_permissions_not_the_temporaries_private_ones(tmp_path: Path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "m.json", "{}")
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "a.txt").write_text("1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755


def test_temporaries_of_a_killed_run_are_removed_by_the_next(tmp_path: Path):
    (tmp_path / ".out.abc123.tmp").mkdir()
    (tmp_path / ".out.abc123.tmp" / "half.png").write_text("x")
    (tmp_path / ".m.json.xyz.tmp").write_text("half")
    (tmp_path / ".other.q.tmp").write_text("not ours")
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("1")
    write_text(tmp_path / "m.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.q.tmp", "m.json", "out"]


def test_write_json_and_text(tmp_path: Path):
    write_json(tmp_path / "m.json", {"b": 1, "a": [1.5, "x"]})
    text = (tmp_path / "m.json").read_text()
    assert json.loads(text) == {"a": [1.5, "x"], "b": 1}
    assert text.endswith("\n") and text.index('"a"') < text.index('"b"')  # sorted, stable diffs
    write_text(tmp_path / "t.txt", "hello")
    assert (tmp_path / "t.txt").read_text() == "hello"


def test_sha256_file_matches_hashlib_across_chunks(tmp_path: Path):
    data = bytes(range(256)) * 1000
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path, chunk=4096) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
