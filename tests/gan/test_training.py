"""Training loop: exact resume, refusal of foreign checkpoints, the exported generator."""
from __future__ import annotations

import signal
from pathlib import Path

import time

import pytest
import torch

from ivfg.config import GanConfig
from ivfg.gan.export import load_generator
from ivfg.gan.training import CheckpointMismatch, GanTrainer


def tiny(**overrides) -> GanConfig:
    raw = dict(resolution=16, start_resolution=8, style_dim=16, mapping_layers=2, channel_base=128, channel_max=16,
               grid=2, checkpoint_kimg=0.016, metrics_kimg=1000, w_avg_samples=256,
               phases={8: dict(batch=4, lr=0.002, fade_kimg=0, stable_kimg=0.012),
                       16: dict(batch=4, lr=0.002, fade_kimg=0.012, stable_kimg=0.012)})
    raw.update(overrides)
    return GanConfig(**raw)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(20, 3, 16, 16, generator=g) * 255).to(torch.uint8)


def run(cfg: GanConfig, images: torch.Tensor, run_dir: Path, steps: int | None = None) -> GanTrainer:
    trainer = GanTrainer(cfg, images, run_dir, torch.device("cpu"))
    trainer.resume()
    trainer.train(stop_after_steps=steps)
    return trainer


@pytest.mark.parametrize("loss", ["logistic_r1", "wgan_gp"])
def test_stop_and_resume_gives_identical_weights(images, tmp_path, loss):
    cfg = tiny(loss=loss)
    straight = run(cfg, images, tmp_path / "a")
    assert straight.shown == 36 and straight.steps == 9
    first = run(cfg, images, tmp_path / "b", steps=4)  # stops inside the 16x16 fade-in
    assert first.shown == 16 and first.schedule.at(first.shown).alpha < 1
    resumed = run(cfg, images, tmp_path / "b")
    assert resumed.steps == 9
    for name in ("G", "D", "G_ema"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert straight.opt_g.state_dict()["state"][0]["exp_avg"].equal(resumed.opt_g.state_dict()["state"][0]["exp_avg"])


def test_training_changes_the_networks_and_writes_sample_grids(images, tmp_path):
    cfg = tiny()
    trainer = GanTrainer(cfg, images, tmp_path, torch.device("cpu"))
    before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    trainer.train()
    assert any(not torch.equal(before[k], v) for k, v in trainer.G.state_dict().items())
    grids = sorted((tmp_path / "samples").glob("*.png"))
    assert grids and (tmp_path / "checkpoint.pt").is_file()


def test_ctrl_c_checkpoints_after_the_current_step_and_resume_is_exact(images, tmp_path):
    cfg = tiny()
    straight = run(cfg, images, tmp_path / "a")
    trainer = GanTrainer(cfg, images, tmp_path / "b", torch.device("cpu"))
    step = trainer.step

    def step_then_ctrl_c() -> dict:
        stats = step()
        if trainer.steps == 3:  # between checkpoints (every 4 steps)
            signal.raise_signal(signal.SIGINT)
        return stats

    trainer.step = step_then_ctrl_c
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN in a background job
    with pytest.raises(KeyboardInterrupt, match="interrupted at 0.0 kimg; checkpoint written"):
        trainer.train()
    assert signal.getsignal(signal.SIGINT) is before  # the trainer's handler is gone again
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["shown"] == 12
    resumed = run(cfg, images, tmp_path / "b")
    assert resumed.steps == 9
    for name in ("G", "D", "G_ema"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_rerun_after_the_end_does_not_train_again(images, tmp_path):
    cfg = tiny()
    run(cfg, images, tmp_path)
    written = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    again = run(cfg, images, tmp_path)
    assert again.steps == 9
    # nothing rewritten: one checkpoint and one sample grid per point of training, even across reruns
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == written


def test_one_sample_grid_per_step_when_the_end_falls_on_a_checkpoint(images, tmp_path):
    logged = []
    trainer = GanTrainer(tiny(checkpoint_kimg=0.036), images, tmp_path, torch.device("cpu"),
                         log_image=lambda path, step: logged.append(step))
    trainer.train()  # 36 images in all: the interval checkpoint and the end coincide
    assert logged == [36]


def test_a_checkpoint_of_another_architecture_is_refused(images, tmp_path):
    run(tiny(), images, tmp_path, steps=2)
    trainer = GanTrainer(tiny(channel_max=8), images, tmp_path, torch.device("cpu"))
    with pytest.raises(CheckpointMismatch, match="channel_max"):
        trainer.resume()


def test_a_checkpoint_of_other_training_code_is_refused_unless_allowed(images, tmp_path, monkeypatch):
    run(tiny(), images, tmp_path, steps=2)
    monkeypatch.setattr("ivfg.gan.training.code_fingerprint", lambda: "edited")
    trainer = GanTrainer(tiny(), images, tmp_path, torch.device("cpu"))
    with pytest.raises(CheckpointMismatch, match="other training code"):
        trainer.resume()
    assert trainer.resume(allow_code_change=True) and trainer.steps == 2
    trainer.train(stop_after_steps=1)
    assert torch.load(trainer.checkpoint_path, weights_only=False)["code"] == "edited"


def test_code_fingerprint_covers_the_training_code_only(tmp_path):
    from ivfg.gan.training import TRAINING_CODE, code_fingerprint

    for name in (*TRAINING_CODE, "gan/metrics.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"# {name}\n")
    before = code_fingerprint(tmp_path)
    (tmp_path / "gan" / "metrics.py").write_text("# a new metric: it cannot have shaped a checkpoint\n")
    assert code_fingerprint(tmp_path) == before
    (tmp_path / "gan" / "loss.py").write_text("# another loss\n")
    assert code_fingerprint(tmp_path) != before


@pytest.mark.parametrize("change, named", [
    ({"r1_gamma": 1.0}, "pretrain_gan.r1_gamma: 10.0 -> 1.0"),
    ({"ema_kimg": 5.0}, "pretrain_gan.ema_kimg: 10.0 -> 5.0"),
    ({"betas": (0.5, 0.99)}, "pretrain_gan.betas: [0.0, 0.99] -> [0.5, 0.99]"),
    ({"mixing_prob": 0.5}, "pretrain_gan.mixing_prob"),
    ({"amp": "bf16"}, "pretrain_gan.amp: 'auto' -> 'bf16'"),
    ({"phases": {8: dict(batch=4, lr=0.001, fade_kimg=0, stable_kimg=0.012),
                 16: dict(batch=4, lr=0.002, fade_kimg=0.012, stable_kimg=0.012)}}, "pretrain_gan.phases.8.lr"),
], ids=["r1_gamma", "ema_kimg", "betas", "mixing_prob", "amp", "phase-lr"])
def test_a_checkpoint_under_other_training_settings_is_refused_naming_them(change, named, images, tmp_path):
    run(tiny(), images, tmp_path, steps=2)
    trainer = GanTrainer(tiny(**change), images, tmp_path, torch.device("cpu"))
    with pytest.raises(CheckpointMismatch, match="trained under other settings") as refused:
        trainer.resume()
    assert named in str(refused.value) and "IVFG_RESUME_CHANGED_SETTINGS=1" in str(refused.value)
    assert trainer.steps == 0  # nothing loaded
    assert trainer.resume(allow_settings_change=True) and trainer.steps == 2  # the explicit way on


def test_a_finished_run_under_other_settings_is_not_re_exported(images, tmp_path):
    run(tiny(), images, tmp_path)
    with pytest.raises(CheckpointMismatch, match="r1_gamma"):
        GanTrainer(tiny(r1_gamma=3.0), images, tmp_path, torch.device("cpu")).resume()


def test_keys_that_cannot_shape_the_weights_resume_bit_exactly(images, tmp_path):
    """Where it runs, how often it checkpoints or measures, and export settings: resumed as it was."""
    straight = run(tiny(), images, tmp_path / "a")
    run(tiny(), images, tmp_path / "b", steps=4)
    neutral = dict(device="cpu", checkpoint_kimg=0.008, grid=3, metrics_kimg=500, fid_samples=64,
                   diversity_pairs=10, truncation_psi=0.5, w_avg_samples=128)
    resumed = run(tiny(**neutral), images, tmp_path / "b")
    assert resumed.steps == 9
    for name in ("G", "D", "G_ema"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_training_settings_leave_out_unused_phases_and_measuring_keys():
    from ivfg.gan.training import training_settings

    settings = training_settings(tiny(phases={8: dict(batch=4, lr=0.002, fade_kimg=0, stable_kimg=0.012),
                                              16: dict(batch=4, lr=0.002, fade_kimg=0.012, stable_kimg=0.012),
                                              32: dict(batch=2, lr=0.1, fade_kimg=1, stable_kimg=1)}))
    assert settings == training_settings(tiny())  # phase 32 is never reached at resolution 16
    assert "phases.16.batch" in settings and "r1_gamma" in settings
    assert not {"device", "grid", "checkpoint_kimg", "metrics_kimg", "fid_samples"} & set(settings)


def test_exported_generator_rebuilds_with_its_mean_latent(images, tmp_path):
    trainer = run(tiny(), images, tmp_path)
    trainer.export(tmp_path / "generator.pt")
    g = load_generator(tmp_path / "generator.pt")
    z = torch.randn(3, 16)
    with torch.no_grad():
        assert torch.allclose(g(z), trainer.G_ema(z), atol=1e-6)
        expected = trainer.G_ema.mapping(torch.randn(256, 16, generator=torch.Generator().manual_seed(11))).mean(0)
    assert torch.allclose(g.w_avg, expected, atol=1e-5)
    assert g.w_avg.abs().sum() > 0


def test_two_exports_of_one_generator_are_byte_identical_files(images, tmp_path):
    """DVC hashes the file: reproduced weights must give the locked md5, whatever the file was called
    while being written (torch.save names its inner folder after it)."""
    trainer = run(tiny(), images, tmp_path / "run")
    trainer.export(tmp_path / "a" / "generator.pt")
    trainer.export(tmp_path / "b" / "generator.pt")
    assert (tmp_path / "a" / "generator.pt").read_bytes() == (tmp_path / "b" / "generator.pt").read_bytes()


def test_images_of_the_wrong_size_are_refused(images, tmp_path):
    with pytest.raises(ValueError, match="uint8 at 16x16"):
        GanTrainer(tiny(), images[:, :, :8, :8], tmp_path, torch.device("cpu"))


def test_a_checkpoint_holds_no_wall_time_so_a_rerun_writes_the_same_bytes(images, tmp_path):
    """runs/pretrain_gan is a DVC output: two runs of the same settings must give one hash."""
    first = run(tiny(), images, tmp_path / "a", steps=3)
    time.sleep(0.2)  # a stored wall time would now differ
    second = run(tiny(), images, tmp_path / "b", steps=3)
    assert first.session_seconds() > 0 and second.session_seconds() > 0
    assert (tmp_path / "a" / "checkpoint.pt").read_bytes() == (tmp_path / "b" / "checkpoint.pt").read_bytes()
    state = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    assert not [k for k in state if "second" in k]
    logged = {}
    finished = GanTrainer(tiny(), images, tmp_path / "c", torch.device("cpu"), evaluate=lambda g, lv, a: {"fid192": 1.0},
                          log_metrics=lambda metrics, step: logged.update(metrics))
    finished.train()
    assert finished.history and not [k for k in finished.history[-1] if "second" in k]
    assert logged["eval/eval_seconds"] >= 0  # the timing goes to MLflow instead
