"""StyleGAN training speed: images/s of one G+D step (batch 16, after fade-in) per resolution.

Configurations: the paper's size (512 channels), every width divided by 4 (at most 128, style 512),
and the CPU preset of params.yaml. Beside images/s it prints the step's work: GFLOP per image
(counted by PyTorch's flop registry over one step) and the GFLOP/s achieved, next to this machine's
own convolution throughput (one 512-channel 3x3 convolution at 8x8, batch 16), measured in the same
run, which bounds what any implementation of the same step can reach. It prints no ratio to another
implementation: such a ratio means something only when both are measured in one run on one machine.

    python benchmarks/gan_speed.py --sizes paper quarter preset --resolutions 8 16 32 64 --steps 3
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from ivfg.config import GanConfig, load_params
from ivfg.device import resolve_device, uses_bf16
from ivfg.gan.training import GanTrainer

SIZES = {
    "paper": dict(style_dim=512, channel_base=8192, channel_max=512),
    "quarter": dict(style_dim=512, channel_base=2048, channel_max=128),
}


def config_for(size: str, resolution: int, loss: str, preset: GanConfig | None, amp: str = "auto") -> GanConfig:
    widths = SIZES.get(size) or dict(style_dim=preset.style_dim, channel_base=preset.channel_base,
                                     channel_max=preset.channel_max)
    extra = {} if preset is None or size != "preset" else dict(
        mapping_layers=preset.mapping_layers, r1_interval=preset.r1_interval, mixing_prob=preset.mixing_prob)
    return GanConfig(resolution=resolution, start_resolution=resolution, loss=loss, amp=amp, checkpoint_kimg=1e6,
                     metrics_kimg=1e6, **widths, **extra,
                     phases={resolution: dict(batch=16, lr=0.001, fade_kimg=0, stable_kimg=1e3)})


class FlopCount(TorchDispatchMode):
    """Sums the FLOPs of every op PyTorch's flop registry knows (convolutions and matrix products,
    forward and backward). torch's FlopCounterMode does the same but its module hooks fail on R1's
    gradient with respect to the input images."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.total += count(*args, **(kwargs or {}), out_val=out)
        return out


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock timings measure it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def conv_gflops_per_second(device: torch.device, dtype: torch.dtype) -> float:
    x = torch.randn(16, 512, 8, 8, device=device, dtype=dtype)
    w = torch.randn(512, 512, 3, 3, device=device, dtype=dtype)
    for _ in range(3):
        torch.nn.functional.conv2d(x, w, padding=1)
    synchronize(device)
    start, n = time.perf_counter(), 20
    for _ in range(n):
        torch.nn.functional.conv2d(x, w, padding=1)
    synchronize(device)
    return 2 * 16 * 64 * 512 * 512 * 9 * n / (time.perf_counter() - start) / 1e9


def images_per_second(cfg: GanConfig, device: torch.device, steps: int, seconds: float) -> tuple[float, float]:
    """From the median step time over at least `steps` steps and `seconds` seconds, after two warm-up
    steps: the median, because on a shared machine a few steps are slowed by other tenants."""
    images = torch.randint(0, 256, (64, 3, cfg.resolution, cfg.resolution), dtype=torch.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = GanTrainer(cfg, images, Path(tmp), device)
        trainer.step()  # warm-up: allocator, oneDNN primitive caches, cuDNN autotuning
        with FlopCount() as flops:
            trainer.step()
        synchronize(device)
        start, times = time.perf_counter(), []
        while len(times) < steps or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            trainer.step()
            synchronize(device)
            times.append(time.perf_counter() - t0)
        return 16 / statistics.median(times), flops.total / 16 / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["paper", "quarter", "preset"], choices=["paper", "quarter", "preset"])
    parser.add_argument("--resolutions", nargs="+", type=int, default=[8, 16, 32, 64])
    parser.add_argument("--steps", type=int, default=3, help="at least this many timed steps")
    parser.add_argument("--seconds", type=float, default=10.0, help="and at least this long per configuration")
    parser.add_argument("--loss", default="logistic_r1", choices=["logistic_r1", "wgan_gp"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    device = resolve_device(args.device)
    preset = load_params(args.params).pretrain_gan if "preset" in args.sizes else None
    dtype = torch.bfloat16 if uses_bf16(args.amp, device) else torch.float32
    print(f"device {device}, torch threads {torch.get_num_threads()}, loss {args.loss}, amp {args.amp}, batch 16")
    print(f"this machine's {str(dtype)[6:]} convolution throughput (512 ch, 3x3, 8x8, batch 16): "
          f"{conv_gflops_per_second(device, dtype):.0f} GFLOP/s")
    print(f"{'size':8s} {'res':>4s} {'img/s':>9s} {'GFLOP/img':>10s} {'GFLOP/s':>8s}")
    for size in args.sizes:
        for res in args.resolutions:
            if size == "preset" and res > preset.resolution:
                continue
            cfg = config_for(size, res, args.loss, preset, args.amp)
            ours, gflop = images_per_second(cfg, device, args.steps, args.seconds)
            print(f"{size:8s} {res:4d} {ours:9.2f} {gflop:10.2f} {ours * gflop:8.0f}", flush=True)


if __name__ == "__main__":
    main()
