"""Training speed of the projector P (paper Algorithm 1): steps/s, time per epoch, and where a step's time
goes (P, G and R, each forward + backward), on this device.

Each step renders 4 faces per triplet through P and G and reads them with R, forward and backward;
E(x) and R(x) of real faces are precomputed, as the train stage does. Speed does not depend on the
weights' values, so G is built at each size with random weights (the paper's FaceNet R likewise
when its weights are absent, and the row says so).

    python benchmarks/train_speed.py --sizes cpu paper --device cpu
    python benchmarks/train_speed.py --sizes paper --device cuda --recognizers sface facenet-vggface2
"""
from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import torch

from ivfg.config import TrainConfig, load_params
from ivfg.device import autocast_for, resolve_device, uses_bf16
from ivfg.gan.export import generator_from_architecture
from ivfg.models.recognizers import FaceNet
from ivfg.models.registry import build_recognizer
from ivfg.models.weights import WeightsNotFound
from ivfg.projector.network import Projector
from ivfg.projector.training import ProjectorTrainer, training_settings
from ivfg.virtual import VirtualFaces

# Generator architectures: the CPU preset (params.yaml) and the paper's 128x128 StyleGAN.
PAPER_G = {"resolution": 128, "style_dim": 512, "mapping_layers": 8, "mapping_lr_mul": 0.01,
           "channel_base": 8192, "channel_max": 512}
LFW_TRAIN_TRIPLETS = 7134  # data/triplets/train.csv of the locked split, used when that file is absent


def cpu_preset_g(params_path: Path) -> dict:
    cfg = load_params(params_path).pretrain_gan
    return {k: getattr(cfg, k) for k in PAPER_G}


def recognizer(name: str, device: torch.device):
    try:
        return build_recognizer(name, device, fast=True), ""
    except WeightsNotFound:
        if not name.startswith("facenet"):
            raise
        return FaceNet(None, name).freeze().to(device), " (random weights: not available offline)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, seconds: float) -> float:
    """Median seconds per call over at least `seconds` (after two warm-up calls)."""
    fn(), fn()
    synchronize(device)
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        t = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def parts(virtual: VirtualFaces, r, emb: torch.Tensor, keys: torch.Tensor, autocast) -> dict:
    """Forward + backward of each network alone, on one step's 4B inputs."""
    w = virtual.latents(emb, keys).detach()
    with autocast():
        faces = virtual.render(w).detach()

    def p_only():
        virtual.latents(emb, keys).sum().backward()

    def g_only():
        with autocast():
            out = virtual.render(w.requires_grad_(True))
        out.float().sum().backward()

    def r_only():
        with autocast():
            out = r.embed(faces.requires_grad_(True))
        out.float().sum().backward()

    return {"P": p_only, "G": g_only, "R": r_only}


def bench(size: str, arch: dict, rec_name: str, args, device: torch.device, triplets: int) -> dict:
    cfg = TrainConfig(batch=args.batch, amp=args.amp, log_steps=10 ** 9, checkpoint_steps=10 ** 9)
    torch.manual_seed(0)
    g = generator_from_architecture(arch).eval().requires_grad_(False).to(device)
    r, note = recognizer(rec_name, device)
    encoder_dim = r.embedding_dim
    projector = Projector(encoder_dim, cfg.key_bits, arch["style_dim"], cfg.hidden_layers, cfg.hidden_dim).to(device)
    virtual = VirtualFaces(r, projector, g)
    emb = torch.randn(max(64, 4 * args.batch), encoder_dim)
    table = torch.randint(0, len(emb), (10 ** 5, 3))
    trainer = ProjectorTrainer(cfg, virtual, r, emb, emb, table, Path(args.scratch), device, training_settings(cfg))
    batches = iter(table.split(args.batch))
    step = timed(lambda: trainer.step(next(batches)), device, args.seconds)
    n = 4 * args.batch
    keys = torch.randint(0, 2, (n, cfg.key_bits), device=device).float()
    pieces = {k: timed(fn, device, args.seconds / 2)
              for k, fn in parts(virtual, r, emb[:n].to(device), keys, trainer.autocast).items()}
    steps_per_epoch = -(-triplets // args.batch)
    epoch_min = steps_per_epoch * step / 60
    if args.full_epoch:  # every step of one epoch, timed end to end, instead of the median step times steps
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps_per_epoch):
            trainer.step(next(batches))
        synchronize(device)
        epoch_min = (time.perf_counter() - start) / 60
    return {"size": size, "G": f"{arch['resolution']}px/{arch['style_dim']}", "R": rec_name + note,
            "batch": args.batch, "step_ms": 1000 * step, "steps_per_s": 1 / step,
            "triplets_per_s": args.batch / step, "epoch_min": epoch_min,
            **{f"{k}_ms": 1000 * v for k, v in pieces.items()}}


def r_forms(args, device: torch.device) -> None:
    """R alone, forward + backward on one step's 4B faces: the exact SFace port against training's fast
    form (batch norms folded, NHWC), in fp32 and bf16."""
    faces = torch.rand(4 * args.batch, 3, 32, 32, device=device)
    print(f"\nR alone (sface), forward + backward of {len(faces)} faces read at 112x112:")
    print("| form | amp | ms | ms/face |\n|---|---|---|---|")
    for fast in (False, True):
        r = build_recognizer("sface", device, fast=fast)
        for amp in ("fp32", "bf16"):
            autocast = autocast_for(TrainConfig(amp=amp), device)

            def step():
                with autocast():
                    out = r.embed(faces.clone().requires_grad_(True))
                out.float().sum().backward()

            t = timed(step, device, args.seconds / 2)
            print(f"| {'fast' if fast else 'exact'} | {amp} | {1000 * t:.0f} | {1000 * t / len(faces):.1f} |",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", choices=["cpu", "paper"], default=["cpu", "paper"])
    parser.add_argument("--recognizers", nargs="+", default=["sface"])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--triplets", type=Path, default=Path("data/triplets/train.csv"))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--full-epoch", action="store_true",
                        help="time one whole epoch of steps (default: the median step times the epoch's steps)")
    parser.add_argument("--compare-r", action="store_true", help="also time R's exact and fast forms alone")
    parser.add_argument("--scratch", default="/tmp/ivfg-train-speed")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    triplets = LFW_TRAIN_TRIPLETS
    if args.triplets.is_file():
        with open(args.triplets, newline="") as handle:
            triplets = sum(1 for _ in csv.DictReader(handle))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; amp {'bf16' if uses_bf16(args.amp, device) else 'fp32'}; batch {args.batch} triplets "
          f"({4 * args.batch} faces through G and R per step); epoch = {triplets} triplets, "
          f"{'timed whole' if args.full_epoch else 'median step x steps'}")
    header = "| size | G | R | step ms | steps/s | triplets/s | epoch min | P ms | G ms | R ms |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for size in args.sizes:
        arch = PAPER_G if size == "paper" else cpu_preset_g(args.params)
        for rec in args.recognizers:
            row = bench(size, arch, rec, args, device, triplets)
            print(f"| {row['size']} | {row['G']} | {row['R']} | {row['step_ms']:.0f} | {row['steps_per_s']:.2f} | "
                  f"{row['triplets_per_s']:.1f} | {row['epoch_min']:.2f} | {row['P_ms']:.1f} | {row['G_ms']:.0f} | "
                  f"{row['R_ms']:.0f} |", flush=True)
    if args.compare_r:
        r_forms(args, device)


if __name__ == "__main__":
    main()
