"""Plain helpers shared by the tests (fixtures live in conftest.py)."""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LFW_ARCHIVE_NAME = "lfw-deepfunneled.tgz"

# Subset shape. Ten identities of each kind (not fewer) so that the 8:1:1 identity split gives every split
# at least two identities, which the triplets stage needs to draw impostors.
SUBSET_MULTI = 10          # identities with >= 2 images, the first ones in (alphabetical) archive order
SUBSET_SINGLE = 10         # identities with exactly 1 image, likewise
SUBSET_MAX_PER_ID = 3      # images kept per multi-image identity


def shared_data_dir() -> Path:
    value = os.environ.get("IVFG_SHARED_DATA")
    return Path(value).expanduser().resolve() if value else REPO_ROOT.parent / "shared" / "data"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_path(path: Path) -> str:
    return sha256_bytes(Path(path).read_bytes())


@dataclass
class LfwSubset:
    """A small LFW-layout archive with pairs.txt beside it, like the real one."""

    dir: Path
    archive: Path
    pairs: Path
    images: dict[str, list[str]] = field(default_factory=dict)  # identity -> sorted file names
    data: dict[str, bytes] = field(default_factory=dict)        # "NAME/NAME_000N.jpg" -> JPEG bytes

    @property
    def n_images(self) -> int:
        return sum(len(v) for v in self.images.values())

    @property
    def multi(self) -> list[str]:
        return sorted(k for k, v in self.images.items() if len(v) >= 2)

    @property
    def single(self) -> list[str]:
        return sorted(k for k, v in self.images.items() if len(v) == 1)

    def download_params(self) -> dict:
        """The `download` params section that uses this archive and pins it (as one adds an archive)."""
        from ivfg.config import DownloadConfig

        pins = {**DownloadConfig().pinned_archives, self.archive.name: sha256_path(self.archive)}
        return {"local_archive": str(self.archive), "pinned_archives": pins}

    def image_bytes(self, identity: str, index: int = 0) -> bytes:
        return self.data[f"{identity}/{self.images[identity][index]}"]


def select_members(archive: Path) -> dict[str, dict[str, bytes]]:
    """Stream the archive (alphabetical NAME/ folders) and keep the first identities of each kind."""
    chosen: dict[str, dict[str, bytes]] = {}
    n_multi = n_single = 0
    current, files = None, {}

    def close(identity, files):
        nonlocal n_multi, n_single
        if identity is None:
            return
        if len(files) >= 2 and n_multi < SUBSET_MULTI:
            chosen[identity] = dict(sorted(files.items())[:SUBSET_MAX_PER_ID])
            n_multi += 1
        elif len(files) == 1 and n_single < SUBSET_SINGLE:
            chosen[identity] = files
            n_single += 1

    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            parts = member.name.split("/")
            if len(parts) != 3 or not parts[2].lower().endswith(".jpg"):
                continue
            identity = parts[1]
            if identity != current:
                close(current, files)
                if n_multi >= SUBSET_MULTI and n_single >= SUBSET_SINGLE:
                    current = None
                    break
                current, files = identity, {}
            files[parts[2]] = tar.extractfile(member).read()
        close(current, files)
    if n_multi < SUBSET_MULTI or n_single < SUBSET_SINGLE:
        raise RuntimeError(f"{archive}: found only {n_multi} multi-image and {n_single} single-image identities")
    return chosen


def build_tgz(target: Path, members: dict[str, bytes], top: str = "lfw-deepfunneled") -> Path:
    """A gzip tar with `top/NAME/` directories and the files in `members` ("NAME/file" -> bytes)."""
    with tarfile.open(target, "w:gz") as tar:
        dirs = sorted({name.split("/")[0] for name in members})
        for d in [top, *(f"{top}/{d}" for d in dirs)]:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return target


