"""ivfg.data.download: resumable, verified downloads from a real HTTP server on loopback, and safe
preparation of a local LFW archive."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import socket
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ivfg.config import DownloadConfig
from ivfg.data.download import prepare_lfw
from ivfg.fetch import DownloadError, fetch
from tests.helpers import LfwSubset, build_tgz, sha256_path

PAYLOAD = os.urandom(3 * (1 << 20) + 12345)  # several of fetch's 1 MiB reads
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


# ---------------------------------------------------------------- a real HTTP server with Range support

@dataclass
class ServerState:
    payload: bytes = PAYLOAD
    cut_after: int | None = None     # the first request sends this many body bytes, then drops the line
    honour_range: bool = True
    status: int = 200                # e.g. 404 to fail every request
    requests: list[dict[str, str]] = field(default_factory=list)


class RangeHandler(BaseHTTPRequestHandler):
    state: ServerState  # set per server

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        state = self.server.state  # type: ignore[attr-defined]
        state.requests.append({k: v for k, v in self.headers.items()})
        first = len(state.requests) == 1
        if state.status != 200:
            self.send_error(state.status)
            return
        data, start = state.payload, 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match and state.honour_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if first and state.cut_after is not None:
            self.wfile.write(body[: state.cut_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.daemon_threads = True
    httpd.state = ServerState()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    httpd.url = f"http://{host}:{port}/lfw.tgz"  # type: ignore[attr-defined]
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- fetch

def test_fetch_verifies_and_lands_the_file(server, tmp_path: Path):
    dest = tmp_path / "cache" / "lfw.tgz"
    assert fetch(server.url, dest, PAYLOAD_SHA, size=len(PAYLOAD)) == dest
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["lfw.tgz"]  # no .part left
    assert "Range" not in server.state.requests[0]


def test_fetch_skips_a_verified_file(server, tmp_path: Path):
    dest = tmp_path / "lfw.tgz"
    dest.write_bytes(PAYLOAD)
    fetch(server.url, dest, PAYLOAD_SHA)
    assert server.state.requests == []


def test_interrupted_transfer_keeps_part_and_resumes(server, tmp_path: Path):
    cut = (1 << 20) + 777
    server.state.cut_after = cut
    dest = tmp_path / "lfw.tgz"
    part = tmp_path / "lfw.tgz.part"
    with pytest.raises(DownloadError, match="interrupted") as info:
        fetch(server.url, dest, PAYLOAD_SHA, size=len(PAYLOAD))
    assert "rerun to resume" in str(info.value)
    assert not dest.exists()
    kept = part.read_bytes()
    assert 0 < len(kept) <= cut and kept == PAYLOAD[: len(kept)]  # what arrived, and nothing else

    assert fetch(server.url, dest, PAYLOAD_SHA, size=len(PAYLOAD)) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not part.exists()
    assert len(server.state.requests) == 2
    assert server.state.requests[1]["Range"] == f"bytes={len(kept)}-"  # resumed, not restarted


def test_resume_against_a_server_ignoring_range_starts_over(server, tmp_path: Path):
    server.state.honour_range = False
    dest = tmp_path / "lfw.tgz"
    (tmp_path / "lfw.tgz.part").write_bytes(b"stale bytes that must not be kept")
    fetch(server.url, dest, PAYLOAD_SHA, size=len(PAYLOAD))
    assert server.state.requests[0]["Range"] == "bytes=33-"
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_on_416(server, tmp_path: Path):
    dest = tmp_path / "lfw.tgz"
    (tmp_path / "lfw.tgz.part").write_bytes(PAYLOAD)
    fetch(server.url, dest, PAYLOAD_SHA, size=len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "lfw.tgz.part").exists()


def test_checksum_mismatch_removes_everything(server, tmp_path: Path):
    dest = tmp_path / "lfw.tgz"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch(server.url, dest, "0" * 64)
    assert list(tmp_path.iterdir()) == []
    # A resumed download that turns out corrupt is thrown away too, so the next run starts clean.
    (tmp_path / "lfw.tgz.part").write_bytes(b"x" * 1000)  # wrong leading bytes
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch(server.url, dest, PAYLOAD_SHA)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_param_is_named_and_the_verified_file_kept(server, tmp_path: Path):
    dest = tmp_path / "lfw.tgz"
    with pytest.raises(DownloadError, match=rf"download\.size is {len(PAYLOAD) + 1} but the file, whose SHA-256 "
                                            rf"matches download\.sha256, has {len(PAYLOAD)} bytes"):
        fetch(server.url, dest, PAYLOAD_SHA, size=len(PAYLOAD) + 1)
    assert dest.read_bytes() == PAYLOAD  # the right file is not thrown away for a wrong param
    with pytest.raises(DownloadError, match=r"download\.size"):  # still named on the next run
        fetch(server.url, dest, PAYLOAD_SHA, size=len(PAYLOAD) + 1)
    fetch(server.url, dest, PAYLOAD_SHA, size=len(PAYLOAD))
    assert len(server.state.requests) == 1  # fixed param: no second download


def test_http_error_is_a_download_error(server, tmp_path: Path):
    server.state.status = 404
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(server.url, tmp_path / "lfw.tgz", PAYLOAD_SHA)
    assert not (tmp_path / "lfw.tgz").exists()


def test_connection_refused_is_a_download_error(tmp_path: Path):
    url = f"http://127.0.0.1:{free_port()}/lfw.tgz"
    with pytest.raises(DownloadError, match="cannot connect.*local archive"):
        fetch(url, tmp_path / "lfw.tgz", PAYLOAD_SHA, timeout=5, offline_hint="use a local archive")
    assert not (tmp_path / "lfw.tgz").exists()


def test_remote_prepare_lfw_downloads_into_the_cache(server, lfw_subset: LfwSubset, tmp_path: Path, no_lfw_env):
    """The URL path end to end: archive and pairs.txt from the server, verified, cached, extracted."""
    archive_bytes = lfw_subset.archive.read_bytes()
    pairs_bytes = lfw_subset.pairs.read_bytes()

    class Routes(RangeHandler):
        def do_GET(self):
            self.server.state.payload = pairs_bytes if self.path.endswith("pairs.txt") else archive_bytes
            super().do_GET()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Routes)
    httpd.state = ServerState()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        cfg = DownloadConfig(url=f"{base}/lfw.tgz", sha256=hashlib.sha256(archive_bytes).hexdigest(),
                             size=len(archive_bytes), pairs_url=f"{base}/pairs.txt",
                             pairs_sha256=hashlib.sha256(pairs_bytes).hexdigest(),
                             cache_dir=str(tmp_path / "cache"),
                             pinned_archives={"lfw.tgz": hashlib.sha256(archive_bytes).hexdigest()})
        figures = prepare_lfw(cfg, tmp_path / "raw" / "lfw", tmp_path)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert figures["images"] == lfw_subset.n_images
    assert (tmp_path / "cache" / "lfw.tgz").read_bytes() == archive_bytes
    assert (tmp_path / "raw" / "lfw" / "pairs.txt").read_bytes() == pairs_bytes
    assert json.loads((tmp_path / "raw" / "lfw" / "source.json").read_text())["archive"] == "lfw.tgz"


# ---------------------------------------------------------------- prepare_lfw with a local archive

def listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def local_copy(subset: LfwSubset, directory: Path, archive_bytes: bytes | None = None, pairs: bool = True) -> Path:
    """An archive (by default the subset's) with pairs.txt beside it."""
    directory.mkdir(parents=True)
    archive = directory / "lfw.tgz"
    archive.write_bytes(subset.archive.read_bytes() if archive_bytes is None else archive_bytes)
    if pairs:
        shutil.copyfile(subset.pairs, directory / "pairs.txt")
    return archive


def pinned(archive: Path, **overrides) -> DownloadConfig:
    """Params that use `archive` and pin its digest on purpose (as a user adding an archive would)."""
    values = {"local_archive": str(archive), "pinned_archives": {archive.name: sha256_path(archive)}, **overrides}
    return DownloadConfig(**values)


def test_prepare_lfw_from_local_archive(lfw_subset: LfwSubset, tmp_path: Path, no_lfw_env):
    out = tmp_path / "raw" / "lfw"
    figures = prepare_lfw(pinned(lfw_subset.archive), out, tmp_path)

    assert figures == {"images": lfw_subset.n_images, "identities": len(lfw_subset.images),
                       "archive_bytes": lfw_subset.archive.stat().st_size}
    found = {p.parent.name: [] for p in (out / "images").glob("*/*.jpg")}
    for p in (out / "images").glob("*/*.jpg"):
        found[p.parent.name].append(p.name)
    assert {k: sorted(v) for k, v in found.items()} == lfw_subset.images
    for name, blob in lfw_subset.data.items():
        assert (out / "images" / name).read_bytes() == blob
    assert (out / "pairs.txt").read_bytes() == lfw_subset.pairs.read_bytes()
    source = json.loads((out / "source.json").read_text())
    assert source["archive"] == lfw_subset.archive.name
    assert source["archive_sha256"] == sha256_path(lfw_subset.archive)
    assert source["pairs_sha256"] == sha256_path(lfw_subset.pairs)
    assert source["images"] == lfw_subset.n_images
    assert sorted(p.name for p in out.iterdir()) == ["images", "pairs.txt", "source.json"]
    assert [p.name for p in out.parent.iterdir()] == ["lfw"]  # no temporary directory left


def test_both_well_known_archives_are_pinned_by_default():
    pins = DownloadConfig().pinned_archives
    assert pins["lfw-deepfunneled.tgz"] == "b23184430dacac3aa6570e376f79ea5b3ceb8327a2be241ebef592275bba90d3"
    assert pins["lfw.tgz"] == DownloadConfig().sha256  # the figshare download is pinned too


def test_the_real_deep_funneled_archive_is_accepted_by_default(lfw_dir: Path, no_lfw_env):
    from ivfg.data.download import resolve_source

    source = resolve_source(DownloadConfig(local_archive=str(lfw_dir / "lfw-deepfunneled.tgz")), Path("/"))
    assert source.archive_sha256 == DownloadConfig().pinned_archives["lfw-deepfunneled.tgz"]


def test_the_same_archive_gives_the_same_bytes_from_any_location(lfw_subset: LfwSubset, tmp_path: Path,
                                                                  no_lfw_env):
    """No absolute path in the output: two checkouts in different places lock the same hash."""
    outputs = []
    for place in ("one", "two/deeper"):
        root = tmp_path / place
        archive = local_copy(lfw_subset, root / "elsewhere")
        out = root / "data" / "raw" / "lfw"
        # relative to the project root, as params.yaml gives it
        prepare_lfw(pinned(archive, local_archive="elsewhere/lfw.tgz"), out, root)
        outputs.append({p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()})
        assert str(tmp_path).encode() not in (out / "source.json").read_bytes()
    assert outputs[0] == outputs[1]


def test_unpinned_archive_is_refused_and_nothing_is_written(lfw_subset: LfwSubset, tmp_path: Path, no_lfw_env,
                                                            previous_output: Path):
    archive = local_copy(lfw_subset, tmp_path / "src")
    # A checksum file lying beside the archive vouches for nothing: the pins live in the params.
    (tmp_path / "src" / "SHA256SUMS").write_text(f"{sha256_path(archive)}  lfw.tgz\n")
    with pytest.raises(DownloadError, match=r"is not among download\.pinned_archives.*pin it on purpose.*"
                                            + sha256_path(archive)):
        prepare_lfw(DownloadConfig(local_archive=str(archive)), previous_output, tmp_path)
    assert_previous_untouched(previous_output)


def test_environment_variable_is_refused(lfw_subset: LfwSubset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """DVC cannot see the environment: the old variable must not silently pick the data."""
    monkeypatch.setenv("IVFG_LFW_ARCHIVE", str(lfw_subset.archive))
    with pytest.raises(DownloadError, match="IVFG_LFW_ARCHIVE is set.*download.local_archive"):
        prepare_lfw(pinned(lfw_subset.archive), tmp_path / "out", tmp_path)
    assert not (tmp_path / "out").exists()


def test_prepare_lfw_replaces_previous_output(lfw_subset: LfwSubset, tmp_path: Path, no_lfw_env):
    out = tmp_path / "lfw"
    (out / "images" / "Stale_Person").mkdir(parents=True)
    (out / "images" / "Stale_Person" / "Stale_Person_0001.jpg").write_bytes(b"old")
    prepare_lfw(pinned(lfw_subset.archive), out, tmp_path)
    assert not (out / "images" / "Stale_Person").exists()
    assert len(list((out / "images").glob("*/*.jpg"))) == lfw_subset.n_images


def test_absolute_member_paths_are_reported(lfw_subset: LfwSubset, tmp_path: Path, no_lfw_env,
                                            caplog: pytest.LogCaptureFixture):
    build = io.BytesIO()
    with tarfile.open(fileobj=build, mode="w:gz") as tar:
        add_three_faces(tar, lfw_subset, top="/lfw")
    archive = local_copy(lfw_subset, tmp_path / "src", archive_bytes=build.getvalue())
    with caplog.at_level("WARNING"):
        figures = prepare_lfw(pinned(archive), tmp_path / "project" / "lfw", tmp_path)
    assert figures["images"] == 3  # extracted inside the output, as relative paths
    assert "3 member(s) have absolute paths" in caplog.text
    assert not Path("/lfw").exists()


@pytest.fixture
def previous_output(tmp_path: Path) -> Path:
    out = tmp_path / "raw" / "lfw"
    (out / "images" / "Old_Person").mkdir(parents=True)
    (out / "images" / "Old_Person" / "Old_Person_0001.jpg").write_bytes(b"previous run")
    (out / "pairs.txt").write_text("previous pairs\n")
    return out


def assert_previous_untouched(out: Path) -> None:
    assert listing(out) == ["images", "images/Old_Person", "images/Old_Person/Old_Person_0001.jpg", "pairs.txt"]
    assert (out / "images" / "Old_Person" / "Old_Person_0001.jpg").read_bytes() == b"previous run"
    assert [p.name for p in out.parent.iterdir()] == ["lfw"]  # no temporary directory left behind


@pytest.mark.parametrize("previous", [False, True], ids=["fresh", "over-previous-output"])
def test_truncated_archive_is_refused(previous: bool, lfw_subset: LfwSubset, tmp_path: Path, no_lfw_env,
                                      request: pytest.FixtureRequest):
    data = lfw_subset.archive.read_bytes()
    # Pinned as it is, so it is extraction that must notice.
    archive = local_copy(lfw_subset, tmp_path / "src", archive_bytes=data[: len(data) // 2])
    out = request.getfixturevalue("previous_output") if previous else tmp_path / "raw" / "lfw"
    with pytest.raises(DownloadError, match="corrupt or truncated"):
        prepare_lfw(pinned(archive), out, tmp_path)
    if previous:
        assert_previous_untouched(out)
    else:
        assert not out.exists()
        assert list(out.parent.iterdir()) == []


def test_pairs_not_matching_the_pin_is_refused(lfw_subset: LfwSubset, tmp_path: Path, no_lfw_env):
    archive = local_copy(lfw_subset, tmp_path / "src")
    (tmp_path / "src" / "pairs.txt").write_text("10\t300\ntampered\n")
    with pytest.raises(DownloadError, match=r"pairs\.txt: checksum mismatch"):
        prepare_lfw(pinned(archive), tmp_path / "out", tmp_path)
    assert not (tmp_path / "out").exists()


def test_missing_pairs_txt_is_refused(lfw_subset: LfwSubset, tmp_path: Path, no_lfw_env):
    archive = local_copy(lfw_subset, tmp_path / "src", pairs=False)
    with pytest.raises(DownloadError, match=r"pairs\.txt is missing"):
        prepare_lfw(pinned(archive), tmp_path / "out", tmp_path)
    assert not (tmp_path / "out").exists()


def test_missing_local_archive_is_refused(tmp_path: Path, no_lfw_env):
    with pytest.raises(DownloadError, match=r"does not exist.*download\.local_archive"):
        prepare_lfw(DownloadConfig(local_archive=str(tmp_path / "nope.tgz")), tmp_path / "out", tmp_path)
    assert not (tmp_path / "out").exists()


def test_a_folder_as_local_archive_is_named_a_folder(tmp_path: Path, no_lfw_env):
    (tmp_path / "lfw").mkdir()
    with pytest.raises(DownloadError, match=r"lfw \(download\.local_archive\) is a folder"):
        prepare_lfw(DownloadConfig(local_archive=str(tmp_path / "lfw")), tmp_path / "out", tmp_path)
    assert not (tmp_path / "out").exists()


def test_an_empty_local_archive_is_refused_rather_than_taken_for_null():
    from ivfg.config import ConfigError, parse_params

    with pytest.raises(ConfigError, match=r"download\.local_archive: .*is empty: give the path .* or null"):
        parse_params({"download": {"local_archive": "  "}})


def test_archive_without_images_is_refused(lfw_subset: LfwSubset, tmp_path: Path, no_lfw_env):
    blob = tmp_path / "empty.tgz"
    build_tgz(blob, {"Nobody/readme.txt": b"no images here"})
    archive = local_copy(lfw_subset, tmp_path / "src", archive_bytes=blob.read_bytes())
    with pytest.raises(DownloadError, match="no images"):
        prepare_lfw(pinned(archive), tmp_path / "out", tmp_path)
    assert not (tmp_path / "out").exists()


def add_three_faces(tar: tarfile.TarFile, subset: LfwSubset, top: str) -> None:
    """The subset's first three images as `top/NAME/NAME_000N.jpg` members."""
    for name, data in sorted(subset.data.items())[:3]:
        info = tarfile.TarInfo(f"{top}/{name}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def malicious_tgz(target: Path, subset: LfwSubset, kind: str) -> None:
    """A real LFW-looking archive with one hostile member appended."""
    build = io.BytesIO()
    with tarfile.open(fileobj=build, mode="w:gz") as tar:
        add_three_faces(tar, subset, top="lfw")
        if kind.startswith("dotdot"):
            payload = b"escaped!"
            info = tarfile.TarInfo({"dotdot1": "../evil.txt", "dotdot3": "../../../evil.txt"}[kind])
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        else:
            info = tarfile.TarInfo("lfw/Evil_Person/Evil_Person_0001.jpg")
            info.type = tarfile.SYMTYPE
            info.linkname = {"symlink-abs": "/etc/passwd", "symlink-rel": "../../../../../../etc/passwd"}[kind]
            tar.addfile(info)
    target.write_bytes(build.getvalue())


@pytest.mark.parametrize("kind", ["dotdot1", "dotdot3", "symlink-abs", "symlink-rel"])
def test_malicious_archive_is_refused(kind: str, lfw_subset: LfwSubset, tmp_path: Path, no_lfw_env):
    blob = tmp_path / "blob.tgz"
    malicious_tgz(blob, lfw_subset, kind)
    archive = local_copy(lfw_subset, tmp_path / "src", archive_bytes=blob.read_bytes())
    blob.unlink()
    work = tmp_path / "project" / "data" / "raw"
    work.mkdir(parents=True)
    before = listing(tmp_path)
    with pytest.raises(DownloadError, match="unsafe archive member refused"):
        prepare_lfw(pinned(archive), work / "lfw", tmp_path)
    assert listing(tmp_path) == before  # nothing written anywhere, inside or outside the output
    assert not list(tmp_path.rglob("evil.txt"))
    assert not any(p.is_symlink() for p in tmp_path.rglob("*"))
