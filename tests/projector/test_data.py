"""The triplet table and the identities of its faces, as the train stage reads them from train.csv."""
from __future__ import annotations

import torch

from ivfg.projector.data import identity_indices, index_triplets


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
