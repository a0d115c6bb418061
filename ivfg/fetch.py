"""Files by URL: resumable, verified by SHA-256, renamed into place only when complete. Used for LFW
(ivfg/data/download.py) and for pretrained weights (ivfg/models/weights.py)."""
from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ivfg.errors import IvfgError
from ivfg.fileio import sha256_file


class DownloadError(IvfgError):
    """A download, checksum or archive problem; the message says what to do."""


def fetch(url: str, dest: Path, sha256: str | None, size: int | None = None, timeout: float = 60.0,
          offline_hint: str = "use a local copy") -> Path:
    """Download `url` to `dest`, resuming a previous partial download, and verify its SHA-256.

    Bytes arrive in `dest.part`; only a complete file with the right checksum is renamed to `dest`.
    `sha256=None` is for files whose publisher gives no digest: they are kept unverified.
    `offline_hint` says what to do instead when the server cannot be reached.
    """
    dest = Path(dest)
    if dest.is_file() and sha256 is not None and sha256_file(dest) == sha256:
        _check_size(dest, url, size)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "ivfg"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the partial file is already complete (or longer than the file)
            return _finish(part, dest, url, sha256, size)
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{url}: cannot connect ({exc}); check the network or {offline_hint}") from None
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored the range: start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else size
        mode = "ab" if offset else "wb"
        received = offset
        with open(part, mode) as out, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                           desc=f"download {dest.name}") as bar:
            try:
                while block := response.read(1 << 20):
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (http.client.IncompleteRead, OSError) as exc:
                raise DownloadError(f"{url}: transfer interrupted after {received} bytes ({exc}); "
                                    f"rerun to resume from {part}") from None
        if total is not None and received < total:
            raise DownloadError(f"{url}: transfer interrupted after {received} of {total} bytes; "
                                f"rerun to resume from {part}")
    return _finish(part, dest, url, sha256, size)


def _finish(part: Path, dest: Path, url: str, sha256: str | None, size: int | None) -> Path:
    actual = sha256_file(part)
    if sha256 is not None and actual != sha256:
        part.unlink()
        raise DownloadError(f"{url}: checksum mismatch (expected sha256 {sha256}, got {actual}). The bad file was "
                            "removed; rerun to download again, or fix download.sha256 (and pin the new archive in "
                            "download.pinned_archives) if the source changed on purpose.")
    part.replace(dest)  # verified: keep it, even when the size param below is wrong
    _check_size(dest, url, size)
    return dest


def _check_size(path: Path, url: str, size: int | None) -> None:
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise DownloadError(f"{url}: download.size is {size} but the file, whose SHA-256 matches download.sha256, "
                            f"has {actual} bytes; set download.size to {actual} (or null). The file was kept "
                            f"at {path}.")
