"""Fetch LFW (or take a local archive), verify SHA-256, and extract it safely."""
from __future__ import annotations

import http.client
import shutil
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ivfg.config import DownloadConfig
from ivfg.fileio import atomic_dir, sha256_file, write_json

PROTOCOL_FILES = ("pairs.txt", "people.txt")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


class DownloadError(RuntimeError):
    """A download, checksum or archive problem; the message says what to do."""


@dataclass(frozen=True)
class Source:
    archive: Path
    archive_sha256: str
    pairs: Path
    pairs_sha256: str
    origin: str


def fetch(url: str, dest: Path, sha256: str | None, size: int | None = None, timeout: float = 60.0) -> Path:
    """Download `url` to `dest`, resuming a previous partial download, and verify its SHA-256.

    Bytes arrive in `dest.part`; only a complete file with the right checksum is renamed to `dest`.
    `sha256=None` is for files whose publisher gives no digest: they are kept unverified.
    """
    dest = Path(dest)
    if dest.is_file() and sha256 is not None and sha256_file(dest) == sha256:
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
        raise DownloadError(f"{url}: cannot connect ({exc}); check the network or use a local archive "
                            "(download.local_archive or IVFG_LFW_ARCHIVE)") from None
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
    actual_size = part.stat().st_size
    actual = sha256_file(part)
    if (sha256 is not None and actual != sha256) or (size is not None and actual_size != size):
        part.unlink()
        raise DownloadError(f"{url}: checksum mismatch (expected sha256 {sha256}, size {size}; got {actual}, "
                            f"size {actual_size}). The bad file was removed; rerun to download again, or fix "
                            "download.sha256 if the source changed on purpose.")
    part.replace(dest)
    return dest


def read_sha256sums(path: Path) -> dict[str, str]:
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*").strip()] = digest.lower()
    return sums


def local_source(archive: Path, cfg: DownloadConfig) -> Source:
    """A local archive with pairs.txt (and SHA256SUMS, which wins over params) beside it."""
    if not archive.is_file():
        raise DownloadError(f"local LFW archive {archive} does not exist (set by download.local_archive "
                            "or IVFG_LFW_ARCHIVE)")
    pairs = archive.parent / "pairs.txt"
    if not pairs.is_file():
        raise DownloadError(f"{pairs} is missing: put LFW's pairs.txt beside the local archive {archive.name}")
    sums_file = archive.parent / "SHA256SUMS"
    sums = read_sha256sums(sums_file) if sums_file.is_file() else {}
    return Source(archive, sums.get(archive.name, cfg.sha256), pairs, sums.get("pairs.txt", cfg.pairs_sha256),
                  origin=str(archive))


def verify(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise DownloadError(f"{path}: checksum mismatch (expected sha256 {expected}, got {actual}); the file is "
                            "corrupt or not the one expected. Replace it, or update SHA256SUMS / download.sha256.")


def resolve_source(cfg: DownloadConfig) -> Source:
    local = cfg.resolved_local_archive()
    if local is not None:
        source = local_source(local, cfg)
        verify(source.archive, source.archive_sha256)
        verify(source.pairs, source.pairs_sha256)
        return source
    cache = Path(cfg.cache_dir)
    archive = fetch(cfg.url, cache / "lfw.tgz", cfg.sha256, cfg.size)
    pairs = fetch(cfg.pairs_url, cache / "pairs.txt", cfg.pairs_sha256)
    return Source(archive, cfg.sha256, pairs, cfg.pairs_sha256, origin=cfg.url)


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract with tarfile's 'data' filter: no absolute paths, no `..`, no links leaving the tree."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(dest, filter="data")
    except tarfile.FilterError as exc:
        raise DownloadError(f"{archive}: unsafe archive member refused ({exc})") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DownloadError(f"{archive}: corrupt or truncated archive ({exc}); delete it and download again") from None


def find_image_root(extracted: Path) -> Path:
    """The folder whose sub-folders are identities (LFW archives wrap it in `lfw/` or `lfw-deepfunneled/`)."""
    candidates = [p for p in extracted.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not candidates:
        raise DownloadError("the archive holds no images: is it really LFW?")
    roots = {p.parent.parent for p in candidates}
    if len(roots) != 1:
        raise DownloadError(f"the archive has no single NAME/NAME_000N.jpg layout (image roots: {sorted(roots)[:3]})")
    return roots.pop()


def prepare_lfw(cfg: DownloadConfig, out_dir: Path) -> dict:
    """Make `out_dir` hold images/NAME/*.jpg, the protocol files and source.json; return the figures."""
    source = resolve_source(cfg)
    with atomic_dir(out_dir) as tmp:
        safe_extract(source.archive, tmp / "extracted")
        root = find_image_root(tmp / "extracted")
        root.replace(tmp / "images")
        shutil.rmtree(tmp / "extracted")
        shutil.copyfile(source.pairs, tmp / "pairs.txt")
        for name in PROTOCOL_FILES[1:]:
            extra = source.pairs.parent / name
            if extra.is_file():
                shutil.copyfile(extra, tmp / name)
        images = [p for p in (tmp / "images").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
        figures = {
            "images": len(images),
            "identities": len({p.parent.name for p in images}),
            "archive_bytes": source.archive.stat().st_size,
        }
        write_json(tmp / "source.json", {"origin": source.origin, "archive_sha256": source.archive_sha256,
                                         "pairs_sha256": source.pairs_sha256, **figures})
    return figures
