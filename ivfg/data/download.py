"""Fetch LFW (or take a local archive), verify SHA-256, and extract it safely."""
from __future__ import annotations

import logging
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path


from ivfg.config import DownloadConfig
from ivfg.data.files import IMAGE_SUFFIXES
from ivfg.fetch import DownloadError, fetch
from ivfg.fileio import atomic_dir, sha256_file, write_json

log = logging.getLogger(__name__)
LOCAL_HINT = "use a local archive (download.local_archive)"



@dataclass(frozen=True)
class Source:
    archive: Path
    archive_sha256: str
    archive_name: str  # the name under which its digest is pinned (download.pinned_archives)
    pairs: Path
    pairs_sha256: str


def pinned_name(archive: Path, digest: str, cfg: DownloadConfig) -> str:
    """The name under which `digest` is pinned; refuse an archive that is not pinned."""
    for name, pinned in cfg.pinned_archives.items():
        if pinned == digest:
            return name
    raise DownloadError(
        f"{archive}: SHA-256 {digest} is not among download.pinned_archives ({', '.join(cfg.pinned_archives)}), "
        "so it is not extracted. If this is the archive you mean to use, pin it on purpose: add "
        f"`{archive.name}: {digest}` under download.pinned_archives in params.yaml "
        f"(or dvc exp run -S 'download.pinned_archives.{archive.stem.replace('.', '_')}={digest}').")


def local_source(archive: Path, cfg: DownloadConfig) -> Source:
    """A local archive (pinned by its SHA-256) with LFW's pairs.txt (pinned too) beside it."""
    if archive.is_dir():
        raise DownloadError(f"local LFW archive {archive} (download.local_archive) is a folder; point "
                            "download.local_archive at LFW's .tgz inside it, or set it to null to download it")
    if not archive.is_file():
        raise DownloadError(f"local LFW archive {archive} (download.local_archive) does not exist; point "
                            "download.local_archive at LFW's .tgz, or set it to null to download it")
    pairs = archive.parent / "pairs.txt"
    if not pairs.is_file():
        raise DownloadError(f"{pairs} is missing: put LFW's pairs.txt beside the local archive {archive.name}")
    digest = sha256_file(archive)
    return Source(archive, digest, pinned_name(archive, digest, cfg), pairs, cfg.pairs_sha256)


def verify(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise DownloadError(f"{path}: checksum mismatch (expected sha256 {expected}, got {actual}); the file is "
                            "corrupt or not the one expected. Replace it, or update download.pairs_sha256 if "
                            "it changed on purpose.")


def resolve_source(cfg: DownloadConfig, root: Path) -> Source:
    """The archive and pairs.txt, verified: a local archive (download.local_archive, relative to the
    project root `root`) or the download; either way the archive must be pinned."""
    if os.environ.get("IVFG_LFW_ARCHIVE"):
        raise DownloadError("IVFG_LFW_ARCHIVE is set, but the archive is a param now (DVC cannot see the "
                            "environment): unset it and use `make pipeline LFW_ARCHIVE=…` or "
                            "`dvc exp run -S download.local_archive=…`")
    local = cfg.resolved_local_archive(root)
    if local is not None:
        source = local_source(local, cfg)
        verify(source.pairs, source.pairs_sha256)
        return source
    cache = Path(cfg.cache_dir)
    archive = fetch(cfg.url, cache / "lfw.tgz", cfg.sha256, cfg.size, offline_hint=LOCAL_HINT)
    pairs = fetch(cfg.pairs_url, cache / "pairs.txt", cfg.pairs_sha256, offline_hint=LOCAL_HINT)
    return Source(archive, cfg.sha256, pinned_name(archive, cfg.sha256, cfg), pairs, cfg.pairs_sha256)


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract with tarfile's 'data' filter: no absolute paths, no `..`, no links leaving the tree."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            absolute = [m.name for m in tar.getmembers() if m.name.startswith("/")]
            if absolute:  # the filter makes them relative, so nothing escapes; still, LFW has none
                log.warning("%s: %d member(s) have absolute paths (e.g. %s); they are extracted inside the output "
                            "as relative paths. A genuine LFW archive has none: check where this one came from.",
                            archive, len(absolute), absolute[0])
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


def prepare_lfw(cfg: DownloadConfig, out_dir: Path, root: Path) -> dict:
    """Make `out_dir` hold images/NAME/*.jpg, pairs.txt and source.json; return the figures.
    Nothing in the output depends on where the archive or the project lies, so the same archive
    gives the same DVC hash in every checkout."""
    source = resolve_source(cfg, root)
    with atomic_dir(out_dir) as tmp:
        safe_extract(source.archive, tmp / "extracted")
        root = find_image_root(tmp / "extracted")
        root.replace(tmp / "images")
        shutil.rmtree(tmp / "extracted")
        shutil.copyfile(source.pairs, tmp / "pairs.txt")
        images = [p for p in (tmp / "images").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
        figures = {
            "images": len(images),
            "identities": len({p.parent.name for p in images}),
            "archive_bytes": source.archive.stat().st_size,
        }
        write_json(tmp / "source.json", {"archive": source.archive_name,
                                         "archive_sha256": source.archive_sha256,
                                         "pairs_sha256": source.pairs_sha256, **figures})
    return figures
