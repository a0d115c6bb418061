"""Training of P on a tiny generator with the real SFace: only P learns, runs repeat, resume is exact."""
from __future__ import annotations

import copy

import pytest
import torch

from ivfg.config import TrainConfig
from ivfg.gan.networks import Generator
from ivfg.models.registry import build_recognizer
from ivfg.projector.network import Projector
from ivfg.projector.training import (CheckpointMismatch, ProjectorTrainer, learning_rate, random_views,
                                     training_settings)
from ivfg.virtual import VirtualFaces

STYLE = 32
IDENTITIES = torch.tensor([0, 0, 1, 2, 2, 3, 4, 4, 5, 6, 6, 7])  # of the 12 embedding rows: triplets (x1, x2, y)


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    generator = Generator(16, STYLE, 2, 0.01, 128, 16)
    generator.w_avg.normal_()
    encoder = build_recognizer("sface")
    recognizer = build_recognizer("sface", fast=True)
    embeddings = torch.randn(12, 128, generator=torch.Generator().manual_seed(1))
    triplets = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11], [1, 0, 6], [4, 3, 0]])
    return generator, encoder, recognizer, embeddings, triplets


def make_trainer(parts, tmp_path, **overrides) -> ProjectorTrainer:
    generator, encoder, recognizer, embeddings, triplets = parts
    cfg = TrainConfig(**{"hidden_dim": 16, "batch": 2, "epochs": 2, "amp": "fp32", "log_steps": 1,
                         "checkpoint_steps": 100, **overrides})
    torch.manual_seed(cfg.seed)
    projector = Projector(128, cfg.key_bits, STYLE, cfg.hidden_layers, cfg.hidden_dim, cfg.latent_space)
    projector.w_avg.copy_(generator.w_avg)
    virtual = VirtualFaces(encoder, projector, generator)
    return ProjectorTrainer(cfg, virtual, recognizer, embeddings, embeddings, triplets, tmp_path, torch.device("cpu"),
                            training_settings(cfg, generator="g"), identities=IDENTITIES)


def state(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_step_changes_only_p(parts, tmp_path):
    generator, encoder, recognizer = parts[:3]
    before = {"G": state(generator), "E": state(encoder), "R": state(recognizer)}
    trainer = make_trainer(parts, tmp_path)
    p_before = state(trainer.projector)
    trainer.train(stop_after_steps=2)
    assert trainer.steps == 2
    assert not same(p_before, state(trainer.projector))
    changed = [k for k, v in p_before.items() if not torch.equal(v, trainer.projector.state_dict()[k])]
    assert "w_avg" not in changed and {"out.weight", "mlp.0.weight"} <= set(changed)
    assert same(before["G"], state(generator)) and same(before["E"], state(encoder))
    assert same(before["R"], state(recognizer))
    assert not generator.training and not recognizer.training
    assert all(not p.requires_grad for m in (generator, encoder, recognizer) for p in m.parameters())
    assert set(trainer.curve[-1]) >= {"pri", "con", "intra", "inter", "reg", "total"}
    assert len(trainer.rates) == len(trainer.curve) and trainer.rates[-1] > 0


def test_same_seed_same_first_steps_other_seed_other_steps(parts, tmp_path):
    a, b = make_trainer(parts, tmp_path / "a"), make_trainer(parts, tmp_path / "b")
    c = make_trainer(parts, tmp_path / "c", seed=1)
    for trainer in (a, b, c):
        trainer.train(stop_after_steps=2)
    assert same(state(a.projector), state(b.projector)) and a.curve == b.curve
    # No wall time in the checkpoint (runs/train is a DVC output): the same run writes the same bytes.
    assert (tmp_path / "a" / "checkpoint.pt").read_bytes() == (tmp_path / "b" / "checkpoint.pt").read_bytes()
    assert not same(state(a.projector), state(c.projector))


def test_a_projector_in_z_reaches_w_through_the_frozen_mapping_network(parts, tmp_path):
    generator, _, _, embeddings, _ = parts
    mapping_before = state(generator.mapping)
    trainer = make_trainer(parts, tmp_path, latent_space="z")
    virtual, keys = trainer.virtual, torch.zeros(4, 8)
    with torch.no_grad():
        z = trainer.projector(embeddings[:4], keys)
        assert torch.allclose(virtual.latents(embeddings[:4], keys), generator.mapping(z))
        # Not offset from w-bar: P's own output is a z, and G's mapping is what makes it a w.
        assert not torch.allclose(virtual.latents(embeddings[:4], keys), z + generator.w_avg)
    p_before = state(trainer.projector)
    trainer.train(stop_after_steps=2)
    assert not same(p_before, state(trainer.projector)) and same(mapping_before, state(generator.mapping))


def test_a_128_bit_key_changes_only_the_input_width(parts, tmp_path):
    trainer = make_trainer(parts, tmp_path, key_bits=128)
    assert trainer.projector.mlp[0].in_features == 128 + 128
    trainer.train(stop_after_steps=1)
    assert trainer.steps == 1 and torch.isfinite(torch.tensor(trainer.curve[-1]["total"]))


def test_batch_inter_pairs_share_one_k1_and_need_identities(parts, tmp_path):
    trainer = make_trainer(parts, tmp_path, inter_pairs="batch")
    k1, k2 = trainer.draw_keys(5)
    assert (k1 == k1[0]).all() and ((k1 != k2).any(1)).all()
    paper = make_trainer(parts, tmp_path / "paper")
    k1, k2 = paper.draw_keys(64)
    assert len(torch.unique(k1, dim=0)) > 1 and ((k1 != k2).any(1)).all()
    trainer.train(stop_after_steps=2)
    assert trainer.steps == 2 and torch.isfinite(torch.tensor(trainer.curve[-1]["inter"]))
    contrastive = make_trainer(parts, tmp_path / "contrastive", inter_pairs="batch", inter_form="contrastive")
    contrastive.train(stop_after_steps=2)
    # Two triplets under one k1 always hold a same-person pair (x1, x2), so the ranking term is never empty.
    assert contrastive.curve[-1]["inter"] > 0 and torch.isfinite(torch.tensor(contrastive.curve[-1]["total"]))
    generator, encoder, recognizer, embeddings, triplets = parts
    with pytest.raises(ValueError, match="identity of every embedding row"):
        ProjectorTrainer(TrainConfig(inter_pairs="batch"), trainer.virtual, recognizer, embeddings, embeddings,
                         triplets, tmp_path / "x", torch.device("cpu"), {})


@pytest.mark.parametrize("options", [{"lr_schedule": "constant"}, {"lr_schedule": "cosine"},
                                     {"negatives": "hard", "negative_pool": 4}, {"augment": 0.1},
                                     {"ema": 0.5}])
def test_resume_is_exact(parts, tmp_path, options):
    whole = make_trainer(parts, tmp_path / "whole", **options)
    whole.train()
    assert whole.finished and whole.epoch == 2 and whole.steps == 6
    first = make_trainer(parts, tmp_path / "split", **options)
    first.train(stop_after_steps=4)  # stops mid-epoch 2, with a checkpoint
    resumed = make_trainer(parts, tmp_path / "split", **options)
    assert resumed.resume() and resumed.steps == 4 and resumed.epoch == 1
    resumed.train()
    assert same(state(whole.projector), state(resumed.projector))
    if whole.average is not None:
        assert same(state(whole.average.module), state(resumed.average.module))
    assert [r["total"] for r in whole.curve] == [r["total"] for r in resumed.curve]
    # The last step ran at the schedule's last lr (for cosine, a small fraction of the first).
    assert resumed.optimizer.param_groups[0]["lr"] == learning_rate(resumed.cfg, 5, 6)


def test_the_cosine_schedule_falls_from_lr_to_zero_and_constant_stays():
    constant, cosine = TrainConfig(lr=1e-3), TrainConfig(lr=1e-3, lr_schedule="cosine")
    assert [learning_rate(constant, s, 10) for s in (0, 5, 9)] == [1e-3] * 3
    rates = [learning_rate(cosine, s, 10) for s in range(11)]
    assert rates[0] == 1e-3 and rates[5] == pytest.approx(5e-4) and rates[10] == pytest.approx(0, abs=1e-12)
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_hard_negatives_change_which_other_person_l_inter_sees(parts, tmp_path):
    paper = make_trainer(parts, tmp_path / "paper")
    hard = make_trainer(parts, tmp_path / "hard", negatives="hard", negative_pool=8)
    for trainer in (paper, hard):
        trainer.train(stop_after_steps=3)
    assert [r["intra"] for r in paper.curve][:1] == [r["intra"] for r in hard.curve][:1]  # same first batch and keys
    assert [r["inter"] for r in paper.curve] != [r["inter"] for r in hard.curve]
    assert hard.settings["negatives"] == "hard" and hard.settings["negative_pool"] == 8
    generator, encoder, recognizer, embeddings, triplets = parts
    with pytest.raises(ValueError, match="identity of every embedding row"):
        ProjectorTrainer(TrainConfig(negatives="hard"), hard.virtual, recognizer, embeddings, embeddings,
                         triplets, tmp_path / "x", torch.device("cpu"), {})


def test_the_schedule_shapes_the_weights(parts, tmp_path):
    constant = make_trainer(parts, tmp_path / "constant")
    cosine = make_trainer(parts, tmp_path / "cosine", lr_schedule="cosine")
    for trainer in (constant, cosine):
        trainer.train(stop_after_steps=3)
    assert not same(state(constant.projector), state(cosine.projector))
    assert constant.settings["lr_schedule"] == "constant" and cosine.settings["lr_schedule"] == "cosine"


def test_random_views_mirror_scale_and_shift_within_strength_and_pass_gradients():
    faces = torch.rand(64, 3, 32, 32, requires_grad=True)
    assert random_views(faces, 0.0, torch.Generator().manual_seed(0)) is faces
    views = random_views(faces, 0.1, torch.Generator().manual_seed(0))
    again = random_views(faces, 0.1, torch.Generator().manual_seed(0))
    assert views.shape == faces.shape and torch.equal(views, again)
    assert not torch.equal(views, random_views(faces, 0.1, torch.Generator().manual_seed(1)))
    views.sum().backward()
    assert faces.grad is not None and faces.grad.abs().sum() > 0
    # A face that is one colour stays that colour under any view (border padding adds nothing new).
    flat = torch.full((8, 3, 32, 32), 0.3)
    assert torch.allclose(random_views(flat, 0.5, torch.Generator().manual_seed(2)), flat, atol=1e-6)
    # Small changes of framing: each view stays close to its face or to its mirror image, and some are mirrored.
    smooth = torch.nn.functional.interpolate(torch.rand(64, 3, 4, 4), size=32, mode="bilinear")
    views = random_views(smooth, 0.05, torch.Generator().manual_seed(3))
    to_face = (views - smooth).abs().mean((1, 2, 3))
    to_mirror = (views - smooth.flip(-1)).abs().mean((1, 2, 3))
    assert (torch.minimum(to_face, to_mirror) < 0.05).all()
    assert 10 < (to_mirror < to_face).sum() < 54


def test_augmented_views_shape_the_weights(parts, tmp_path):
    plain = make_trainer(parts, tmp_path / "plain")
    views = make_trainer(parts, tmp_path / "views", augment=0.1)
    for trainer in (plain, views):
        trainer.train(stop_after_steps=3)
    assert not same(state(plain.projector), state(views.projector))


def test_ctrl_c_finishes_the_step_checkpoints_and_resume_is_exact(parts, tmp_path):
    import os
    import signal

    whole = make_trainer(parts, tmp_path / "whole")
    whole.train()
    stopped = make_trainer(parts, tmp_path / "stopped")
    sent = []

    def press_ctrl_c(metrics: dict, step: int) -> None:
        if step == 2 and not sent:
            sent.append(step)
            os.kill(os.getpid(), signal.SIGINT)

    stopped.log_metrics = press_ctrl_c
    with pytest.raises(KeyboardInterrupt, match="interrupted at epoch 0, step 2"):
        stopped.train()
    resumed = make_trainer(parts, tmp_path / "stopped")
    assert resumed.resume() and resumed.steps == 2
    resumed.train()
    assert same(state(whole.projector), state(resumed.projector))


def test_an_unfinished_run_under_other_settings_is_refused_naming_them(parts, tmp_path):
    make_trainer(parts, tmp_path).train(stop_after_steps=1)
    other = make_trainer(parts, tmp_path, margin=0.3, lr=1e-3, log_steps=5)
    with pytest.raises(CheckpointMismatch, match=r"lr, margin differ") as err:
        other.resume()
    assert "log_steps" not in str(err.value)  # a logging interval cannot change the weights
    assert make_trainer(parts, tmp_path, log_steps=5, checkpoint_steps=7).resume()


def test_a_finished_run_under_other_settings_is_not_passed_off_as_the_new_one(parts, tmp_path):
    make_trainer(parts, tmp_path, epochs=1).train()
    new = make_trainer(parts, tmp_path, epochs=1, key_bits=16)
    assert not new.resume() and new.steps == 0
    new.train()
    assert new.finished and new.projector.key_bits == 16


def test_ema_validates_and_exports_the_average_of_the_weights_along_training(parts, tmp_path):
    trainer = make_trainer(parts, tmp_path / "ema", ema=0.5)
    seen = []
    trainer.end_of_epoch = lambda epoch: seen.append(state(trainer.projector)) or {}
    expected = None
    for _ in range(3):
        trainer.train(stop_after_steps=1)
        now = state(trainer.projector)
        expected = now if expected is None else {k: 0.5 * expected[k] + 0.5 * now[k] for k in now}
    assert trainer.epoch == 1 and len(seen) == 1  # the epoch's check saw the average, not the last step's P
    assert all(torch.allclose(seen[0][k], expected[k]) for k in expected)
    assert not same(seen[0], now) and same(state(trainer.projector), now)  # and training goes on from its own
    trainer.keep_averaged_weights()
    assert all(torch.allclose(state(trainer.projector)[k], expected[k]) for k in expected)
    plain = make_trainer(parts, tmp_path / "plain")
    plain.train(stop_after_steps=3)
    before = state(plain.projector)
    plain.keep_averaged_weights()
    assert plain.average is None and same(before, state(plain.projector))
