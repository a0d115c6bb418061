"""Training of P per the paper's Algorithm 1, resumable exactly.

Each step takes a batch of triplets (x1, x2, y), draws two distinct keys per triplet and renders the
quaternion T(x1,k1), T(x1,k2), T(x2,k1), T(y,k1) in one batch through P, G and R; only P learns. E(x) and
R(x) of the real faces never change, so they are computed once, before training, and indexed here.

One `torch.Generator` draws every random choice (epoch order, keys, views of the faces) and the checkpoint
stores its state with P, the optimiser and the position in the epoch: k steps + resume + the rest equals
one run.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ivfg.config import TrainConfig
from ivfg.device import autocast_for
from ivfg.errors import IvfgError
from ivfg.fileio import sha256_file, write_torch
from ivfg.interrupt import finish_step_on_ctrl_c
from ivfg.keys import distinct_key_pairs
from ivfg.projector.data import hard_negatives
from ivfg.projector.loss import TERMS, IvfgLoss, Quaternion
from ivfg.virtual import GENERATOR_SAMPLES, VirtualFaces, mean_square, random_latents

log = logging.getLogger(__name__)
PACKAGE = Path(__file__).resolve().parents[1]
# The code that shapes P's weights (not the code that only measures them, such as validation.py).
TRAINING_CODE = ("projector/network.py", "projector/loss.py", "projector/training.py", "projector/data.py",
                 "keys.py", "virtual.py", "gan/networks.py", "models/recognizers.py", "models/onnx_port.py")
# Settings that cannot change the trained weights: a checkpoint made under other values is resumed.
NOT_SHAPING = ("log_steps", "checkpoint_steps", "val_images", "grid_identities", "device")


def typical_square(virtual: VirtualFaces, seed: int) -> float:
    """The mean square of G's random (untruncated) latents around w_bar, per dimension."""
    return mean_square(random_latents(virtual.generator, GENERATOR_SAMPLES, seed), virtual.generator.w_avg)


def learning_rate(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """The lr of step `step` (0-based) of `total_steps`: a function of the step alone, so resuming needs
    no scheduler state."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))


def random_views(faces: torch.Tensor, strength: float, rng: torch.Generator) -> torch.Tensor:
    """Each face mirrored at random, scaled by up to 1 +- strength and shifted by up to `strength` of its
    half-width (one differentiable resampling): R's features then reward what survives a small change
    of framing, a person's look, rather than a pixel pattern that moves R alone. strength 0: the faces."""
    if strength == 0:
        return faces
    n = len(faces)
    draws = torch.rand(n, 4, generator=rng).to(faces.device)
    mirror = torch.where(draws[:, 0] < 0.5, -1.0, 1.0)
    scale = 1 + strength * (2 * draws[:, 1] - 1)
    theta = torch.zeros(n, 2, 3, device=faces.device)
    theta[:, 0, 0], theta[:, 1, 1] = mirror / scale, 1 / scale
    theta[:, :, 2] = strength * (2 * draws[:, 2:] - 1)
    grid = F.affine_grid(theta, list(faces.shape), align_corners=False).to(faces.dtype)
    return F.grid_sample(faces, grid, mode="bilinear", padding_mode="border", align_corners=False)


class CheckpointMismatch(IvfgError):
    """An unfinished run under other settings than the ones asked for now."""


def code_fingerprint() -> str:
    listing = "".join(f"{name} {sha256_file(PACKAGE / name)}\n" for name in TRAINING_CODE)
    return hashlib.sha256(listing.encode()).hexdigest()


def training_settings(cfg: TrainConfig, **inputs: str) -> dict:
    """Everything that shapes P's weights: the train params that matter, the inputs' identities
    (recognizer names, hashes of the generator and the triplets) and the training code's fingerprint."""
    settings = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in NOT_SHAPING}
    return {**settings, **inputs, "code": code_fingerprint()}


def _differences(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)]


class ProjectorTrainer:
    def __init__(self, cfg: TrainConfig, virtual: VirtualFaces, recognizer, encoder_embeddings: torch.Tensor,
                 recognizer_embeddings: torch.Tensor, triplets: torch.Tensor, run_dir: Path, device: torch.device,
                 settings: dict, log_metrics: Callable[[dict, int], None] | None = None,
                 end_of_epoch: Callable[[int], dict] | None = None, identities: torch.Tensor | None = None):
        """triplets: (T, 3) indices into the embeddings' rows (x1, x2, y); identities: each row's identity
        (integers), needed by `inter_pairs: batch` and `negatives: hard` to tell which faces are different people."""
        if triplets.dim() != 2 or triplets.shape[1] != 3 or len(triplets) == 0:
            raise ValueError(f"need a non-empty (T, 3) table of triplets, got shape {tuple(triplets.shape)}")
        needs_identities = cfg.inter_pairs == "batch" or cfg.negatives == "hard"
        if needs_identities and (identities is None or len(identities) != len(encoder_embeddings)):
            raise ValueError("train.inter_pairs 'batch' and train.negatives 'hard' need the identity of every "
                             "embedding row")
        self.cfg, self.device, self.run_dir = cfg, device, Path(run_dir)
        self.virtual, self.recognizer = virtual, recognizer
        self.encoder_embeddings = encoder_embeddings.to(device)
        self.recognizer_embeddings = recognizer_embeddings.to(device)
        self.triplets = triplets
        self.identities = None if identities is None else identities.to(device)
        self.settings = settings
        self.loss = IvfgLoss(cfg.weights, cfg.margin, cfg.reg_reduction,
                             typical_square(virtual, cfg.seed) if cfg.prior == "typical" else None,
                             cfg.inter_margin, cfg.intra_margin, cfg.con_margin, cfg.inter_form, cfg.temperature)
        self.log_metrics = log_metrics or (lambda metrics, step: None)
        self.end_of_epoch = end_of_epoch or (lambda epoch: {})
        self.autocast = autocast_for(cfg, device)
        # E, G and R are frozen: eval mode, no gradient into their weights.
        for frozen in (virtual.encoder, virtual.generator, recognizer):
            frozen.eval().requires_grad_(False)
        self.projector = virtual.projector.train().requires_grad_(True)
        self.optimizer = torch.optim.Adam(self.projector.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.average = None if cfg.ema is None else AveragedModel(
            self.projector, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
        self.rng = torch.Generator().manual_seed(cfg.seed)
        self.per_epoch = min(cfg.triplets_per_epoch or len(triplets), len(triplets))
        self.epoch, self.position, self.steps = 0, 0, 0
        self.order: torch.Tensor | None = None
        self.curve: list[dict] = []       # one row per log_steps steps (results only: it is checkpointed)
        self.validation: list[dict] = []  # one row per epoch
        # Timings of this session, kept out of the checkpoint (a DVC output a rerun must reproduce).
        self.session_seconds = 0.0
        self.rates: list[float] = []      # steps/s of each logged window
        self.interrupted = False
        self._window: list[dict] = []

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    @property
    def finished(self) -> bool:
        return self.epoch >= self.cfg.epochs

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.per_epoch // self.cfg.batch)

    @property
    def total_steps(self) -> int:
        return self.cfg.epochs * self.steps_per_epoch

    # ----- checkpoints -------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        write_torch(self.checkpoint_path, {
            "settings": self.settings, "finished": self.finished,
            "projector": self.projector.state_dict(), "optimizer": self.optimizer.state_dict(),
            "average": None if self.average is None else self.average.state_dict(),
            "rng": self.rng.get_state(), "epoch": self.epoch, "position": self.position, "steps": self.steps,
            "order": self.order, "curve": self.curve, "validation": self.validation, "window": self._window})

    def resume(self) -> bool:
        """Continue the run directory's checkpoint. An unfinished run under other settings is refused,
        naming them; a finished one under other settings is left for a new run (never re-exported)."""
        if not self.checkpoint_path.is_file():
            return False
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        changed = _differences(state["settings"], self.settings)
        if changed and state["finished"]:
            log.info("%s holds a finished run under other settings (%s): training a new one",
                     self.checkpoint_path, ", ".join(changed))
            return False
        if changed:
            raise CheckpointMismatch(
                f"{self.checkpoint_path} holds an unfinished run under other settings: {', '.join(changed)} "
                f"differ. Restore them to resume it, or delete {self.run_dir} to start over with these.")
        self.projector.load_state_dict(state["projector"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.average is not None:
            self.average.load_state_dict(state["average"])
        self.rng.set_state(state["rng"])
        self.epoch, self.position, self.steps = state["epoch"], state["position"], state["steps"]
        self.order, self.curve, self.validation = state["order"], state["curve"], state["validation"]
        self._window = state["window"]
        log.info("resumed from %s at epoch %d, step %d", self.checkpoint_path, self.epoch, self.steps)
        return True

    # ----- one step ----------------------------------------------------------------------------------
    def draw_keys(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """k1 and k2 != k1 per triplet; with `inter_pairs: batch`, one k1 shared by the whole batch."""
        return distinct_key_pairs(count, self.cfg.key_bits, self.rng, shared_k1=self.cfg.inter_pairs == "batch")

    def step(self, batch: torch.Tensor) -> dict[str, float]:
        x1, x2, y = batch.to(self.device).unbind(1)
        k1, k2 = (k.to(self.device) for k in self.draw_keys(len(batch)))
        if self.cfg.negatives == "hard":
            y = hard_negatives(self.recognizer_embeddings, self.identities, x1, y, self.cfg.negative_pool, self.rng)
        e = self.encoder_embeddings
        embeddings = torch.cat([e[x1], e[x1], e[x2], e[y]])
        keys = torch.cat([k1, k2, k1, k1])
        # The keys were just drawn, so they skip T's checks of a user's key (a device sync per step on a GPU).
        latents = self.virtual.w_of(self.projector(embeddings, keys))
        with self.autocast():
            faces = random_views(self.virtual.render(latents), self.cfg.augment, self.rng)
            features = self.recognizer.embed(faces).float()
        x1_k1, x1_k2, x2_k1, y_k1 = features.chunk(4)
        identities = None if self.cfg.inter_pairs == "triplet" else self.identities[torch.cat([x1, x2, y])]
        quaternion = Quaternion(self.recognizer_embeddings[x1], x1_k1, x1_k2, x2_k1, y_k1, latents, identities)
        total, stats = self.loss(quaternion, self.projector.w_avg)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.cfg, self.steps, self.total_steps)
        self.optimizer.step()
        if self.average is not None:
            self.average.update_parameters(self.projector)
        self.steps += 1
        return stats

    # ----- the weights that count ---------------------------------------------------------------------
    @contextmanager
    def averaged_weights(self):
        """P holds the weights that are validated and exported (with `train.ema`, the average) inside
        the block, and its training weights again after it."""
        if self.average is None:
            yield
            return
        own = {k: v.detach().clone() for k, v in self.projector.state_dict().items()}
        self.projector.load_state_dict(self.average.module.state_dict())
        try:
            yield
        finally:
            self.projector.load_state_dict(own)

    def keep_averaged_weights(self) -> None:
        """P keeps the weights to export (with `train.ema`, the average) once training is over."""
        if self.average is not None:
            self.projector.load_state_dict(self.average.module.state_dict())

    # ----- the loop ----------------------------------------------------------------------------------
    def train(self, stop_after_steps: int | None = None) -> None:
        """Train to the last epoch (or for `stop_after_steps` more steps), checkpointing as it goes.
        Ctrl-C finishes the step, writes a checkpoint and raises KeyboardInterrupt."""
        self.interrupted = False
        with finish_step_on_ctrl_c(self._interrupt):
            self._train(stop_after_steps)
        if self.interrupted:
            raise KeyboardInterrupt(f"interrupted at epoch {self.epoch}, step {self.steps}; "
                                    "checkpoint written, rerun to resume")

    def _interrupt(self) -> None:
        self.interrupted = True

    def _train(self, stop_after_steps: int | None) -> None:
        session_start = time.perf_counter()
        bar = tqdm(total=self.total_steps, initial=self.steps, unit="step", desc="train")
        done = window_steps = 0
        window_start = time.perf_counter()
        while not self.finished and not self.interrupted and (stop_after_steps is None or done < stop_after_steps):
            if self.order is None:
                self.order = torch.randperm(len(self.triplets), generator=self.rng)[: self.per_epoch]
            batch = self.triplets[self.order[self.position:self.position + self.cfg.batch]]
            stats = self.step(batch)
            self.position += len(batch)
            done += 1
            window_steps += 1
            bar.update(1)
            self._window.append(stats)
            if self.steps % self.cfg.log_steps == 0:
                rate = window_steps / max(time.perf_counter() - window_start, 1e-9)
                self._log_window(rate)
                bar.set_postfix(total=f"{self.curve[-1]['total']:.3f}", intra=f"{self.curve[-1]['intra']:.3f}",
                                steps_per_s=f"{rate:.2f}")
                window_start, window_steps = time.perf_counter(), 0
            if self.position >= len(self.order):
                self.epoch, self.position, self.order = self.epoch + 1, 0, None
                with self.averaged_weights():
                    figures = {"epoch": self.epoch, "step": self.steps, **self.end_of_epoch(self.epoch)}
                self.validation.append(figures)
                self.log_metrics({f"val/{k}": v for k, v in figures.items()}, self.steps)
                self._checkpoint(session_start)
                session_start = window_start = time.perf_counter()
                window_steps = 0  # steps/s measures training, not validation and checkpoint writes
            elif self.steps % self.cfg.checkpoint_steps == 0:
                self._checkpoint(session_start)
                session_start = window_start = time.perf_counter()
                window_steps = 0
        bar.close()
        self._checkpoint(session_start)

    def _checkpoint(self, session_start: float) -> None:
        self.save_checkpoint()
        self.session_seconds += time.perf_counter() - session_start

    def _log_window(self, steps_per_second: float) -> None:
        """One point of the loss curve: each term and the total averaged over the last log_steps steps."""
        keys = [*TERMS, "total"]
        row = {k: sum(s[k] for s in self._window) / len(self._window) for k in keys}
        row.update(step=self.steps, epoch=self.epoch + self.position / self.per_epoch)
        self.curve.append(row)
        self.rates.append(steps_per_second)
        self._window = []
        self.log_metrics({f"train/{k}": v for k, v in {**row, "steps_per_second": steps_per_second}.items()
                          if k != "step"}, self.steps)
