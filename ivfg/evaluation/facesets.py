"""The face sets the evaluation reads, each made once and measured once.

For the test faces x of one dataset and repeat r (an independent draw of keys):
- original: x itself;
- set_a: T(x, k_id), each identity its own key; set_b: T(x, k), one key for everyone;
- other: T(x, k_x), for each face its own random key other than its Set-A key (diversity);
- recovered: T(T(x, k_id), k_id), the virtual face put through T again under its own key;
- pixelization, blur: the baselines (no key, so one set for all repeats);
- original_lowres: x shrunk to the generator's resolution (what that resolution allows, for reference).
Images are kept as uint8, as a user would store them, at the size they come out (the generator's for
virtual faces); readers resize to the canonical frame. Evaluation embeddings, Inception features and
MTCNN detections are memoised per set, so every metric that needs one reuses it, and the seconds each
kind of work takes are counted in `seconds`. Those of the sets no key touches can also be kept on disk
(`cache_dir`, keyed by the images' content and what measured them): an experiment that changes only
the model, such as `-S train.key_bits=128`, then measures only its virtual faces.
"""
from __future__ import annotations

import contextlib
import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ivfg.data.faceframe import to_frame, to_uint8
from ivfg.evaluation.fid import inception_features
from ivfg.fileio import write_torch
from ivfg.keys import distinct_keys, other_keys, random_keys
from ivfg.models.recognizers import Recognizer
from ivfg.virtual import GENERATOR_SAMPLES, VirtualFaces, random_latents

KEYED = ("set_a", "set_b", "other", "recovered")
UNKEYED = ("original", "original_lowres", "pixelization", "blur")


@dataclass(frozen=True)
class KeyDraw:
    per_face_a: torch.Tensor      # (N, bits): the key of each face's identity (Set-A)
    set_b: torch.Tensor           # (bits,): the one key of Set-B
    per_face_other: torch.Tensor  # (N, bits): for each face a random key other than its Set-A key


def draw_keys(labels: np.ndarray, key_bits: int, seed: int, repeat: int) -> KeyDraw:
    """Set-A: a distinct key per identity while the key space allows (with 8 bits, 256 keys for more
    people: they are reused in turn); Set-B: one more key; then, per face, a key other than its
    Set-A key (drawn last, so Set-A and Set-B stay what they were). Independent for each repeat."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + repeat)
    identities = int(labels.max()) + 1
    keys = distinct_keys(min(identities, 2 ** min(key_bits, 62)), key_bits, g)
    per_face_a = keys[torch.arange(identities) % len(keys)][torch.from_numpy(labels)]
    set_b = random_keys(1, key_bits, g)[0]
    return KeyDraw(per_face_a, set_b, other_keys(per_face_a, g))


def as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255


class FaceSets:
    def __init__(self, faces: torch.Tensor, identities: list[str], virtual: VirtualFaces, recognizer: Recognizer,
                 threshold: float, seed: int, device: torch.device, baselines: dict[str, Callable] | None = None,
                 inception=None, detector=None, fid_dims: tuple[int, ...] = (192, 2048), batch: int = 64,
                 autocast: Callable = contextlib.nullcontext, precision: str = "fp32",
                 cache_dir: Path | None = None, virtual_threshold: float | None = None,
                 one_key_threshold: float | None = None):
        """faces: uint8 (N, 3, S, S) in the canonical frame; identities: one name per face; threshold: τ,
        set on real faces; virtual_threshold, one_key_threshold: τ_v and τ_1, set on virtual faces (each
        person their own key, one key for everyone; None: the model has none)."""
        names = sorted(set(identities))
        self.identities = names
        self.labels = np.array([names.index(i) for i in identities])
        self.faces, self.virtual, self.recognizer = faces, virtual, recognizer
        self.threshold, self.seed, self.device = threshold, seed, device
        self.virtual_threshold, self.one_key_threshold = virtual_threshold, one_key_threshold
        self.baselines = baselines or {}
        self.inception, self.detector, self.fid_dims, self.batch = inception, detector, tuple(fid_dims), batch
        self.autocast, self.precision = autocast, precision  # for Inception only
        self.cache_dir = cache_dir
        self.seconds: dict[str, float] = defaultdict(float)
        self._memo: dict[tuple, object] = {}

    def __len__(self) -> int:
        return len(self.faces)

    @property
    def key_bits(self) -> int:
        return self.virtual.key_bits

    @contextlib.contextmanager
    def timed(self, part: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - start

    def _cached(self, key: tuple, make: Callable[[], object]):
        if key not in self._memo:
            self._memo[key] = self._stored(key, make)
        return self._memo[key]

    def _stored(self, key: tuple, make: Callable[[], object]):
        """A measurement of a set without a key, from the disk cache when the same images were measured
        the same way before."""
        kind, name = key[0], key[1] if len(key) > 1 else None
        if self.cache_dir is None or name not in UNKEYED or kind not in ("embeddings", "features", "detected"):
            return make()
        how = {"embeddings": self.recognizer.name, "features": f"inception {self.fid_dims} {self.precision}",
               "detected": "mtcnn default"}[kind]
        digest = hashlib.sha256(f"{kind} {how}".encode())
        digest.update(self.images(name).numpy().tobytes())
        path = Path(self.cache_dir) / f"{kind}-{name}-{digest.hexdigest()[:16]}.pt"
        if path.is_file():
            value = torch.load(path, weights_only=True)
        else:
            value = make()
            write_torch(path, torch.from_numpy(value) if isinstance(value, np.ndarray) else value)
        return value.numpy() if kind == "detected" and isinstance(value, torch.Tensor) else value

    @staticmethod
    def _slot(name: str, repeat: int) -> tuple[str, int]:
        """Sets without a key are the same in every repeat."""
        return (name, repeat if name in KEYED else 0)

    # -- what the metrics read -------------------------------------------------------------------

    def keys(self, repeat: int) -> KeyDraw:
        return self._cached(("keys", repeat), lambda: draw_keys(self.labels, self.key_bits, self.seed, repeat))

    def latents(self, repeat: int) -> torch.Tensor:
        """P's latents w of the Set-A faces (the w every Set-A face is rendered from)."""
        def make():
            device = next(self.virtual.projector.parameters()).device
            keys, codes = self.keys(repeat).per_face_a, self.encodings()
            with torch.no_grad():
                return torch.cat([self.virtual.latents(codes[i:i + self.batch].to(device),
                                                       keys[i:i + self.batch].to(device)).float().cpu()
                                  for i in range(0, len(codes), self.batch)])
        return self._cached(("latents", repeat), make)

    def generator_latents(self) -> torch.Tensor:
        """w of `GENERATOR_SAMPLES` seeded random z through G's mapping network (no truncation)."""
        return self._cached(("generator_latents",), lambda: random_latents(self.virtual.generator, GENERATOR_SAMPLES, self.seed))

    def encodings(self) -> torch.Tensor:
        """E(x) of the originals: computed once, reused under every key."""
        return self._cached(("encodings",), lambda: self._encode(self.faces))

    def images(self, name: str, repeat: int = 0) -> torch.Tensor:
        return self._cached(("images", *self._slot(name, repeat)), lambda: self._make(name, repeat))

    def embeddings(self, name: str, repeat: int = 0) -> torch.Tensor:
        """The evaluation recognizer's embeddings of a set, in the canonical frame."""
        def make():
            images = self.images(name, repeat)
            with self.timed("embed"):
                chunk = 256  # large enough to keep a recognizer's worker processes busy
                return torch.cat([self.recognizer.embed(to_frame(as_float(images[i:i + chunk])).to(self.device))
                                  .float().cpu() for i in tqdm(range(0, len(images), chunk), leave=False,
                                                               desc=f"embed {name} r{repeat}")])
        return self._cached(("embeddings", *self._slot(name, repeat)), make)

    def features(self, name: str, repeat: int = 0) -> dict[int, torch.Tensor]:
        """Inception features of a set shown in the canonical frame (what a viewer of the output sees)."""
        def make():
            images = self.images(name, repeat)
            with self.timed("inception"), self.autocast():
                return inception_features(self.inception, _Framed(images), self.fid_dims, self.device, self.batch,
                                          progress=f"inception {name} r{repeat}")
        return self._cached(("features", *self._slot(name, repeat)), make)

    def detected(self, name: str, repeat: int = 0) -> np.ndarray:
        """Whether MTCNN finds a face in each image of a set, shown in the canonical frame."""
        def make():
            images = self.images(name, repeat)
            with self.timed("detect"):
                return self.detector.finds_faces(as_float(images), self.batch, progress=f"detect {name} r{repeat}")
        return self._cached(("detected", *self._slot(name, repeat)), make)

    def score(self, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
        return self.recognizer.score(a, b).numpy()

    # -- how the sets are made ---------------------------------------------------------------------

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        with self.timed("encode"):
            out = [self.virtual.embed(to_frame(as_float(images[i:i + self.batch])).to(self.device)).float().cpu()
                   for i in range(0, len(images), self.batch)]
            return torch.cat(out)

    def _generate(self, encodings: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        with self.timed("generate"):
            return to_uint8(self.virtual.generate(encodings, keys, self.batch))

    def _make(self, name: str, repeat: int) -> torch.Tensor:
        if name == "original":
            return self.faces
        if name == "original_lowres":
            size = self.virtual.generator.resolution
            return to_uint8(F.interpolate(as_float(self.faces), size=(size, size), mode="bilinear",
                                          antialias=True, align_corners=False))
        if name in self.baselines:
            with self.timed("baselines"):
                return torch.cat([to_uint8(self.baselines[name](as_float(self.faces[i:i + self.batch]), None))
                                  for i in range(0, len(self.faces), self.batch)])
        keys = self.keys(repeat)
        if name == "set_a":
            return self._generate(self.encodings(), keys.per_face_a)
        if name == "set_b":
            return self._generate(self.encodings(), keys.set_b)
        if name == "other":
            return self._generate(self.encodings(), keys.per_face_other)
        if name == "recovered":
            return self._generate(self._encode(self.images("set_a", repeat)), keys.per_face_a)
        raise KeyError(f"unknown face set '{name}'; known: {', '.join(KEYED + UNKEYED)}")


class _Framed:
    """uint8 images shown in the canonical frame, batch by batch (a full set at 128 px would be large)."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: slice) -> torch.Tensor:
        return to_frame(as_float(self.images[index]))
