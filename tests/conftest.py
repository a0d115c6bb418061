"""Shared fixtures: the real LFW archive, a small deterministic subset of it, and one MTCNN aligner.

The read-only development data live in `../shared/data/` beside the repository (LFW's deep-funneled
archive with its protocol files, and a CelebA subset); IVFG_SHARED_DATA points elsewhere. Tests that need LFW skip, saying why, when it is absent.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import LFW_ARCHIVE_NAME, LfwSubset, build_tgz, select_members, shared_data_dir


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    directory = shared_data_dir() / "lfw"
    if not (directory / LFW_ARCHIVE_NAME).is_file():
        pytest.skip(f"real LFW archive not found at {directory / LFW_ARCHIVE_NAME} "
                    "(set IVFG_SHARED_DATA to the folder holding lfw/)")
    return directory


@pytest.fixture(scope="session")
def lfw_subset(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> LfwSubset:
    chosen = select_members(lfw_dir / LFW_ARCHIVE_NAME)
    directory = tmp_path_factory.mktemp("lfw_subset")
    data = {f"{ident}/{name}": blob for ident, files in chosen.items() for name, blob in files.items()}
    archive = build_tgz(directory / "lfw-subset.tgz", data)
    shutil.copyfile(lfw_dir / "pairs.txt", directory / "pairs.txt")
    return LfwSubset(directory, archive, directory / "pairs.txt",
                     images={k: sorted(v) for k, v in chosen.items()}, data=data)


@pytest.fixture(scope="session")
def lfw_images(lfw_subset: LfwSubset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The subset's images as images/NAME/NAME_000N.jpg (written directly, independent of download.py)."""
    root = tmp_path_factory.mktemp("lfw_images") / "images"
    for name, blob in lfw_subset.data.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
    return root


@pytest.fixture(scope="session")
def aligner():
    """One real MTCNN (weights from the facenet-pytorch wheel) on CPU for the whole session."""
    pytest.importorskip("facenet_pytorch", reason="facenet-pytorch is not installed (scripts/setup.sh)")
    from ivfg.config import AlignConfig
    from ivfg.data.align import FaceAligner

    return FaceAligner(AlignConfig(device="cpu", workers=0))


@pytest.fixture
def no_lfw_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's leftover IVFG_LFW_ARCHIVE (no longer read; the download refuses it) must not fail tests."""
    monkeypatch.delenv("IVFG_LFW_ARCHIVE", raising=False)
