"""The triplet table and the identities of its faces, as the train stage reads them from train.csv, the
hard negatives drawn from them, and the discriminant directions P may read E(x) on."""
from __future__ import annotations

import pytest
import torch

from ivfg.config import ConfigError
from ivfg.projector.data import discriminant_directions, hard_negatives, identity_indices, index_triplets


def test_identities_come_from_the_image_folders_in_row_order():
    triplets = [("images/Bo/Bo_0001.png", "images/Bo/Bo_0002.png", "images/Al/Al_0001.png"),
                ("images/Cy/Cy_0003.png", "images/Cy/Cy_0001.png", "images/Bo/Bo_0002.png")]
    images, table = index_triplets(triplets)
    assert images == sorted(images) and table.shape == (2, 3)
    identities = identity_indices(images)
    assert identities.tolist() == [0, 1, 1, 2, 2]  # Al, Bo, Bo, Cy, Cy
    rows = identities[table]
    assert (rows[:, 0] == rows[:, 1]).all() and (rows[:, 0] != rows[:, 2]).all()
    assert identity_indices([]).dtype == torch.long


def test_hard_negatives_are_the_most_alike_other_person_of_the_pool():
    # Rows 0-1: person 0; row 2: person 1, near row 0; row 3: person 2, far from it.
    features = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [-1.0, 0.0]])
    identities = torch.tensor([0, 0, 1, 2])
    anchors, fallback = torch.tensor([0, 0, 3]), torch.tensor([3, 3, 0])
    # A pool as large as every row many times over holds every row: the choice is the nearest other person.
    chosen = hard_negatives(features, identities, anchors, fallback, 64, torch.Generator().manual_seed(0))
    assert chosen.tolist() == [2, 2, 2]
    assert (identities[chosen] != identities[anchors]).all()


def test_hard_negatives_fall_back_when_the_pool_holds_only_the_anchors_person():
    features = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    identities = torch.tensor([0, 0, 0, 0, 1])
    alone = torch.zeros(5, dtype=torch.long)  # one person: no other face in any draw
    chosen = hard_negatives(features, alone, torch.tensor([0, 1]), torch.tensor([4, 4]), 3,
                            torch.Generator().manual_seed(0))
    assert chosen.tolist() == [4, 4]
    same_draw = [hard_negatives(features, identities, torch.tensor([0, 1]), torch.tensor([4, 4]), 2,
                                torch.Generator().manual_seed(s)).tolist() for s in (7, 7)]
    assert same_draw[0] == same_draw[1]  # seeded: the draw repeats


def test_larger_pools_find_more_alike_negatives():
    g = torch.Generator().manual_seed(3)
    features = torch.randn(200, 16, generator=g)
    identities = torch.arange(200) // 4
    anchors = torch.arange(0, 200, 4)
    unit = torch.nn.functional.normalize(features, dim=-1)

    def alike(chosen):
        return float((unit[anchors] * unit[chosen]).sum(-1).mean())

    pools = {pool: hard_negatives(features, identities, anchors, (anchors + 4) % 200, pool,
                                  torch.Generator().manual_seed(1)) for pool in (2, 8)}
    assert all((identities[c] != identities[anchors]).all() for c in pools.values())
    random = (anchors + 4 * torch.randint(1, 50, (50,), generator=g)) % 200
    assert alike(pools[8]) > alike(pools[2]) > alike(random)


def spread_ratio(x: torch.Tensor, identities: torch.Tensor) -> float:
    """Mean squared distance between different people's unit vectors over that between one person's."""
    unit = torch.nn.functional.normalize(x, dim=-1)
    d = torch.cdist(unit, unit).pow(2)
    same = identities[:, None] == identities[None, :]
    off = ~torch.eye(len(x), dtype=torch.bool)
    return float(d[~same].mean() / d[same & off].mean())


def test_discriminant_directions_bring_one_persons_photos_together_relative_to_other_people():
    # 40 people, 5 photos each, in 16-d: the photos of one person vary most along a few directions that
    # do not tell people apart (pose, light), as a recognizer's embeddings do.
    g = torch.Generator().manual_seed(0)
    identities = torch.arange(40).repeat_interleave(5)
    people = torch.randn(40, 16, generator=g)[identities]
    nuisance = torch.zeros(200, 16)
    nuisance[:, :3] = 2.0 * torch.randn(200, 3, generator=g)
    embeddings = people + nuisance + 0.1 * torch.randn(200, 16, generator=g)
    mean, directions = discriminant_directions(embeddings, identities, 8)
    assert mean.shape == (16,) and directions.shape == (16, 8) and directions.dtype == torch.float32
    unit = torch.nn.functional.normalize(embeddings, dim=-1)
    projected = (unit - mean) @ directions
    assert spread_ratio(projected, identities) > 2 * spread_ratio(embeddings, identities)
    again = discriminant_directions(embeddings, identities, 8)
    assert torch.equal(again[0], mean) and torch.equal(again[1], directions)  # no randomness in the fit


def test_more_discriminant_directions_than_the_people_give_are_refused_naming_the_param():
    identities = torch.tensor([0, 0, 1, 1, 2, 2])
    embeddings = torch.randn(6, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match=r"train.lda_dims is 3, but 3 training people .* at most 2"):
        discriminant_directions(embeddings, identities, 3)
