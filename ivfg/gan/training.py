"""Progressive StyleGAN training that resumes exactly where it stopped.

One `torch.Generator` drives every random choice (real batches, mirroring, latents, style mixing), and
the checkpoint stores its state with the networks, the EMA, both optimisers and the image count, so
k steps + resume + (N - k) steps gives the same weights as N steps in one go.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torchvision.utils import save_image
from tqdm import tqdm

from ivfg.config import ConfigError, GanConfig, flatten
from ivfg.device import autocast_for
from ivfg.errors import IvfgError
from ivfg.fileio import atomic_path, sha256_file, write_torch
from ivfg.gan.distributed import Ranks, average_gradients
from ivfg.gan.export import save_generator
from ivfg.gan.loss import make_loss
from ivfg.gan.networks import Discriminator, Generator
from ivfg.gan.schedule import Position, Schedule
from ivfg.interrupt import finish_step_on_ctrl_c

log = logging.getLogger(__name__)
# Fields that define the networks and the training randomness: a checkpoint is only resumed under them.
ARCHITECTURE_KEYS = ("resolution", "start_resolution", "style_dim", "mapping_layers", "mapping_lr_mul",
                     "channel_base", "channel_max", "loss", "seed")
# pretrain_gan keys that cannot change the trained weights: where it runs, how often it checkpoints,
# what it measures and shows, and how the finished generator is exported (read afresh at export).
# Every other key is compared on resume. dvc.yaml leaves device, checkpoint_kimg and grid untracked too.
NOT_SHAPING = frozenset({"device", "checkpoint_kimg", "grid", "metrics_kimg", "fid_samples", "fid_dims",
                         "diversity_pairs", "truncation_psi", "w_avg_samples"})
PACKAGE = Path(__file__).resolve().parents[1]
# The code that shapes the weights (not gan/metrics.py, which only measures them, nor gan/export.py).
TRAINING_CODE = ("gan/training.py", "gan/networks.py", "gan/loss.py", "gan/schedule.py", "gan/data.py",
                 "data/files.py", "gan/distributed.py", "device.py")


class CheckpointMismatch(IvfgError):
    """A checkpoint written under other architecture parameters, training settings or training code."""


def architecture(cfg: GanConfig) -> dict:
    return {k: getattr(cfg, k) for k in ARCHITECTURE_KEYS}


def training_settings(cfg: GanConfig) -> dict[str, object]:
    """Every pretrain_gan value that shapes the weights, flat ("r1_gamma", "phases.32.lr"); phases of
    resolutions this run never reaches are left out."""
    raw = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in NOT_SHAPING}
    used = {str(r) for r in cfg.resolutions()}
    raw["phases"] = {res: phase for res, phase in raw["phases"].items() if res in used}
    return flatten(raw)


def changed_settings(before: dict, now: dict) -> dict[str, tuple]:
    return {k: (before.get(k), now.get(k)) for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)}


def code_fingerprint(package: Path = PACKAGE) -> str:
    """SHA-256 of the code that trains (TRAINING_CODE).

    DVC reruns the stage when its code changes, but the persisted run directory would let the rerun
    resume (or, when finished, merely re-export) weights trained by the old code and lock them as the
    new code's product; the checkpoint records the fingerprint so that resume can tell. Code that only
    measures is left out, so that editing a metric does not refuse a checkpoint it cannot have shaped.
    """
    listing = "".join(f"{name} {sha256_file(package / name)}\n" for name in TRAINING_CODE)
    return hashlib.sha256(listing.encode()).hexdigest()


def build_networks(cfg: GanConfig) -> tuple[Generator, Discriminator]:
    g = Generator(cfg.resolution, cfg.style_dim, cfg.mapping_layers, cfg.mapping_lr_mul, cfg.channel_base, cfg.channel_max)
    d = Discriminator(cfg.resolution, cfg.channel_base, cfg.channel_max)
    return g, d


class GanTrainer:
    def __init__(self, cfg: GanConfig, images: torch.Tensor, run_dir: Path, device: torch.device,
                 log_metrics: Callable[[dict, int], None] | None = None,
                 evaluate: Callable[[Generator, int, float], dict] | None = None,
                 log_image: Callable[[Path, int], None] | None = None, ranks: Ranks = Ranks()):
        if images.dtype != torch.uint8 or images.shape[-1] != cfg.resolution:
            raise ValueError(f"training images must be uint8 at {cfg.resolution}x{cfg.resolution}, "
                             f"got {images.dtype} {tuple(images.shape)}")
        self.cfg = cfg
        self.device = device
        self.run_dir = Path(run_dir)
        self.schedule = Schedule(cfg)
        self.images = images.to(device) if device.type == "cuda" else images
        self.log_metrics = log_metrics or (lambda metrics, step: None)
        self.evaluate = evaluate
        self.log_image = log_image or (lambda path, step: None)
        self.autocast = autocast_for(cfg, device)
        self.ranks = ranks
        for res in cfg.resolutions():
            if cfg.phases[res].batch % ranks.world:
                raise ConfigError(f"pretrain_gan.phases.{res}.batch ({cfg.phases[res].batch}) must be divisible by "
                                 f"the number of processes ({ranks.world})")

        torch.manual_seed(cfg.seed)  # identical initial weights in every process
        self.G, self.D = build_networks(cfg)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        for net in (self.G, self.D, self.G_ema):
            net.to(device)
            if device.type == "cuda":
                net.to(memory_format=torch.channels_last)
        # The fused kernel updates every parameter in one pass: 3x faster than the default on CPU too.
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=1e-3, betas=cfg.betas, eps=1e-8, fused=True)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=1e-3, betas=cfg.betas, eps=1e-8, fused=True)
        # Each process draws its own share of the batch; process 0 alone draws what a single one would.
        self.rng = torch.Generator().manual_seed(cfg.seed + 1_000_003 * ranks.rank)
        self.grid_z = torch.randn(cfg.grid ** 2, cfg.style_dim, generator=torch.Generator().manual_seed(cfg.seed + 7))
        self.shown = 0
        self.steps = 0
        self.next_checkpoint = round(cfg.checkpoint_kimg * 1000)
        self.next_metrics = round(cfg.metrics_kimg * 1000)
        self.history: list[dict] = []
        self.session_start: float | None = None
        self.evaluated_at = -1    # images shown at the last evaluation (known to every process)
        self.checkpointed_at = -1  # images shown at the last checkpoint written or loaded
        self.interrupted = False  # set by Ctrl-C: stop after this step
        self.code = code_fingerprint()
        self.loss = make_loss(cfg)

    # ----- checkpoints -------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def state_dict(self) -> dict:
        return {"architecture": architecture(self.cfg), "config": self.cfg.model_dump(mode="json"), "code": self.code,
                "settings": training_settings(self.cfg),
                "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "shown": self.shown, "steps": self.steps, "rng": self.ranks.gather(self.rng.get_state()),
                "next_checkpoint": self.next_checkpoint, "next_metrics": self.next_metrics,
                "history": self.history, "evaluated_at": self.evaluated_at}

    def save_checkpoint(self) -> None:
        """No wall time goes in: the run directory is a DVC output, and a rerun must give its hash."""
        state = self.state_dict()  # every process takes part: it gathers their RNG states
        if self.ranks.main:
            write_torch(self.checkpoint_path, state)
        self.ranks.barrier()

    def resume(self, allow_code_change: bool = False, allow_settings_change: bool = False) -> bool:
        """Load the run directory's checkpoint if there is one, finished or not. Refuse one from other
        architecture params; and, unless allowed explicitly, one trained under other settings (any key
        but NOT_SHAPING) or by other training code: its weights are not what these params would give."""
        if not self.checkpoint_path.is_file():
            return False
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
        if state["architecture"] != architecture(self.cfg):
            changed = {k: (state["architecture"].get(k), v) for k, v in architecture(self.cfg).items()
                       if state["architecture"].get(k) != v}
            raise CheckpointMismatch(
                f"{self.checkpoint_path} was written with other network parameters {changed} (checkpoint, params). "
                f"Restore those params to resume, or delete {self.run_dir} to start over on purpose.")
        before = state.get("settings") or training_settings(GanConfig.model_validate(state["config"]))
        changed = changed_settings(before, training_settings(self.cfg))
        if changed and not allow_settings_change:
            listed = "; ".join(f"pretrain_gan.{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise CheckpointMismatch(
                f"{self.checkpoint_path} was trained under other settings ({listed}; checkpoint -> params). "
                f"Restore them to resume it; or delete {self.run_dir} to train from scratch under these; or, to "
                "continue that run under the new settings on purpose, rerun with IVFG_RESUME_CHANGED_SETTINGS=1.")
        if state.get("code", self.code) != self.code and not allow_code_change:
            raise CheckpointMismatch(
                f"{self.checkpoint_path} was written by other training code (one of {', '.join(TRAINING_CODE)} "
                f"under ivfg/ has changed since). Delete {self.run_dir} to train from scratch with this code; or, "
                "to continue that run with it, rerun with IVFG_RESUME_CHANGED_CODE=1 (if the change cannot alter "
                "training, `dvc commit pretrain_gan` records the existing result instead).")
        for name in ("G", "D", "G_ema", "opt_g", "opt_d"):
            getattr(self, name).load_state_dict(state[name])
        self.shown, self.steps = state["shown"], state["steps"]
        if isinstance(state["rng"], torch.Tensor):  # written by a single-process run of an earlier version
            state["rng"] = [state["rng"]]
        if len(state["rng"]) != self.ranks.world:
            raise CheckpointMismatch(f"{self.checkpoint_path} was written by {len(state['rng'])} process(es); "
                                     f"resume it with as many (now {self.ranks.world}) to continue exactly")
        self.rng.set_state(state["rng"][self.ranks.rank])
        self.next_checkpoint, self.next_metrics = state["next_checkpoint"], state["next_metrics"]
        self.history = state["history"]
        self.evaluated_at = state.get("evaluated_at", round(self.history[-1]["kimg"] * 1000) if self.history else -1)
        self.checkpointed_at = self.shown
        log.info("resumed from %s at %.1f kimg", self.checkpoint_path, self.shown / 1000)
        return True

    # ----- one training step --------------------------------------------------------------------------
    def _reals(self, batch: int, pos: Position) -> torch.Tensor:
        idx = torch.randint(len(self.images), (batch,), generator=self.rng)
        flip = torch.rand(batch, generator=self.rng) < 0.5
        x = self.images[idx.to(self.images.device)].to(self.device).float() / 127.5 - 1
        if self.cfg.mirror:
            x = torch.where(flip.to(self.device)[:, None, None, None], x.flip(3), x)
        factor = self.cfg.resolution // pos.resolution
        if factor > 1:
            x = F.avg_pool2d(x, factor)
        if pos.alpha < 1:  # fade reals in step with the networks (NVlabs' process_reals)
            x = torch.lerp(F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest"), x, pos.alpha)
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else x

    def _latents(self, batch: int, pos: Position) -> torch.Tensor:
        z = torch.randn(batch, self.cfg.style_dim, generator=self.rng).to(self.device)
        mix = torch.rand((), generator=self.rng) < self.cfg.mixing_prob
        z2 = torch.randn(batch, self.cfg.style_dim, generator=self.rng).to(self.device)
        crossover = int(torch.randint(1, 2 * (pos.level + 1), (), generator=self.rng)) if pos.level > 0 else None
        if mix and crossover is not None:
            return self.G.ws_from_z(z, z2, crossover)
        return self.G.ws_from_z(z)

    def step(self) -> dict:
        pos = self.schedule.at(self.shown)
        batch = pos.phase.batch // self.ranks.world
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = pos.phase.lr

        # Discriminator.
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        reals = self._reals(batch, pos)
        with torch.no_grad(), self.autocast():
            fakes = self.G.synthesis(self._latents(batch, pos), pos.level, pos.alpha).to(reals.dtype)
        reals.requires_grad_(self.loss.reals_need_grad(self.steps))
        with self.autocast():
            real_logits = self.D(reals, pos.level, pos.alpha).float()
            fake_logits = self.D(fakes, pos.level, pos.alpha).float()
        loss_d, stats = self.loss.discriminator(real_logits, fake_logits, reals, fakes,
                                                lambda x: self.D(x, pos.level, pos.alpha).float(), self.rng, self.steps)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        average_gradients(self.D.parameters(), self.ranks.world)
        self.opt_d.step()

        # Generator.
        self.D.requires_grad_(False)
        self.G.requires_grad_(True)
        with self.autocast():
            fake_logits = self.D(self.G.synthesis(self._latents(batch, pos), pos.level, pos.alpha),
                                 pos.level, pos.alpha).float()
        loss_g = self.loss.generator(fake_logits)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        average_gradients(self.G.parameters(), self.ranks.world)
        self.opt_g.step()

        self._update_ema(pos.phase.batch)
        self.shown += pos.phase.batch
        self.steps += 1
        stats.update(loss_d=float(loss_d.detach()), loss_g=float(loss_g.detach()), resolution=pos.resolution, alpha=pos.alpha)
        return stats

    @torch.no_grad()
    def _update_ema(self, batch: int) -> None:
        beta = 0.5 ** (batch / (self.cfg.ema_kimg * 1000))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.lerp_(p, 1 - beta)

    # ----- the loop -----------------------------------------------------------------------------------
    def train(self, stop_after_steps: int | None = None) -> None:
        """Train to the end of the schedule (or for `stop_after_steps` more steps), checkpointing as it goes.

        Ctrl-C (SIGINT) finishes the current step, writes a checkpoint and raises KeyboardInterrupt, so
        nothing since the last checkpoint is lost; a second Ctrl-C stops at once.
        """
        self.interrupted = False
        # One process only: under torchrun the ranks could stop at different steps and deadlock.
        with finish_step_on_ctrl_c(self._interrupt, enabled=self.ranks.world == 1):
            self._train(stop_after_steps)
        if self.interrupted:
            raise KeyboardInterrupt(f"interrupted at {self.shown / 1000:.1f} kimg; checkpoint written, rerun to resume")

    def _interrupt(self) -> None:
        self.interrupted = True

    def _train(self, stop_after_steps: int | None) -> None:
        self.session_start = time.perf_counter()
        bar = tqdm(total=self.schedule.total, initial=self.shown, unit="img", unit_scale=True, desc="pretrain_gan",
                   disable=not self.ranks.main)
        steps = 0
        window_start, window_images = time.perf_counter(), 0
        while (self.shown < self.schedule.total and not self.interrupted
               and (stop_after_steps is None or steps < stop_after_steps)):
            stats = self.step()
            steps += 1
            pos = self.schedule.at(self.shown - 1)
            window_images += pos.phase.batch
            bar.update(pos.phase.batch)
            elapsed = time.perf_counter() - window_start
            if elapsed > 10 or self.shown >= self.schedule.total:
                stats["images_per_second"] = window_images / elapsed
                bar.set_postfix(res=stats["resolution"], alpha=f"{stats['alpha']:.2f}",
                                d=f"{stats['loss_d']:.3f}", g=f"{stats['loss_g']:.3f}",
                                ips=f"{stats['images_per_second']:.1f}")
                self.log_metrics({f"train/{k}": v for k, v in stats.items()}, self.shown)
                window_start, window_images = time.perf_counter(), 0
            paused = False
            if self.shown >= self.next_metrics:
                self.run_evaluation()
                self.next_metrics += round(self.cfg.metrics_kimg * 1000)
                paused = True
            if self.shown >= self.next_checkpoint:
                self.checkpoint()
                self.next_checkpoint += round(self.cfg.checkpoint_kimg * 1000)
                paused = True
            if paused:  # images/s measures training, not evaluations and checkpoint writes
                window_start, window_images = time.perf_counter(), 0
        bar.close()
        if self.shown >= self.schedule.total and self.evaluated_at != self.shown:
            self.run_evaluation()
        if self.checkpointed_at != self.shown:  # not twice at one point: one grid per step in MLflow
            self.checkpoint()

    def session_seconds(self) -> float:
        """Wall time of this session's training (evaluations included); MLflow keeps every session's."""
        return 0.0 if self.session_start is None else time.perf_counter() - self.session_start

    def checkpoint(self) -> None:
        self.save_checkpoint()
        self.save_grid()
        self.checkpointed_at = self.shown

    def save_grid(self) -> Path | None:
        if not self.ranks.main:
            return None
        pos = self.schedule.at(max(self.shown - 1, 0))
        with torch.no_grad():
            images = self.G_ema(self.grid_z.to(self.device), pos.level, pos.alpha).float().cpu()
        path = self.run_dir / "samples" / f"kimg{self.shown / 1000:08.1f}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_image((images + 1) / 2, tmp, nrow=self.cfg.grid, format="png")
        self.log_image(path, self.shown)
        return path

    def run_evaluation(self) -> None:
        self.evaluated_at = self.shown
        if self.evaluate is None or not self.ranks.main:
            self.ranks.barrier()
            return
        pos = self.schedule.at(max(self.shown - 1, 0))
        start = time.perf_counter()
        figures = self.evaluate(self.G_ema, pos.level, pos.alpha)
        figures.update(kimg=self.shown / 1000, alpha=pos.alpha)
        self.history.append(figures)  # results only: the history is checkpointed, its timing is not
        seconds = time.perf_counter() - start
        log.info("at %.1f kimg (%.0f s): %s", self.shown / 1000, seconds,
                 json.dumps({k: round(v, 4) for k, v in figures.items()}))
        self.log_metrics({f"eval/{k}": v for k, v in {**figures, "eval_seconds": seconds}.items()}, self.shown)
        self.ranks.barrier()

    # ----- the stage's product ------------------------------------------------------------------------
    @torch.no_grad()
    def mean_w(self, samples: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.cfg.seed + 11)
        total = torch.zeros(self.cfg.style_dim, dtype=torch.float64)
        for i in range(0, samples, 1024):
            z = torch.randn(min(1024, samples - i), self.cfg.style_dim, generator=g).to(self.device)
            total += self.G_ema.mapping(z).double().sum(0).cpu()
        return (total / samples).float()

    def export(self, path: Path) -> None:
        """The EMA generator with its mapping network, the mean latent w-bar, and how to rebuild it."""
        self.G_ema.w_avg.copy_(self.mean_w(self.cfg.w_avg_samples).to(self.device))
        save_generator(path, self.G_ema, architecture(self.cfg), truncation_psi=self.cfg.truncation_psi,
                       kimg=self.shown / 1000,
                       config_sha256=hashlib.sha256(json.dumps(self.cfg.model_dump(mode="json"), sort_keys=True)
                                                    .encode()).hexdigest())
