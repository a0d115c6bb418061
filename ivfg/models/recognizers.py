"""Face recognizers behind one interface.

Input: a batch of faces in the canonical frame (docs/design.md), float RGB in [0, 1], shape (B, 3, H, W),
on any device. Each backbone does its own resizing and normalisation. `score(a, b)` is higher for
the same person.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ivfg.models.dlib_net import CHIP_SIZE, DlibFaceNet


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class Recognizer(nn.Module):
    """Frozen face embedding network."""

    name: str = "recognizer"
    differentiable: bool = True
    embedding_dim: int = 0
    input_size: int = 128  # side of the face it reads, resized from the canonical frame

    @classmethod
    def build(cls, weight_paths: list[str], name: str, fast: bool = False) -> "Recognizer":
        """The recognizer from its weight files, in the order its catalog entry lists them."""
        return cls(*weight_paths)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images)

    def score(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of embeddings (higher: same person)."""
        return F.cosine_similarity(a, b, dim=-1)

    def freeze(self) -> "Recognizer":
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self


class SFace(Recognizer):
    """OpenCV Zoo SFace (MobileFaceNet, 128-d), ported from its ONNX file; RGB 0..255 at 112x112."""

    name = "sface"
    embedding_dim = 128
    input_size = 112

    @classmethod
    def build(cls, weight_paths: list[str], name: str, fast: bool = False) -> "SFace":
        return cls(weight_paths[0], fast=fast)

    def __init__(self, onnx_path: str | Path, fast: bool = False):
        """`fast`: batch norms folded into the convolutions and NHWC layout, for training, where speed
        matters more than matching the ONNX file to the last bit (it matches to float rounding)."""
        super().__init__()
        from ivfg.models.onnx_port import OnnxModule

        self.net = OnnxModule(onnx_path, fold_batchnorm=fast)
        self.fast = fast

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        x = resize(images, self.input_size) * 255.0
        if self.fast:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)


class MirrorAveraged(Recognizer):
    """Another recognizer read on each face and on its mirror image, the two embeddings averaged: the
    canonical frame is symmetric, so the mirror image is the same person, and what one photo's pose and
    light add on one side weighs half. Twice the recognizer's work; scores as the recognizer does."""

    def __init__(self, inner: Recognizer):
        super().__init__()
        self.inner = inner
        self.name = f"{inner.name}+mirror"  # caches of embeddings keep the two apart
        self.fast = getattr(inner, "fast", False)
        self.differentiable, self.embedding_dim, self.input_size = \
            inner.differentiable, inner.embedding_dim, inner.input_size

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        views = self.inner.embed(torch.cat([images, images.flip(-1)]))
        return (views[:len(images)] + views[len(images):]) / 2

    def score(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.inner.score(a, b)


class FaceNet(Recognizer):
    """facenet-pytorch InceptionResnetV1 (512-d); input 160x160, standardised (x - 127.5) / 128."""

    embedding_dim = 512
    input_size = 160

    @classmethod
    def build(cls, weight_paths: list[str], name: str, fast: bool = False) -> "FaceNet":
        return cls(weight_paths[0], name)

    def __init__(self, weights_path: str | Path | None, name: str):
        """`weights_path=None` leaves the weights random (for timing the architecture only)."""
        super().__init__()
        from facenet_pytorch import InceptionResnetV1

        self.name = name
        self.net = InceptionResnetV1(pretrained=None, classify=False)
        if weights_path is None:
            return
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        # The released files also hold the training classifier (logits.*), which embeddings don't use.
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        self.net.load_state_dict(state)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((resize(images, self.input_size) * 255.0 - 127.5) / 128.0)


def _uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [0, 1] -> (N, H, W, 3) uint8, the images dlib reads."""
    return (images.detach().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


class DlibResNet(Recognizer):
    """dlib's ResNet face descriptor (128-d), scored by L2 distance; not differentiable.

    dlib locates its own 5 landmarks on the canonical crop and cuts its own 150x150 face chip; the
    network then runs in PyTorch (`DlibFaceNet`, weights read from dlib's file), on any device: dlib's
    own descriptors up to float rounding, and 15-20x faster per core here than dlib's wheel, which has no BLAS.
    `dlib_descriptors` computes them with dlib itself, the reference the port is checked against.
    """

    name = "dlib-resnet"
    differentiable = False
    embedding_dim = 128
    input_size = CHIP_SIZE  # the face chip it cuts, with its own landmarks, from the frame
    chip_size, chip_padding = CHIP_SIZE, 0.25  # the chip compute_face_descriptor cuts by default

    def __init__(self, model_path: str | Path, landmarks_path: str | Path):
        super().__init__()
        import dlib

        self._dlib = dlib
        self.model_path = str(model_path)
        self.landmarks = dlib.shape_predictor(str(landmarks_path))
        self.net = DlibFaceNet.from_dat(model_path)

    def chips(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, 150, 150) in [0, 255] on the CPU: the face chips dlib's network sees."""
        chips = [self._dlib.get_face_chip(img, self._shape(img), self.chip_size, self.chip_padding)
                 for img in map(np.ascontiguousarray, _uint8_hwc(images))]
        if not chips:
            return torch.zeros(0, 3, self.chip_size, self.chip_size)
        return torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()

    def dlib_descriptors(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 128) on the CPU, computed by dlib itself (slow: for checking the port and timing it)."""
        out = [np.asarray(self._dlib_descriptor.compute_face_descriptor(img, self._shape(img)), dtype=np.float32)
               for img in map(np.ascontiguousarray, _uint8_hwc(images))]
        return torch.from_numpy(np.stack(out) if out else np.zeros((0, self.embedding_dim), np.float32))

    @cached_property
    def _dlib_descriptor(self):
        """dlib's own network, loaded on first use only: the stages never need it."""
        return self._dlib.face_recognition_model_v1(self.model_path)

    def _shape(self, img: np.ndarray):
        """dlib's 5 landmarks on a canonical face."""
        return self.landmarks(img, self._face_box(img.shape[0]))

    def _face_box(self, size: int):
        # The median box dlib's own HOG detector draws on canonical 128x128 LFW crops (30 images),
        # scaled to the frame: the shape predictor was trained on boxes like it.
        s = size / 128.0
        return self._dlib.rectangle(*(int(round(v * s)) for v in (16, 36, 106, 126)))

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.chips(images).to(self.net.means.device)).to(images.device)

    def score(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return -torch.linalg.vector_norm(a - b, dim=-1)
