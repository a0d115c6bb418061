"""Throughput of the evaluate stage's parts on this device, and the stage time they add up to on the LFW
test split: E's encodings, T(x, k)'s generation (P + G), the evaluation recognizer's embeddings (dlib's
landmarks and chips on the CPU, its network on the device), Inception features for FID, MTCNN detection, and the key-search
attacker (generation + E per candidate key).

Speed does not depend on weight values, so G and P have random weights at each size. E (SFace), dlib and
MTCNN are the real networks on real aligned faces. Inception is the real FID graph where its weight file
is installed; elsewhere torchvision's Inception-v3 graph with random weights stands in (the same
layers up to the 2048-d pool) and its rows say so.

The stage estimate counts what `ivfg.evaluation` does for N faces and R repeats: E on (1 + R)·N faces,
G on 3·R·N, dlib on (3 + 3R)·N, Inception on (3 + R)·N, MTCNN on (2 + R)·N, and per repeat the attack's
targets x budget candidate faces through G and E.

    python benchmarks/evaluate_speed.py --sizes cpu paper --device cuda --faces .gpu/faces
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ivfg.config import AlignConfig, load_params
from ivfg.data.align import FaceAligner
from ivfg.data.faceframe import to_frame
from ivfg.device import autocast_for, resolve_device, uses_bf16
from ivfg.evaluation.fid import inception_features
from ivfg.gan.export import generator_from_architecture
from ivfg.models.registry import build_inception, build_recognizer
from ivfg.models.weights import WeightsNotFound
from ivfg.projector.network import Projector
from ivfg.virtual import VirtualFaces
from train_speed import PAPER_G, cpu_preset_g, synchronize  # benchmarks/ is on the path when run as a script




class StandInInception(nn.Module):
    """torchvision's Inception-v3 layers, random weights, read where the FID graph is read (192: after the
    second max-pool; 2048: the final pool): the same work per image, for timing only."""

    def __init__(self):
        super().__init__()
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits=False, init_weights=False)
        self.layers = nn.Sequential(*[m for name, m in net.named_children()
                                      if name not in ("AuxLogits", "dropout", "fc")])
        self.taps = {192: 6, 2048: len(self.layers) - 1}  # maxpool2 and avgpool

    @torch.no_grad()
    def forward(self, images: torch.Tensor, dims: tuple[int, ...] = (192, 2048)) -> dict[int, torch.Tensor]:
        x = nn.functional.interpolate(images * 2 - 1, size=(299, 299), mode="bilinear", align_corners=False)
        out, last = {}, max(self.taps[d] for d in dims)
        for i, layer in enumerate(self.layers[:last + 1]):
            x = layer(x)
            for d in dims:
                if self.taps[d] == i:
                    out[d] = x.mean(dim=(2, 3))
        return out


def load_faces(folder: Path, count: int) -> torch.Tensor:
    files = sorted(folder.rglob("*.png")) + sorted(folder.rglob("*.jpg"))
    if not files:
        raise SystemExit(f"{folder}: no aligned faces (*.png or *.jpg)")
    arrays = [np.asarray(Image.open(f).convert("RGB").resize((128, 128))) for f in files[:count]]
    while len(arrays) < count:  # repeat the faces to the batch size asked for
        arrays += arrays[:count - len(arrays)]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


def preset_settings(params: Path, preset: Path):
    """The evaluate section of params.yaml, with a preset's `-S evaluate.key=value` lines applied (read here
    rather than by DVC, which a GPU machine may not have)."""
    import tempfile

    import yaml

    values = yaml.safe_load(params.read_text())
    if preset.suffix == ".args":
        for override in preset.read_text().split()[1::2]:
            key, value = override.split("=", 1)
            section, name = key.split(".", 1)
            values[section][name] = yaml.safe_load(value)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "params.yaml"
        copy.write_text(yaml.safe_dump(values))
        return load_params(copy).evaluate


def per_second(fn, items: int, device: torch.device, seconds: float) -> float:
    """Items per second over at least `seconds` (after one warm-up call)."""
    fn()
    synchronize(device)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls < 2:
        fn()
        synchronize(device)
        calls += 1
    return calls * items / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", choices=["cpu", "paper"], default=["cpu", "paper"])
    parser.add_argument("--faces", type=Path, default=Path("data/aligned"), help="a folder of aligned faces")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--batch", type=int, help="default: evaluate.batch")
    parser.add_argument("--faces-n", type=int, default=1252, help="N: faces in the test split (LFW: 1252)")
    parser.add_argument("--presets", nargs="+", type=Path, default=[Path("params.yaml")],
                        help="estimate the stage under these settings: params.yaml and/or preset .args files")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    params = load_params(args.params)
    cfg = params.evaluate
    batch = args.batch or cfg.batch
    device = resolve_device(args.device)
    autocast = autocast_for(cfg, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; amp {'bf16' if uses_bf16(cfg.amp, device) else 'fp32'} (Inception, attacker); "
          f"batch {batch}")

    faces = load_faces(args.faces, batch).to(device)
    chunk = load_faces(args.faces, 256)  # dlib's share of work per call, as FaceSets.embeddings hands it out
    encoder = build_recognizer("sface", device, fast=True)
    dlib = build_recognizer(cfg.recognizer, device)
    try:
        inception, inception_note = build_inception(device), ""
    except WeightsNotFound:
        inception, inception_note = StandInInception().eval().to(device), " (stand-in graph)"
    detector = FaceAligner(AlignConfig(device=str(device)))
    pictures = [Image.fromarray(a) for a in (faces * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()]

    rates = {
        "E encode": per_second(lambda: encoder.embed(faces), batch, device, args.seconds),
        "dlib embed": per_second(lambda: dlib.embed(chunk), len(chunk), device, args.seconds),
        "MTCNN detect": per_second(lambda: detector.detect(pictures), batch, device, args.seconds),
    }
    for dims in ((192,), (192, 2048)):
        def features(dims=dims):
            with autocast():
                inception_features(inception, faces, dims, device, batch)
        rates[f"Inception {'+'.join(map(str, dims))}{inception_note}"] = per_second(features, batch, device,
                                                                                   args.seconds)
    print("\n| part | faces/s |\n|---|---|")
    for part, rate in rates.items():
        print(f"| {part} | {rate:.0f} |", flush=True)

    n = args.faces_n
    print(f"\nevaluate on N = {n} faces (seconds per part):")
    print("| G | preset | R | FID | generate faces/s | attack candidates/s | encode | generate | dlib | Inception | "
          "MTCNN | attack | total s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        arch = PAPER_G if size == "paper" else cpu_preset_g(args.params)
        torch.manual_seed(0)
        g = generator_from_architecture(arch).eval().requires_grad_(False).to(device)
        train = params.train
        projector = Projector(encoder.embedding_dim, train.key_bits, arch["style_dim"], train.hidden_layers,
                              train.hidden_dim).to(device)
        virtual = VirtualFaces(encoder, projector, g).eval()
        emb = torch.randn(batch, encoder.embedding_dim, device=device)
        keys = torch.randint(0, 2, (batch, train.key_bits), device=device).float()
        generate = per_second(lambda: virtual.generate(emb, keys, batch), batch, device, args.seconds)

        def candidates():
            out = virtual.generate(emb, keys, batch)
            with autocast():
                encoder.embed(to_frame(out.to(device)))
        attack_rate = per_second(candidates, batch, device, args.seconds)
        for preset in args.presets:
            settings = preset_settings(args.params, preset)
            repeats, attack = settings.repeats, settings.attack_targets * settings.attack_budget
            dims = "+".join(map(str, sorted(settings.fid_dims)))
            inception_rate = next(r for k, r in rates.items() if k.startswith(f"Inception {dims}"))
            seconds = {"encode": (1 + repeats) * n / rates["E encode"], "generate": 3 * repeats * n / generate,
                       "dlib": (3 + 3 * repeats) * n / rates["dlib embed"],
                       "Inception": (3 + repeats) * n / inception_rate,
                       "MTCNN": (2 + repeats) * n / rates["MTCNN detect"], "attack": repeats * attack / attack_rate}
            print(f"| {arch['resolution']}px/{arch['style_dim']} | {preset.name} | {repeats} | {dims} | {generate:.0f} | "
                  f"{attack_rate:.0f} | " + " | ".join(f"{v:.0f}" for v in seconds.values())
                  + f" | {sum(seconds.values()):.0f} |", flush=True)


if __name__ == "__main__":
    main()
