"""Each term of the objective against values worked out by hand on small vectors, margin included."""
from __future__ import annotations

import math

import pytest
import torch

from ivfg.config import LossWeights
from ivfg.projector.loss import IvfgLoss, Quaternion, embedding_loss, inter_loss, latent_prior


def unit(angle_degrees: float) -> torch.Tensor:
    a = math.radians(angle_degrees)
    return torch.tensor([[math.cos(a), math.sin(a), 0.0]])


def test_embedding_loss_by_hand():
    x = unit(0)
    # cos 60° = 0.5: matching pair 1 - 0.5; non-matching max(0, 0.5 - 0.4) = 0.1.
    assert embedding_loss(x, unit(60), True, 0.4).item() == pytest.approx(0.5)
    assert embedding_loss(x, unit(60), False, 0.4).item() == pytest.approx(0.1)
    # cos 90° = 0: below the margin, nothing to push apart.
    assert embedding_loss(x, unit(90), False, 0.4).item() == pytest.approx(0.0)
    # Scale does not matter, only the angle; identical features cost 0 to match and 1 - m to separate.
    assert embedding_loss(3 * x, x, True, 0.4).item() == pytest.approx(0.0, abs=1e-7)
    assert embedding_loss(x, x, False, 0.4).item() == pytest.approx(0.6)
    assert embedding_loss(x, x, False, 0.0).item() == pytest.approx(1.0)
    # The same as PyTorch's CosineEmbeddingLoss.
    f1, f2 = torch.randn(6, 5), torch.randn(6, 5)
    for same, target in ((True, 1.0), (False, -1.0)):
        reference = torch.nn.CosineEmbeddingLoss(margin=0.4, reduction="none")(f1, f2, torch.full((6,), target))
        assert torch.allclose(embedding_loss(f1, f2, same, 0.4), reference, atol=1e-6)


def test_latent_prior_mean_and_sum():
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    w_avg = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert latent_prior(w, w_avg, "sum").item() == pytest.approx(29.0)   # 0 + 4 + 9 + 16
    assert latent_prior(w, w_avg, "mean").item() == pytest.approx(29.0 / 4)


def quaternion() -> Quaternion:
    return Quaternion(real_x1=unit(60), x1_k1=unit(0), x1_k2=unit(30), x2_k1=unit(90), y_k1=unit(180),
                      latents=torch.tensor([[1.0, 1.0], [0.0, 2.0]]))


def test_each_term_and_the_weighted_total_by_hand():
    loss = IvfgLoss(LossWeights(), margin=0.4, reg_reduction="mean")
    terms = loss.terms(quaternion(), torch.zeros(2))
    expected = {"pri": 0.1,                          # cos 60° - 0.4
                "con": math.cos(math.radians(30)) - 0.4,
                "intra": 1.0,                        # 1 - cos 90°
                "inter": 0.0,                        # cos 180° = -1, far below the margin
                "reg": (1.0 + 2.0) / 2}              # mean over dims (1, 2), then over latents
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, abs=1e-6), name
    total, stats = loss(quaternion(), torch.zeros(2))
    by_hand = 0.1 * 0.1 + expected["con"] + 1.0 + 0.0 + 20 * 1.5
    assert total.item() == pytest.approx(by_hand, abs=1e-5)
    assert stats["total"] == pytest.approx(by_hand, abs=1e-5) and stats["intra"] == pytest.approx(1.0)


def test_inter_over_the_batch_reaches_every_pair_of_different_people_under_the_shared_key():
    # Two triplets: x1 = x2 = person 0 / person 1, y = person 1 / person 0 (rows x1 | x2 | y).
    features = {"x1_k1": torch.cat([unit(0), unit(60)]), "x2_k1": torch.cat([unit(10), unit(50)]),
                "y_k1": torch.cat([unit(50), unit(0)])}
    q = Quaternion(real_x1=torch.zeros(2, 3), x1_k2=torch.zeros(2, 3), latents=torch.zeros(2, 2),
                   identities=torch.tensor([0, 1, 0, 1, 1, 0]), **features)
    angles = [0, 60, 10, 50, 50, 0]
    ids = [0, 1, 0, 1, 1, 0]
    pairs = [max(0.0, math.cos(math.radians(angles[i] - angles[j])) - 0.4)
             for i in range(6) for j in range(i + 1, 6) if ids[i] != ids[j]]
    assert len(pairs) == 9  # 3 faces of each person: 3 x 3 pairs of different people
    assert inter_loss(q, 0.4).item() == pytest.approx(sum(pairs) / 9, abs=1e-6)
    # The paper's form reads only (x1, y) of each triplet: here y_k1 of triplet 0 is x1's 50° away.
    paper = Quaternion(**{**q.__dict__, "identities": None})
    expected = (math.cos(math.radians(50)) - 0.4 + math.cos(math.radians(60)) - 0.4) / 2
    assert inter_loss(paper, 0.4).item() == pytest.approx(expected, abs=1e-6)


def test_a_zero_weight_removes_its_term():
    q = quaternion()
    full = IvfgLoss(LossWeights())(q, torch.zeros(2))[0].item()
    without = IvfgLoss(LossWeights(reg=0))(q, torch.zeros(2))
    assert without[0].item() == pytest.approx(full - 20 * 1.5, abs=1e-5)
    assert without[1]["reg"] == pytest.approx(1.5)  # still measured
    latents = torch.tensor([[1.0, 1.0]], requires_grad=True)
    only_reg = Quaternion(unit(60), unit(0), unit(30), unit(90), unit(180), latents)
    IvfgLoss(LossWeights(pri=0, con=0, intra=0, inter=0, reg=0))(only_reg, torch.zeros(2))[0].backward()
    assert latents.grad is None or latents.grad.abs().sum() == 0


def test_sum_reduction_scales_the_prior_by_the_dimension():
    q = quaternion()
    mean = IvfgLoss(LossWeights(), reg_reduction="mean").terms(q, torch.zeros(2))["reg"]
    summed = IvfgLoss(LossWeights(), reg_reduction="sum").terms(q, torch.zeros(2))["reg"]
    assert summed.item() == pytest.approx(2 * mean.item())


def test_the_typical_prior_costs_nothing_within_gs_typical_distance_and_grows_beyond_it():
    w_avg = torch.zeros(4)
    near = torch.tensor([[1.0, 0, 0, 0]])          # mean square 0.25
    typical = torch.tensor([[1.0, 1, 1, 1]])       # mean square 1
    far = torch.tensor([[2.0, 2, 2, 2]])           # mean square 4
    cost = lambda w: latent_prior(w, w_avg, "mean", typical=1.0).item()  # noqa: E731
    assert cost(near) == 0.0 and cost(typical) == 0.0
    assert cost(far) == pytest.approx((4 - 1) ** 2)
    # the paper's prior pulls even the near latent in; the typical one leaves distinct people apart
    assert latent_prior(near, w_avg, "mean").item() > 0
    far.requires_grad_(True)
    latent_prior(far, w_avg, "mean", typical=1.0).sum().backward()
    assert (far.grad > 0).all()                    # pushed back towards G's typical distance


def test_the_typical_prior_takes_gs_own_spread(tmp_path):
    from ivfg.config import TrainConfig
    from ivfg.gan.networks import Generator
    from ivfg.models.registry import build_recognizer
    from ivfg.projector.network import Projector
    from ivfg.projector.training import ProjectorTrainer, typical_square
    from ivfg.virtual import VirtualFaces, random_latents

    torch.manual_seed(0)
    generator = Generator(16, 32, 2, 0.01, 128, 16).eval()
    generator.w_avg.copy_(random_latents(generator, 2000, 1).mean(0))
    virtual = VirtualFaces(build_recognizer("sface"), Projector(128, 8, 32, 1, 64), generator)
    expected = float((random_latents(generator, 10_000, 0) - generator.w_avg).pow(2).mean())
    assert typical_square(virtual, 0) == pytest.approx(expected)
    cfg = TrainConfig(prior="typical", epochs=1, batch=2)
    trainer = ProjectorTrainer(cfg, virtual, build_recognizer("sface"), torch.randn(3, 128), torch.randn(3, 128),
                               torch.tensor([[0, 1, 2]]), tmp_path, torch.device("cpu"), settings={})
    assert trainer.loss.typical == pytest.approx(expected)
    assert ProjectorTrainer(TrainConfig(epochs=1, batch=2), virtual, build_recognizer("sface"), torch.randn(3, 128),
                            torch.randn(3, 128), torch.tensor([[0, 1, 2]]), tmp_path / "b", torch.device("cpu"),
                            settings={}).loss.typical is None


def test_inter_and_intra_margins_of_their_own():
    # x1_k1 at 0°, x2_k1 (the same person) at 30°, y_k1 (another person) at 45°.
    q = Quaternion(real_x1=unit(60), x1_k1=unit(0), x1_k2=unit(30), x2_k1=unit(30), y_k1=unit(45),
                   latents=torch.zeros(1, 2))
    shared = IvfgLoss(LossWeights(), margin=0.4).terms(q, torch.zeros(2))
    own = IvfgLoss(LossWeights(), margin=0.4, inter_margin=0.2, intra_margin=0.8).terms(q, torch.zeros(2))
    cos30, cos45 = math.cos(math.radians(30)), math.cos(math.radians(45))
    assert shared["inter"].item() == pytest.approx(cos45 - 0.4, abs=1e-6)
    assert own["inter"].item() == pytest.approx(cos45 - 0.2, abs=1e-6)
    assert shared["intra"].item() == pytest.approx(1 - cos30, abs=1e-6)
    assert own["intra"].item() == pytest.approx(0.0, abs=1e-7)        # cos 30° = 0.87 is past m+ = 0.8
    # L_pri and L_con keep the shared margin, unless L_con is given its own.
    assert own["con"].item() == pytest.approx(shared["con"].item()) == pytest.approx(cos30 - 0.4, abs=1e-6)
    con = IvfgLoss(LossWeights(), margin=0.4, con_margin=0.7).terms(q, torch.zeros(2))
    assert con["con"].item() == pytest.approx(cos30 - 0.7, abs=1e-6)
    assert con["pri"].item() == pytest.approx(shared["pri"].item())
    assert con["inter"].item() == pytest.approx(shared["inter"].item())
    further = Quaternion(**{**q.__dict__, "x2_k1": unit(60)})
    pulled = IvfgLoss(LossWeights(), intra_margin=0.8).terms(further, torch.zeros(2))["intra"]
    assert pulled.item() == pytest.approx(0.8 - 0.5, abs=1e-6)        # cos 60° = 0.5 falls short of 0.8


def test_contrastive_inter_ranks_one_persons_faces_above_everyone_elses():
    from ivfg.projector.loss import contrastive_inter_loss
    # Under one k1: x1 at 0°, x2 (the same person) at 30°, y (another person) at 90°.
    q = Quaternion(real_x1=unit(60), x1_k1=unit(0), x1_k2=unit(30), x2_k1=unit(30), y_k1=unit(90),
                   latents=torch.zeros(1, 2), identities=torch.tensor([0, 0, 1]))
    t = 0.5
    c30, c60, c90 = (math.cos(math.radians(a)) for a in (30, 60, 90))
    # x1's only same-person face is x2 (cos 30°), its rival y (cos 90°); x2's rival y at cos 60°; y has
    # no same-person face and is no anchor.
    x1 = -math.log(math.exp(c30 / t) / (math.exp(c30 / t) + math.exp(c90 / t)))
    x2 = -math.log(math.exp(c30 / t) / (math.exp(c30 / t) + math.exp(c60 / t)))
    loss = IvfgLoss(LossWeights(), inter_form="contrastive", temperature=t).terms(q, torch.zeros(2))["inter"]
    assert loss.item() == pytest.approx((x1 + x2) / 2, abs=1e-5)
    assert contrastive_inter_loss(q, t).item() == pytest.approx(loss.item())
    # Moving the other person further away lowers it; no hinge: it still pushes past any margin.
    far = Quaternion(**{**q.__dict__, "y_k1": unit(150)})
    assert contrastive_inter_loss(far, t) < loss
    assert IvfgLoss(LossWeights(), margin=0.4).terms(far, torch.zeros(2))["inter"].item() == 0
    with pytest.raises(ValueError, match="identities"):
        contrastive_inter_loss(Quaternion(**{**q.__dict__, "identities": None}), t)


def test_contrastive_keys_ranks_a_person_under_another_key_as_another_identity():
    from ivfg.projector.loss import contrastive_inter_loss
    # x1 at 0° under k1, x1 under k2 at 10°, x2 (the same person under k1) at 30°, y at 90°.
    q = Quaternion(real_x1=unit(60), x1_k1=unit(0), x1_k2=unit(10), x2_k1=unit(30), y_k1=unit(90),
                   latents=torch.zeros(1, 2), identities=torch.tensor([0, 0, 1]))
    t = 0.5
    e = {a: math.exp(math.cos(math.radians(a)) / t) for a in (10, 20, 30, 60, 80, 90)}
    # T(x1, k2) joins the denominators as a rival of x1 (10° away) and of x2 (20° away); it is no anchor.
    x1 = -math.log(e[30] / (e[30] + e[90] + e[10]))
    x2 = -math.log(e[30] / (e[30] + e[60] + e[20]))
    loss = IvfgLoss(LossWeights(), inter_form="contrastive_keys", temperature=t).terms(q, torch.zeros(2))["inter"]
    assert loss.item() == pytest.approx((x1 + x2) / 2, abs=1e-5)
    assert loss > contrastive_inter_loss(q, t)
    # Moving x1's other-key face away from both lowers it: the term pushes one person's keys apart.
    apart = Quaternion(**{**q.__dict__, "x1_k2": unit(180)})
    assert contrastive_inter_loss(apart, t, other_keys=True) < loss


def test_contrastive_inter_needs_one_shared_k1():
    from pydantic import ValidationError

    from ivfg.config import TrainConfig
    with pytest.raises(ValidationError, match="inter_pairs 'batch'"):
        TrainConfig(inter_form="contrastive")
    with pytest.raises(ValidationError, match="contrastive_keys"):
        TrainConfig(inter_form="contrastive_keys")
    assert TrainConfig(inter_form="contrastive", inter_pairs="batch").temperature == 0.1
