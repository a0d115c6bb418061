"""dlib's face descriptor network in PyTorch against dlib itself, on real LFW faces."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ivfg.models.dlib_net import DlibFaceNet
from ivfg.models.registry import build_recognizer, weights_path


def test_torch_network_gives_dlibs_descriptors_on_real_faces(aligned_faces):
    faces = torch.cat(list(aligned_faces.values()))
    faces = torch.cat([faces, faces.flip(-1)])  # mirrored copies: more faces, all real
    dlib_model = build_recognizer("dlib-resnet")
    ours = dlib_model.embed(faces)  # what the stages run: dlib's chips, the network in PyTorch
    theirs = dlib_model.dlib_descriptors(faces)  # dlib itself
    assert ours.shape == theirs.shape == (len(faces), 128)
    # Float rounding only: dlib's same-person threshold is an L2 distance of 0.6.
    assert float(torch.linalg.vector_norm(ours - theirs, dim=1).max()) < 1e-4
    assert float(theirs.norm(dim=1).min()) > 0.5  # real descriptors, not zeros on both sides


def test_another_file_is_refused_with_its_name(tmp_path):
    bad = tmp_path / "not_dlib.dat"
    bad.write_bytes(b"\x01\x05hello" + bytes(64))
    with pytest.raises(ValueError, match="not_dlib.dat"):
        DlibFaceNet.from_dat(bad)
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(Path(weights_path("dlib-resnet")).read_bytes()[:100_000])
    with pytest.raises(ValueError, match="truncated.dat"):
        DlibFaceNet.from_dat(truncated)
