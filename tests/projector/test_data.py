"""The triplet table and the identities of its faces, as the train stage reads them from train.csv, and the
hard negatives drawn from them."""
from __future__ import annotations

import torch

from ivfg.projector.data import hard_negatives, identity_indices, index_triplets


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
