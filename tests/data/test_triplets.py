"""ivfg.data.triplets: (x1, x2, y) with x1, x2 one person and y another, seeded."""
from __future__ import annotations

from collections import Counter

import pytest

from ivfg.config import TripletsConfig
from ivfg.data.triplets import make_triplets
from ivfg.errors import InputError

IMAGES_PER_IDENTITY = {"Alice": 5, "Bob": 2, "Carol": 3, "Dave": 1, "Erin": 1, "Frank": 8, "Grace": 2}


def rows_for(image_counts: dict[str, int]) -> list[dict[str, str]]:
    return [{"image": f"images/{name}/{name}_{k + 1:04d}.png", "identity": name, "split": "train"}
            for name, n in image_counts.items() for k in range(n)]


def identity_of(image: str) -> str:
    return image.split("/")[1]


@pytest.fixture
def rows() -> list[dict[str, str]]:
    return rows_for(IMAGES_PER_IDENTITY)


@pytest.mark.parametrize("per_image", [1, 3])
def test_triplets_are_genuine_and_impostor(rows, per_image: int):
    triplets = make_triplets(rows, TripletsConfig(per_image=per_image))
    known = {r["image"] for r in rows}
    for x1, x2, y in triplets:
        assert {x1, x2, y} <= known
        assert identity_of(x1) == identity_of(x2)
        assert x1 != x2
        assert identity_of(y) != identity_of(x1)


def test_every_image_of_every_multi_image_identity_anchors(rows):
    per_image = 2
    triplets = make_triplets(rows, TripletsConfig(per_image=per_image))
    multi = {name for name, n in IMAGES_PER_IDENTITY.items() if n >= 2}
    assert {identity_of(x1) for x1, _, _ in triplets} == multi
    anchors = Counter(x1 for x1, _, _ in triplets)
    expected = {r["image"] for r in rows if r["identity"] in multi}
    assert set(anchors) == expected
    assert set(anchors.values()) == {per_image}
    assert len(triplets) == per_image * sum(n for n in IMAGES_PER_IDENTITY.values() if n >= 2)


def test_single_image_identities_serve_as_impostors(rows):
    triplets = make_triplets(rows, TripletsConfig(per_image=20))
    impostors = Counter(identity_of(y) for _, _, y in triplets)
    assert impostors["Dave"] > 0 and impostors["Erin"] > 0
    # impostors are drawn by image, so every identity can appear, Frank (8 images) most often
    assert impostors.most_common(1)[0][0] == "Frank"


def test_two_image_identity_pairs_with_its_other_image(rows):
    for x1, x2, _ in make_triplets(rows, TripletsConfig(per_image=4)):
        if identity_of(x1) == "Bob":
            assert {x1, x2} == {"images/Bob/Bob_0001.png", "images/Bob/Bob_0002.png"}


def test_partners_cover_the_other_images(rows):
    partners = Counter(x2 for x1, x2, _ in make_triplets(rows, TripletsConfig(per_image=50))
                       if x1 == "images/Alice/Alice_0001.png")
    assert set(partners) == {f"images/Alice/Alice_{k:04d}.png" for k in range(2, 6)}


def test_deterministic_per_seed_and_salt(rows):
    cfg = TripletsConfig(seed=5)
    first = make_triplets(rows, cfg)
    assert make_triplets(list(reversed(rows)), cfg) == first  # row order does not matter
    assert make_triplets(rows, TripletsConfig(seed=6)) != first
    assert make_triplets(rows, cfg, salt=1) != first  # each split draws its own stream
    assert sorted(t[0] for t in make_triplets(rows, TripletsConfig(seed=6))) == sorted(t[0] for t in first)


def test_fewer_than_two_identities_is_an_error():
    with pytest.raises(InputError, match="at least two identities"):
        make_triplets(rows_for({"Alice": 4}), TripletsConfig())
    with pytest.raises(InputError, match="at least two identities"):
        make_triplets([], TripletsConfig())


def test_no_multi_image_identity_gives_no_triplets():
    assert make_triplets(rows_for({"A": 1, "B": 1, "C": 1}), TripletsConfig()) == []
