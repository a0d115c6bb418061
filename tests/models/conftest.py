"""Real LFW faces in the canonical frame, aligned by the pipeline's own MTCNN aligner."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ivfg.data.align import load_rgb


@pytest.fixture(scope="session")
def aligned_faces(lfw_subset, lfw_images: Path, aligner) -> dict[str, torch.Tensor]:
    """identity -> (2, 3, 128, 128) float [0, 1]: two aligned photos of each of five people."""
    faces = {}
    for identity in lfw_subset.multi[:5]:
        images = [load_rgb(lfw_images / identity / name)[0] for name in lfw_subset.images[identity][:2]]
        aligned = aligner.align(images)
        assert all(a is not None for a in aligned), f"MTCNN missed a face of {identity}"
        arrays = np.stack([np.asarray(face, dtype=np.float32) / 255 for face, _ in aligned])
        faces[identity] = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()
    return faces
