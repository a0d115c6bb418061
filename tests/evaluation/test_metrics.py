"""The evaluation's metrics on cases whose answers are known, and on a tiny real T(x, k) (random P, tiny
generator, the real SFace as E) over real aligned LFW faces, measured by the real dlib recognizer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ivfg.config import ConfigError, EvaluateConfig
from ivfg.evaluation.facesets import FaceSets, draw_keys
from ivfg.evaluation.fid import fid, frechet_distance, gaussian
from ivfg.evaluation.metrics import METRICS, run_metrics, share_below, summarize
from ivfg.evaluation.obfuscation import GaussianBlur, Pixelization
from ivfg.evaluation.pipeline import choose_faces, recognizer_role
from ivfg.evaluation.verification import verification_metrics
from ivfg.gan.networks import Generator
from ivfg.models.registry import build_recognizer
from ivfg.projector.network import Projector
from ivfg.virtual import VirtualFaces


# -- known answers -------------------------------------------------------------------------------------

def test_eer_is_zero_for_separable_scores_and_one_half_for_identical_distributions():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(5000), np.zeros(5000)].astype(bool)
    separable = np.r_[rng.uniform(0.6, 1, 5000), rng.uniform(0, 0.4, 5000)]
    assert verification_metrics(labels, separable)["eer"] == 0.0
    same = rng.normal(size=10_000)
    m = verification_metrics(labels, same)
    assert m["eer"] == pytest.approx(0.5, abs=0.02) and m["auc"] == pytest.approx(0.5, abs=0.02)


def test_fid_of_a_set_against_itself_is_zero_and_matches_an_independent_computation():
    rng = np.random.default_rng(1)
    a = torch.from_numpy(rng.normal(size=(400, 8)))
    b = torch.from_numpy(rng.normal(0.5, 2.0, size=(400, 8)) @ rng.normal(size=(8, 8)))
    assert fid(a, a) == pytest.approx(0.0, abs=1e-6)
    # Independently: ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), through eigenvalues.
    mu1, s1 = a.numpy().mean(0), np.cov(a.numpy(), rowvar=False)
    mu2, s2 = b.numpy().mean(0), np.cov(b.numpy(), rowvar=False)
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    middle = np.linalg.eigvalsh(root1 @ s2 @ root1)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(middle, 0, None)).sum()
    assert fid(b, a) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(*gaussian(a), *gaussian(b)) == pytest.approx(expected, rel=1e-6)


def test_repeats_are_summarised_as_mean_and_std_with_counts_kept():
    out = summarize([{"rate": 0.2, "pairs": 10, "set": {"eer": 0.1}}, {"rate": 0.4, "pairs": 10, "set": {"eer": 0.3}}])
    assert out["rate"] == pytest.approx(0.3) and out["rate_std"] == pytest.approx(0.1)
    assert out["pairs"] == 10 and "pairs_std" not in out
    assert out["set"]["eer"] == pytest.approx(0.2) and out["set"]["eer_std"] == pytest.approx(0.1)


def test_set_a_gives_each_identity_its_own_key_and_set_b_one_key():
    labels = np.array([0, 0, 1, 2, 2, 2, 3])
    draw = draw_keys(labels, 8, seed=0, repeat=0)
    per_identity = {int(k): tuple(draw.per_face_a[labels == k][0].tolist()) for k in np.unique(labels)}
    assert len(set(per_identity.values())) == 4  # distinct across identities
    for k, key in per_identity.items():
        assert all(tuple(row.tolist()) == key for row in draw.per_face_a[labels == k])
    assert draw.set_b.shape == (8,)
    again, other = draw_keys(labels, 8, 0, 0), draw_keys(labels, 8, 0, 1)
    assert torch.equal(again.per_face_a, draw.per_face_a) and not torch.equal(other.per_face_a, draw.per_face_a)
    # More people than keys: every key of a 2-bit space is used before any is used twice.
    many = draw_keys(np.arange(8), 2, seed=0, repeat=0).per_face_a
    codes = (many[:, 0] * 2 + many[:, 1]).tolist()
    assert sorted(codes[:4]) == [0, 1, 2, 3] and codes[4:] == codes[:4]


def test_diversity_keys_are_drawn_per_face_and_never_the_set_a_key():
    labels = np.repeat(np.arange(50), 4)
    assert (draw_keys(labels, 1, seed=0, repeat=0).per_face_other != draw_keys(labels, 1, 0, 0).per_face_a).all()
    draw = draw_keys(labels, 16, seed=0, repeat=0)
    assert (draw.per_face_other != draw.per_face_a).any(dim=1).all()
    # Per face, not per identity or one for all: 200 faces, about 200 different second keys of 2^16.
    assert len({tuple(k.tolist()) for k in draw.per_face_other}) > 190
    # Spread over the key space, not one fixed flip: each bit differs from k1 about half the time.
    flips = (draw.per_face_other != draw.per_face_a).float().mean(0)
    assert ((flips > 0.35) & (flips < 0.65)).all()


def test_pixelization_averages_blocks_and_blur_smooths():
    faces = torch.rand(2, 3, 128, 128)
    mosaic = Pixelization(18)(faces, None)
    assert mosaic.shape == faces.shape
    assert torch.allclose(mosaic[0, :, 20, 30], faces[0, :, 18:36, 18:36].mean((1, 2)))
    assert torch.allclose(mosaic[1, :, 127, 127], faces[1, :, 126:, 126:].mean((1, 2)))  # cut by the border
    assert mosaic[:, :, :18, :18].flatten(2).std(-1).max() < 1e-6
    blurred = GaussianBlur(37, 6.0)(faces, None)
    assert blurred.shape == faces.shape and blurred.std() < faces.std() / 4


def test_the_training_recognizer_is_refused_unless_forced_and_then_labelled():
    assert recognizer_role(EvaluateConfig(recognizer="dlib-resnet"), "sface") == "evaluation"
    with pytest.raises(ConfigError, match="allow_train_recognizer"):
        recognizer_role(EvaluateConfig(recognizer="sface"), "sface")
    assert recognizer_role(EvaluateConfig(recognizer="sface", allow_train_recognizer=True), "sface") == "training"


def test_a_subset_of_test_faces_keeps_whole_identities():
    rows = [{"image": f"{i}/{j}", "identity": str(i)} for i in range(30) for j in range(i % 3 + 1)]
    chosen = choose_faces(rows, 20, seed=0)
    assert 15 <= len(chosen) <= 20
    for ident in {r["identity"] for r in chosen}:
        assert sum(r["identity"] == ident for r in chosen) == int(ident) % 3 + 1
    assert choose_faces(rows, None, 0) == rows


# -- a tiny real T(x, k) ---------------------------------------------------------------------------------

class Copy(torch.nn.Module):
    """An 'anonymizer' that changes nothing: its protection must be 0."""

    def forward(self, faces01, keys=None):
        return faces01


@pytest.fixture(scope="module")
def sets(lfw_subset, aligner):
    from PIL import Image
    import io

    faces, identities = [], []
    for person in lfw_subset.multi[:5]:
        for index in range(len(lfw_subset.images[person])):
            aligned = aligner.align([Image.open(io.BytesIO(lfw_subset.image_bytes(person, index))).convert("RGB")])[0]
            if aligned is not None:
                faces.append(torch.from_numpy(np.array(aligned[0])).permute(2, 0, 1))
                identities.append(person)
    torch.manual_seed(0)
    generator = Generator(16, 32, 2, 0.01, 128, 16).eval()
    projector = Projector(128, 4, 32, 1, 16).eval()
    virtual = VirtualFaces(build_recognizer("sface"), projector, generator).eval()
    recognizer = build_recognizer("dlib-resnet")
    return FaceSets(torch.stack(faces), identities, virtual, recognizer, threshold=-0.6, seed=0,
                    device=torch.device("cpu"), baselines={"copy": Copy(), "pixelization": Pixelization(18)},
                    detector=aligner)


def test_a_set_is_embedded_once_and_sets_without_keys_are_shared_by_repeats(sets):
    assert sets.embeddings("set_a", 0) is sets.embeddings("set_a", 0)
    assert sets.embeddings("original", 0) is sets.embeddings("original", 1)
    assert sets.images("pixelization", 0) is sets.images("pixelization", 2)
    assert not torch.equal(sets.images("set_a", 0), sets.images("set_a", 1))  # new keys, new faces
    assert sets.images("set_a", 0).dtype == torch.uint8 and sets.images("set_a", 0).shape[-1] == 16


def test_protection_of_an_unchanged_face_is_zero(sets):
    original = sets.embeddings("original")
    assert share_below(sets, original, sets.embeddings("copy")) == 0.0
    assert share_below(sets, original, original) == 0.0


def test_every_metric_reports_rates_and_the_pairs_behind_them(sets):
    names = [n for n in METRICS if n not in ("key_search", "fid_virtual", "fid_lowres", "detection", "baselines")]
    out = run_metrics(sets, names, repeats=2)
    n = len(sets)
    assert out["original"]["pairs"] == n * (n - 1) // 2 and out["set_a"]["pairs"] == n * (n - 1) // 2
    assert out["original"]["eer"] < 0.1  # real faces, real dlib
    for name in ("protection", "diversity", "recoverability"):
        assert 0.0 <= out[name]["rate"] <= 1.0 and f"rate_std" in out[name]
    assert out["protection"]["pairs"] == n and out["diversity"]["pairs"] == n
    assert 0.0 <= out["linkage"]["auc"] <= 1.0 and out["linkage"]["pairs"] > n
    assert out["original_lowres"]["resolution"] == 16 and out["original_lowres"]["pairs"] == n * (n - 1) // 2
    assert out["latent_spread"]["generator"] > 0 and out["latent_spread"]["ratio"] >= 0
    assert "genuine_accepted_v" not in out["set_a"]  # this model has no τ_v


def test_the_reference_row_shrinks_real_faces_to_the_generator_resolution(sets):
    small = sets.images("original_lowres")
    assert small.shape[-1] == 16 and small.dtype == torch.uint8
    # Shrunk, not replaced: the mean colour of each face stays what it was.
    assert torch.allclose(small.float().mean((2, 3)), sets.faces.float().mean((2, 3)), atol=2.0)


def test_latent_spread_is_zero_for_a_projector_at_w_bar_and_one_for_g_own_latents(sets):
    generator = sets.virtual.generator
    w = generator.mapping(torch.randn(20000, generator.style_dim)).detach()
    generator.w_avg.copy_(w.mean(0))
    zeroed = Projector(128, 4, 32, 1, 16).eval()
    torch.nn.init.zeros_(zeroed.out.weight)
    zeroed.w_avg.copy_(generator.w_avg)
    at_mean = FaceSets(sets.faces, [sets.identities[k] for k in sets.labels],
                       VirtualFaces(sets.virtual.encoder, zeroed, generator), sets.recognizer, sets.threshold, 0,
                       sets.device)
    assert run_metrics(at_mean, ["latent_spread"], 1)["latent_spread"]["ratio"] == pytest.approx(0.0, abs=1e-9)
    # A P in Z reaches as far as G's own samples: the spread of its w is that of G's random ones.
    in_z = Projector(128, 4, 32, 1, 16, space="z").eval()
    in_z.w_avg.copy_(generator.w_avg)
    through_mapping = FaceSets(sets.faces, [sets.identities[k] for k in sets.labels],
                               VirtualFaces(sets.virtual.encoder, in_z, generator), sets.recognizer,
                               sets.threshold, 0, sets.device)
    ratio = run_metrics(through_mapping, ["latent_spread"], 1)["latent_spread"]["ratio"]
    assert 0.3 < ratio < 3.0
    generator.w_avg.zero_()


def test_set_a_is_also_decided_at_the_virtual_threshold_when_the_model_has_one(sets):
    strict = FaceSets(sets.faces, [sets.identities[k] for k in sets.labels], sets.virtual, sets.recognizer,
                      sets.threshold, 0, sets.device, virtual_threshold=1.0)  # above every score: accept none
    figures = run_metrics(strict, ["set_a"], 1)["set_a"]
    assert figures["genuine_accepted_v"] == 0.0 and figures["impostor_rejected_v"] == 1.0


def test_only_set_b_is_also_decided_at_the_one_key_threshold(sets):
    both = FaceSets(sets.faces, [sets.identities[k] for k in sets.labels], sets.virtual, sets.recognizer,
                    sets.threshold, 0, sets.device, virtual_threshold=1.0, one_key_threshold=-1e9)
    figures = run_metrics(both, ["set_a", "set_b"], 1)
    assert figures["set_b"]["genuine_accepted_1"] == 1.0 and figures["set_b"]["impostor_rejected_1"] == 0.0
    assert figures["set_b"]["genuine_accepted_v"] == 0.0 and figures["set_b"]["impostor_rejected_v"] == 1.0
    assert "genuine_accepted_1" not in figures["set_a"]  # τ_1 is one key's threshold: Set-A has a key each


def test_measurements_of_sets_without_a_key_are_reused_from_the_disk_cache(sets, tmp_path, monkeypatch):
    first = FaceSets(sets.faces, [sets.identities[k] for k in sets.labels], sets.virtual, sets.recognizer,
                     sets.threshold, 0, sets.device, cache_dir=tmp_path)
    stored = first.embeddings("original")
    assert len(list(tmp_path.glob("embeddings-original-*.pt"))) == 1
    first.embeddings("set_a", 0)
    assert not list(tmp_path.glob("*set_a*"))  # virtual faces change with the model: never cached

    def refuse(images):
        raise AssertionError("embedded again")

    monkeypatch.setattr(sets.recognizer, "embed", refuse)
    again = FaceSets(sets.faces, [sets.identities[k] for k in sets.labels], sets.virtual, sets.recognizer,
                     sets.threshold, 0, sets.device, cache_dir=tmp_path)
    assert torch.equal(again.embeddings("original"), stored)
    other = FaceSets(sets.faces.flip(-1), [sets.identities[k] for k in sets.labels], sets.virtual, sets.recognizer,
                     sets.threshold, 0, sets.device, cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="embedded again"):
        other.embeddings("original")  # other images: measured anew
