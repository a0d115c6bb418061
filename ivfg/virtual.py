"""T(x, k) = G(P(E(x), k)): a face and a key in, the face of a virtual identity out.

One piece that training, evaluation and the user CLI share: it holds E, P and G (loaded once, frozen
but for P while training), runs batched on any device, and reads and writes the projector's model file.
Images are float RGB in [0, 1] in the canonical face frame (docs/design.md), any size for the input; the
output is at the generator's resolution (consumers resize to what they read).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ivfg.errors import InputError
from ivfg.fileio import write_torch
from ivfg.gan.export import load_generator
from ivfg.gan.networks import Generator
from ivfg.keys import as_batch
from ivfg.models.recognizers import Recognizer
from ivfg.projector.network import Projector

FORMAT = "ivfg-projector/1"


class VirtualFaces(nn.Module):
    def __init__(self, encoder: Recognizer, projector: Projector, generator: Generator, truncation_psi: float = 1.0):
        super().__init__()
        self.encoder, self.projector, self.generator = encoder, projector, generator
        self.truncation_psi = truncation_psi  # T renders w_bar + psi (w - w_bar) (`train.truncation_psi`)
        self.model_info: dict = {}  # what the model file says of itself (encoder, recognizers, τ, ...)

    @property
    def key_bits(self) -> int:
        return self.projector.key_bits

    @torch.no_grad()
    def embed(self, faces01: torch.Tensor) -> torch.Tensor:
        """E(x), computed once per face and reusable under any key."""
        return self.encoder.embed(faces01)

    def w_of(self, projected: torch.Tensor) -> torch.Tensor:
        """P's output as a latent w: itself, or through G's frozen mapping network for a P in Z."""
        return self.generator.mapping(projected) if self.projector.space == "z" else projected

    def latents(self, embeddings: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """The w that G renders for P(E(x), k), in W whatever space P predicts in, truncated by ψ toward
        w_bar. (Training takes P's w as it is, through `w_of`.)"""
        keys = as_batch(keys, len(embeddings), self.key_bits).to(embeddings.device)
        w = self.w_of(self.projector(embeddings, keys))
        if self.truncation_psi == 1.0:
            return w
        w_avg = self.generator.w_avg.to(w.dtype)
        return w_avg + self.truncation_psi * (w - w_avg)

    def render(self, latents: torch.Tensor) -> torch.Tensor:
        """G(w) with one w for every style input, in [0, 1] (clamped, as images are stored and read)."""
        return ((self.generator.synthesis(latents).float() + 1) / 2).clamp(0, 1)

    def from_embeddings(self, embeddings: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return self.render(self.latents(embeddings, keys))

    def forward(self, faces01: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return self.from_embeddings(self.embed(faces01), keys)

    @torch.no_grad()
    def generate(self, embeddings: torch.Tensor, keys: torch.Tensor, batch: int = 64) -> torch.Tensor:
        """Virtual faces for many embeddings (keys: one per face, or one for all), batched, on the CPU."""
        keys = as_batch(keys, len(embeddings), self.key_bits)
        device = next(self.projector.parameters()).device
        out = [self.from_embeddings(embeddings[i:i + batch].to(device), keys[i:i + batch].to(device)).cpu()
               for i in range(0, len(embeddings), batch)]
        return torch.cat(out) if out else torch.zeros(0, 3, self.generator.resolution, self.generator.resolution)


GENERATOR_SAMPLES = 10_000  # G's random latents that P's latents are compared with (spread, the typical prior)


@torch.no_grad()
def random_latents(generator: Generator, count: int, seed: int = 0, chunk: int = 1000) -> torch.Tensor:
    """w of `count` seeded random z through G's mapping network (no truncation), on the CPU."""
    device = generator.w_avg.device
    z = torch.randn(count, generator.style_dim, generator=torch.Generator().manual_seed(seed))
    return torch.cat([generator.mapping(z[i:i + chunk].to(device)).float().cpu() for i in range(0, count, chunk)])


def mean_square(latents: torch.Tensor, w_avg: torch.Tensor) -> float:
    """Mean (w - w_bar)^2 over latents and W's dimensions, on the CPU."""
    return float((latents.float().cpu() - w_avg.float().cpu()).pow(2).mean())


def spread_of(latents: torch.Tensor, generator_latents: torch.Tensor, w_avg: torch.Tensor) -> dict:
    """How far latents reach from w-bar: their mean (w - w_bar)^2 over that of G's random latents.
    Near 0, every face they render is close to the average face; far above 1, outside G's usual range."""
    p, g = mean_square(latents, w_avg), mean_square(generator_latents, w_avg)
    return {"ratio": p / g, "projector": p, "generator": g}


def save_projector(path: str | Path, projector: Projector, encoder: str, train_recognizer: str, **extra) -> None:
    """P and w-bar as one loadable file, with what it needs to be rebuilt and which encoder feeds it."""
    write_torch(path, {"format": FORMAT, "projector": projector.config(),
                       "state_dict": {k: v.detach().cpu() for k, v in projector.state_dict().items()},
                       "encoder": encoder, "train_recognizer": train_recognizer, **extra})


def load_projector(path: str | Path, device: torch.device | str = "cpu") -> tuple[Projector, dict]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} is missing: train the projector first (dvc repro train)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT:
        raise InputError(f"{path} is not a projector written by the train stage (format {state.get('format')!r}, "
                         f"expected {FORMAT!r})")
    return projector_from_state(state["projector"], state["state_dict"], device), state


def projector_from_state(config: dict, weights: dict, device: torch.device | str = "cpu") -> Projector:
    projector = Projector(**config)
    projector.load_state_dict(weights)
    return projector.eval().requires_grad_(False).to(device)


def t_settings(state: Mapping) -> dict:
    """How T runs, as a projector or model file records it. Files written before a setting existed ran
    without it: no mirror image, ψ 1."""
    return {"encoder_mirror": bool(state.get("encoder_mirror", False)),
            "truncation_psi": float(state.get("truncation_psi", 1.0))}


def assemble(projector: Projector, generator: Generator, info: dict, device: torch.device | str,
             weights: Mapping[str, str | None] | None, fast: bool) -> VirtualFaces:
    """T(x, k) around a loaded P and G, with the encoder the model file names (`info["encoder"]`), reading
    each face and its mirror image where the file says T does, and at the file's ψ (`t_settings`)."""
    from ivfg.models.registry import build_recognizer

    how = t_settings(info)
    encoder = build_recognizer(info["encoder"], device, weights, fast=fast, mirror=how["encoder_mirror"])
    virtual = VirtualFaces(encoder, projector, generator, how["truncation_psi"]).eval()
    virtual.model_info = info
    return virtual


def load_virtual_faces(projector_path: str | Path, generator_path: str | Path, device: torch.device | str = "cpu",
                       weights: Mapping[str, str | None] | None = None, fast: bool = False) -> VirtualFaces:
    """T(x, k) from the train stage's projector and the pretrain_gan stage's generator. `fast`: the
    encoder's fast form (equal to float rounding, about twice as fast on a CPU)."""
    projector, state = load_projector(projector_path, device)
    generator = load_generator(generator_path, device)
    if projector.style_dim != generator.style_dim:
        raise InputError(f"{projector_path} projects into a {projector.style_dim}-d W but {generator_path} has "
                         f"style_dim {generator.style_dim}: they come from different runs")
    info = {k: v for k, v in state.items() if k not in ("state_dict", "projector")}
    return assemble(projector, generator, info, device, weights, fast)


MODEL_FORMAT = "ivfg-model/1"
MODEL_PARTS = ("key_bits", "encoder", "projector", "projector_state", "generator_architecture", "generator_state")


def export_model(path: str | Path, projector_path: str | Path, generator_path: str | Path) -> dict:
    """The one file a user needs (format `ivfg-model/1`): P with w-bar and the generator's synthesis
    weights, the key length, how T runs (E's registry name, whether it reads the mirror image too, ψ),
    and the evaluation recognizer with its thresholds: τ (set on real faces), τ_v (on virtual faces, each
    person their own key: what `ivfg compare` decides at) and τ_1 (on virtual faces under one key, reported
    beside it). Returns its description (everything but the weights)."""
    projector, state = load_projector(projector_path)
    generator = torch.load(Path(generator_path), map_location="cpu", weights_only=True)
    if not isinstance(generator, dict) or "architecture" not in generator:
        raise InputError(f"{generator_path} is not a generator exported by the pretrain_gan stage")
    if generator["architecture"]["style_dim"] != projector.style_dim:
        raise InputError(f"{projector_path} and {generator_path} come from different runs (style_dim differs)")
    info = {"format": MODEL_FORMAT, "key_bits": projector.key_bits, "encoder": state["encoder"],
            **t_settings(state),
            "train_recognizer": state["train_recognizer"], "eval_recognizer": state.get("eval_recognizer"),
            "eval_threshold": state.get("eval_threshold"), "virtual_threshold": state.get("virtual_threshold"),
            "one_key_threshold": state.get("one_key_threshold"),
            "resolution": generator["architecture"]["resolution"]}
    write_torch(path, {**info, "projector": projector.config(),
                       "projector_state": {k: v.detach().cpu() for k, v in projector.state_dict().items()},
                       "generator_architecture": generator["architecture"],
                       "generator_state": generator["state_dict"]})
    return info


def load_model(path: str | Path, device: torch.device | str = "cpu",
               weights: Mapping[str, str | None] | None = None, fast: bool = False) -> VirtualFaces:
    """T(x, k) from one `ivfg-model/1` file: needs neither DVC nor any training code."""
    from ivfg.gan.export import generator_from_state

    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file {path} is missing: make it with `dvc repro export` "
                                "(or `make pipeline`), or give its path with --model")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which, not a pickle traceback
        raise InputError(f"{path} cannot be read as an IVFG model ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise InputError(f"{path} is not an IVFG model file (format {found!r}, expected {MODEL_FORMAT!r})")
    missing = [k for k in MODEL_PARTS if k not in state]
    if missing:
        raise InputError(f"{path} is an incomplete IVFG model file (no {', '.join(missing)}): export it again "
                         "(dvc repro export)")
    projector = projector_from_state(state["projector"], state["projector_state"], device)
    generator = generator_from_state({"architecture": state["generator_architecture"],
                                      "state_dict": state["generator_state"]}, device)
    info = {k: v for k, v in state.items() if not k.endswith(("_state", "_architecture")) and k != "projector"}
    return assemble(projector, generator, info, device, weights, fast)
