"""ivfg.data.faceframe: the canonical 128x128 frame and the similarity alignment into it."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ivfg.data.faceframe import ARCFACE_112, similarity_transform, template, warp_to_frame
from tests.helpers import LfwSubset


def similarity(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([scale * rotation, np.array(shift)[:, None]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_template_is_arcface_scaled():
    np.testing.assert_array_equal(template(112), ARCFACE_112)
    np.testing.assert_allclose(template(128), ARCFACE_112 * 128 / 112)
    # The headline property (docs/design.md): a 128 crop resized to 112 is an ArcFace-aligned crop.
    np.testing.assert_allclose(template(128) * 112 / 128, ARCFACE_112)
    left_eye, right_eye = template(128)[:2]
    assert left_eye[0] < right_eye[0] and abs(left_eye[1] - right_eye[1]) < 0.5


@pytest.mark.parametrize(("angle", "scale", "shift"),
                         [(0.0, 1.0, (0.0, 0.0)), (17.0, 0.8, (-31.5, 12.25)), (-40.0, 2.3, (100.0, -7.0)),
                          (179.0, 0.35, (5.0, 250.0))])
def test_similarity_transform_recovers_a_known_transform(angle, scale, shift):
    src = template(128) + np.array([61.0, 48.0])  # a face somewhere in a 250x250 LFW image
    truth = similarity(angle, scale, shift)
    dst = apply(truth, src)
    matrix = similarity_transform(src, dst)
    assert matrix.shape == (2, 3)
    np.testing.assert_allclose(matrix, truth, atol=1e-9)
    np.testing.assert_allclose(apply(matrix, src), dst, atol=1e-9)


def test_similarity_transform_is_the_least_squares_similarity():
    rng = np.random.default_rng(3)
    src = template(128) * 1.7 + rng.normal(0, 4, (5, 2)) + 40
    dst = template(128)
    matrix = similarity_transform(src, dst)
    # Independent solution: a similarity is [[a, -b, tx], [b, a, ty]]; solve the linear least squares.
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    np.testing.assert_allclose(matrix, [[a, -b, tx], [b, a, ty]], atol=1e-9)


def test_similarity_transform_never_reflects():
    src = template(128)
    mirrored = src * np.array([-1.0, 1.0]) + np.array([128.0, 0.0])
    matrix = similarity_transform(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0  # a rotation and scale, not a mirror


def test_warp_with_template_landmarks_is_the_identity():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    out = warp_to_frame(Image.fromarray(pixels), template(128), 128)
    assert out.size == (128, 128) and out.mode == "RGB"
    # bilinear sampling exactly at pixel centres: at most one level of fixed-point rounding
    assert np.abs(np.asarray(out).astype(int) - pixels).max() <= 1


def test_warp_moves_image_content_like_the_transform():
    """A dot drawn at a known point lands where the forward transform sends it."""
    truth = similarity(12.0, 1.25, (30.0, -20.0))  # output-from-input
    canvas = Image.new("RGB", (250, 250), "black")
    inverse = np.linalg.inv(np.vstack([truth, [0, 0, 1]]))[:2]
    landmarks = apply(inverse, template(128))
    point = np.round(apply(inverse, np.array([[70.0, 40.0]]))[0])  # lands inside the frame, off-centre
    ImageDraw.Draw(canvas).ellipse([*(point - 3), *(point + 3)], fill="white")
    out = np.asarray(warp_to_frame(canvas, landmarks, 128)).astype(float).sum(2)
    ys, xs = np.nonzero(out > 100)
    assert 20 < len(xs) < 200  # the whole dot, resampled
    weights = out[ys, xs]
    centroid = np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()
    np.testing.assert_allclose(centroid, apply(truth, point[None])[0], atol=0.6)


MARKERS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255)]


def marker_centroid(pixels: np.ndarray, colour, near: np.ndarray, radius: int = 10) -> np.ndarray:
    x0, y0 = np.maximum(np.round(near).astype(int) - radius, 0)
    window = pixels[y0:y0 + 2 * radius + 1, x0:x0 + 2 * radius + 1].astype(float)
    weight = np.clip(90 - np.abs(window - np.array(colour)).max(axis=2), 0, None)
    assert weight.sum() > 0, f"marker {colour} not found near {near}"
    ys, xs = np.mgrid[: window.shape[0], : window.shape[1]]
    return np.array([(xs * weight).sum() + x0 * weight.sum(), (ys * weight).sum() + y0 * weight.sum()]) / weight.sum()


def test_real_landmarks_land_on_the_template(lfw_subset: LfwSubset, aligner):
    """Mark MTCNN's 5 landmarks on a real LFW image; after warping, the marks sit on the template."""
    identity = lfw_subset.multi[0]
    image = Image.open(io.BytesIO(lfw_subset.image_bytes(identity))).convert("RGB")
    detection = aligner.detect([image])[0]
    assert detection is not None
    marked = image.copy()
    draw = ImageDraw.Draw(marked)
    for (x, y), colour in zip(detection.landmarks, MARKERS):
        draw.rectangle([round(x) - 2, round(y) - 2, round(x) + 2, round(y) + 2], fill=colour)
    out = warp_to_frame(marked, detection.landmarks, 128)
    assert out.size == (128, 128)
    pixels = np.asarray(out)
    forward = apply(similarity_transform(detection.landmarks, template(128)), np.round(detection.landmarks))
    found = np.array([marker_centroid(pixels, c, f) for c, f in zip(MARKERS, forward)])
    # where the transform sends each mark (to half a pixel: the marks are drawn on whole pixels) ...
    np.testing.assert_allclose(found, forward, atol=1.0)
    # ... which is the template, up to how far a real face is from a similarity of it
    error = np.linalg.norm(found - template(128), axis=1)
    assert error[:2].max() < 6.0, error   # eyes
    assert error.max() < 10.0, error
    assert error.mean() < 5.0, error


@pytest.mark.parametrize("size", [112, 160, 256])
def test_other_frame_sizes_scale_the_template(size):
    src = template(128) + 20
    canvas = Image.new("RGB", (250, 250))
    out = warp_to_frame(canvas, src, size)
    assert out.size == (size, size)
    np.testing.assert_allclose(apply(similarity_transform(src, template(size)), src), template(size), atol=1e-9)
