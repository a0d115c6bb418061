"""The canonical 128x128 face frame: ArcFace's 5-point template scaled by size/112 (docs/design.md), and
faces of any size shown in it."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def template(size: int = 128) -> np.ndarray:
    return ARCFACE_112 * (size / 112.0)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src to dst, as 2x3.

    Umeyama (1991), the estimator insightface and scikit-image use for face alignment.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_c.var(0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def warp_to_frame(image: Image.Image, landmarks: np.ndarray, size: int = 128) -> Image.Image:
    """Crop `image` into the canonical frame given its 5 landmarks (eyes, nose, mouth corners)."""
    forward = similarity_transform(landmarks, template(size))
    # PIL maps output pixels back to input pixels, so it wants the inverse transform.
    inverse = np.linalg.inv(np.vstack([forward, [0, 0, 1]]))[:2]
    return image.transform((size, size), Image.Transform.AFFINE, inverse.ravel().tolist(),
                           resample=Image.Resampling.BILINEAR)


def to_frame(images01: torch.Tensor, size: int = 128) -> torch.Tensor:
    """Faces (B, 3, h, w) in [0, 1] resized to the frame (bilinear), e.g. a generator's 32x32 output."""
    if images01.shape[-1] == size:
        return images01
    return F.interpolate(images01, size=(size, size), mode="bilinear", align_corners=False)


def to_uint8(images01: torch.Tensor) -> torch.Tensor:
    """[0, 1] images as stored and shown: uint8, rounded."""
    return (images01.clamp(0, 1) * 255).round().to(torch.uint8)
