"""CelebA for Table 2: the identity file, the choice of whole identities, and gathering the chosen
images from a folder or an archive (safely), on the real development subset in shared/data."""
from __future__ import annotations

import io
import tarfile

import pytest

from ivfg.data.celeba import choose_images, gather, read_identities
from ivfg.errors import InputError
from tests.helpers import shared_data_dir


@pytest.fixture(scope="module")
def celeba_dev():
    directory = shared_data_dir() / "celeba-dev"
    if not (directory / "identity_CelebA.txt").is_file():
        pytest.skip(f"the CelebA development subset is not at {directory}")
    return directory


def test_the_official_identity_file_is_read_and_a_bad_line_is_named(celeba_dev, tmp_path):
    identities = read_identities(celeba_dev / "identity_CelebA.txt")
    assert len(identities) == 9682 and identities["000001.jpg"] == "2880"
    bad = tmp_path / "identity_CelebA.txt"
    bad.write_text("000001.jpg 2880\n000002.jpg\n")
    with pytest.raises(InputError, match=r"line 2 is not 'FILE.jpg IDENTITY'"):
        read_identities(bad)
    with pytest.raises(InputError, match="celeba.identities"):
        read_identities(tmp_path / "missing.txt")


def test_whole_identities_with_two_or_more_images_are_chosen_up_to_the_limit():
    identities = {f"{i:06d}.jpg": str(i % 7) for i in range(30)} | {"999999.jpg": "lonely"}
    chosen = choose_images(identities, 12, seed=0)
    assert len(chosen) <= 12 and "999999.jpg" not in chosen
    for person in set(chosen.values()):
        assert sum(v == person for v in chosen.values()) == sum(v == person for v in identities.values())
    assert chosen == choose_images(identities, 12, seed=0) and chosen != choose_images(identities, 12, seed=1)
    assert len(choose_images(identities, None, 0)) == 30


def test_images_are_gathered_by_identity_from_the_real_archive(celeba_dev, tmp_path):
    identities = read_identities(celeba_dev / "identity_CelebA.txt")
    chosen = choose_images(identities, 20, seed=0)
    found = gather(celeba_dev / "img_align_celeba_small.tgz", chosen, tmp_path / "by_identity")
    assert found == len(chosen)
    for name, person in chosen.items():
        assert (tmp_path / "by_identity" / person / name).read_bytes()[:2] == b"\xff\xd8"  # JPEG
    # The same from a folder of images.
    folder = tmp_path / "folder"
    for name, person in chosen.items():
        (folder / "img").mkdir(parents=True, exist_ok=True)
        (folder / "img" / name).write_bytes((tmp_path / "by_identity" / person / name).read_bytes())
    assert gather(folder, chosen, tmp_path / "again") == len(chosen)


def test_unset_celeba_paths_are_named(tmp_path):
    from ivfg.config import AlignConfig, CelebaConfig, ConfigError
    from ivfg.data.celeba import prepare_celeba

    with pytest.raises(ConfigError, match="celeba.images and celeba.identities"):
        prepare_celeba(CelebaConfig(), AlignConfig(), tmp_path / "out")


def test_an_archive_member_that_is_a_link_is_refused(tmp_path):
    archive = tmp_path / "evil.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo("img_align_celeba/000001.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        data = b"\xff\xd8 not really"
        info = tarfile.TarInfo("img_align_celeba/000002.jpg")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    found = gather(archive, {"000001.jpg": "1", "000002.jpg": "1"}, tmp_path / "out")
    assert found == 1 and not (tmp_path / "out" / "1" / "000001.jpg").exists()
