"""Pasting a virtual face into a photo: colour matching and the footprint-only transform."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ivfg.anonymize import FRAME, face_mask, match_colour
from ivfg.data.faceframe import template


def test_colour_matching_takes_the_originals_colours_and_keeps_the_virtual_shapes():
    rng = np.random.default_rng(0)
    shapes = rng.uniform(0, 1, (FRAME, FRAME))
    virtual = Image.fromarray((np.stack([shapes * 60 + 170] * 3, -1)).astype(np.uint8))  # pale, low contrast
    dark = np.stack([rng.normal(70, 20, (FRAME, FRAME)), rng.normal(45, 15, (FRAME, FRAME)),
                     rng.normal(35, 10, (FRAME, FRAME))], -1).clip(0, 255).astype(np.uint8)
    mask = face_mask()
    alpha = np.asarray(mask) / 255
    inner, edge = alpha > 0.5, (alpha > 0.5) & (alpha < 0.97)
    out = np.asarray(match_colour(virtual, Image.fromarray(dark), mask), float)
    ref = dark.astype(float)
    assert np.allclose(out[edge].mean(0), ref[edge].mean(0), atol=1.5)          # meets the skin around it
    assert np.allclose(out[inner].mean(0), ref[inner].mean(0), atol=3)          # its skin tone and light
    assert np.allclose(out[inner].std(0), ref[inner].std(0), rtol=0.1)
    assert np.corrcoef(out[inner][:, 0], shapes[inner])[0, 1] > 0.99            # the virtual face's shapes


def test_the_spread_ratio_is_bounded_so_a_flat_original_does_not_erase_the_face():
    rng = np.random.default_rng(1)
    virtual = Image.fromarray(rng.integers(0, 255, (FRAME, FRAME, 3), dtype=np.uint8))
    flat = Image.new("RGB", (FRAME, FRAME), (120, 100, 90))
    out = np.asarray(match_colour(virtual, flat, face_mask()), float)
    inner = np.asarray(face_mask()) > 127
    assert out[inner].std(0).min() >= 0.45 * np.asarray(virtual, float)[inner].std(0).min()


def test_pasting_touches_only_the_faces_footprint_and_matches_a_whole_photo_transform():
    from ivfg.anonymize import Anonymizer

    photo = Image.new("RGB", (400, 300), (10, 200, 30))
    landmarks = template(FRAME) * 0.8 + [150, 90]  # a face of ~100 px at (150, 90)
    face = Image.fromarray(np.random.default_rng(2).integers(0, 255, (FRAME, FRAME, 3), dtype=np.uint8))
    tool = Anonymizer.__new__(Anonymizer)
    tool.mask, tool.colour_match = face_mask(), False
    out = photo.copy()
    tool.paste(out, landmarks, face)
    # The same paste done the simple way, transforming layers of the whole photo's size.
    from ivfg.data.faceframe import similarity_transform

    forward = similarity_transform(landmarks, template(FRAME)).ravel().tolist()
    whole = photo.copy()
    whole.paste(face.transform(photo.size, Image.Transform.AFFINE, forward, resample=Image.Resampling.BILINEAR),
                (0, 0), tool.mask.transform(photo.size, Image.Transform.AFFINE, forward, resample=Image.Resampling.BILINEAR))
    diff = np.abs(np.asarray(out, int) - np.asarray(whole, int))
    assert diff.max() <= 1
    changed = np.argwhere(np.abs(np.asarray(out, int) - np.asarray(photo, int)).sum(-1) > 0)
    assert changed[:, 1].min() >= 140 and changed[:, 1].max() <= 260 and changed[:, 0].max() <= 220
