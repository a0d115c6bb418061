"""dlib's face descriptor network in PyTorch, its weights read straight from dlib's own `.dat` file.

dlib's `face_recognition_model_v1` spends about 75 ms per face per core here (the `dlib_bin` wheel is
built without BLAS), which cost the CPU preset's pipeline about 15 minutes. This is the same network
(`tools/python/src/face_recognition.cpp` in dlib: a 29-conv ResNet on a 150x150 RGB chip, 128-d, no
normalisation), equal to dlib's descriptors up to float rounding, and it runs on a GPU too. It takes the
chips dlib cuts (`DlibResNet.chips`): landmarks and chips stay dlib's, they are cheap.

`DlibResNet` (the `dlib-resnet` recognizer) runs it. `tests/models/test_dlib_net.py` checks it against
dlib itself on real LFW faces, `benchmarks/recognizer_speed.py` times both.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHIP_SIZE = 150
# Residual stages from input to output: (blocks, whether the first one halves the resolution).
STAGES = ((3, False), (4, True), (3, True), (3, True), (1, True))


class _Reader:
    """dlib's serialisation (`dlib/serialize.h`): integers as a control byte (0x80: negative, low nibble:
    byte count) then little-endian bytes; floats as integer mantissa and exponent; bools as '0'/'1'."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.path}: not dlib's face recognition network ({what} at byte {self.pos})")

    def int_(self) -> int:
        control = self.data[self.pos]
        count = control & 0x0F
        value = int.from_bytes(self.data[self.pos + 1:self.pos + 1 + count], "little")
        self.pos += 1 + count
        return -value if control & 0x80 else value

    def str_(self) -> str:
        n = self.int_()
        text = self.data[self.pos:self.pos + n].decode("ascii", errors="replace")
        self.pos += n
        return text

    def float_(self) -> float:
        mantissa, exponent = self.int_(), self.int_()
        if exponent >= 32000:  # dlib's codes for inf, -inf, nan
            return {32000: math.inf, 32001: -math.inf}.get(exponent, math.nan)
        return math.ldexp(mantissa, exponent)

    def bool_(self) -> bool:
        byte = self.data[self.pos]
        if byte not in (0x30, 0x31):
            raise self.fail("a bool")
        self.pos += 1
        return byte == 0x31

    def tensor(self) -> np.ndarray:
        if self.int_() != 2:
            raise self.fail("a tensor of an unknown version")
        shape = [self.int_() for _ in range(4)]
        count = int(np.prod(shape))
        if self.pos + 4 * count > len(self.data):
            raise self.fail("a complete tensor")
        values = np.frombuffer(self.data, "<f4", count, self.pos).copy()
        self.pos += 4 * count
        return values

    def alias(self) -> tuple[int, ...]:
        if self.int_() != 1:
            raise self.fail("an alias tensor of an unknown version")
        return tuple(self.int_() for _ in range(4))


def _layer(r: _Reader) -> tuple[str, dict]:
    """One layer's details, in dlib's order; only the layer types this network uses."""
    kind = r.str_()
    if kind.startswith("con_"):
        params = r.tensor()
        r.int_()  # num_filters
        _, _, stride, _, padding, _ = (r.int_() for _ in range(6))  # nr, nc, sy, sx, py, px
        filters, _ = r.alias(), r.alias()
        for _ in range(4):
            r.float_()  # learning-rate and weight-decay multipliers
        if kind in ("con_5", "con_6"):
            r.bool_()  # use_bias
        if kind == "con_6":
            r.bool_()  # use_relu
        n = int(np.prod(filters))
        return "conv", {"weight": params[:n].reshape(filters), "bias": params[n:n + filters[0]],
                        "stride": stride, "padding": padding}
    if kind in ("affine_", "affine_2"):
        params = r.tensor()
        r.alias(), r.alias()
        if r.int_() != 0:
            raise r.fail("an affine layer not in convolution mode")
        if kind == "affine_2":
            r.bool_()  # disabled
        half = len(params) // 2
        return "affine", {"gamma": params[:half], "beta": params[half:]}
    if kind in ("relu_", "relu_2"):
        if kind == "relu_2":
            r.bool_()
        return "relu", {}
    if kind in ("max_pool_2", "avg_pool_2"):
        for _ in range(6):
            r.int_()
        return kind[:-2], {}
    if kind == "add_prev_":
        return "add", {}
    if kind in ("fc_2", "fc_3"):
        outputs, inputs = r.int_(), r.int_()
        params = r.tensor()
        r.alias(), r.alias()
        if r.int_() != 1:
            raise r.fail("a fully connected layer with a bias")
        for _ in range(4):
            r.float_()
        if kind == "fc_3":
            r.bool_()
        return "fc", {"weight": params[:inputs * outputs].reshape(inputs, outputs)}
    raise r.fail(f"a layer of type '{kind}'")


def read_dat(path: str | Path) -> tuple[list[float], list[tuple[str, dict]]]:
    """The input layer's channel means and the layers from input to output (dlib writes a layer's
    sublayers before its own details, so the file runs from the input upwards)."""
    path = Path(path)
    r = _Reader(path.read_bytes(), path)
    try:
        return _read_network(r)
    except (IndexError, UnicodeDecodeError) as err:
        raise r.fail("a complete file") from err


def _read_network(r: _Reader) -> tuple[list[float], list[tuple[str, dict]]]:
    if r.int_() != 1 or not r.str_().startswith("loss_metric_"):
        raise r.fail("a metric-loss network header")
    # The nested layer headers' versions, outermost first; the last is the input layer's own.
    marker = b"\x01\x15input_rgb_image_sized"
    versions = []
    while r.data[r.pos:r.pos + len(marker)] != marker:
        if r.pos >= len(r.data):
            raise r.fail("an input_rgb_image_sized layer")
        versions.append(r.int_())
    r.str_()
    means = [r.float_() for _ in range(3)]
    if (r.int_(), r.int_()) != (CHIP_SIZE, CHIP_SIZE):
        raise r.fail("a 150x150 input")
    layers = []
    while r.pos < len(r.data):
        layers.append(_layer(r))
        for _ in range(3):
            r.bool_()  # training-state flags
        for _ in range(3):
            r.tensor()  # gradients and cached outputs, empty in a saved network
        if len(layers) == 1 and versions and versions[-1] >= 3:
            r.int_()  # the input layer's sample expansion factor, written after the first layer
    return means, layers


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev_: when the shortcut and the block differ in size, the sum takes the larger of each
    dimension and a missing value counts as zero (channels, and the odd rows and columns pooling drops)."""
    if a.shape == b.shape:
        return a + b
    out = a.new_zeros(a.shape[0], *(max(x, y) for x, y in zip(a.shape[1:], b.shape[1:])))
    out[:, :a.shape[1], :a.shape[2], :a.shape[3]] += a
    out[:, :b.shape[1], :b.shape[2], :b.shape[3]] += b
    return out


class DlibFaceNet(nn.Module):
    """(N, 3, 150, 150) RGB chips in [0, 255] -> (N, 128) descriptors, as dlib computes them."""

    def __init__(self, means: list[float], layers: list[tuple[str, dict]]):
        super().__init__()
        convs = [d for kind, d in layers if kind == "conv"]
        affines = [d for kind, d in layers if kind == "affine"]
        fcs = [d for kind, d in layers if kind == "fc"]
        expected = 1 + 2 * sum(blocks for blocks, _ in STAGES)  # the stem, then two per residual block
        if len(convs) != expected or len(affines) != expected or len(fcs) != 1:
            raise ValueError(f"expected {expected} convolutions with affine layers and one fc layer, found "
                             f"{len(convs)}, {len(affines)} and {len(fcs)}")
        self.register_buffer("means", torch.tensor(means).view(1, 3, 1, 1))
        self.weights = nn.ParameterList(nn.Parameter(torch.from_numpy(d["weight"]), requires_grad=False) for d in convs)
        self.biases = nn.ParameterList(nn.Parameter(torch.from_numpy(d["bias"]), requires_grad=False) for d in convs)
        self.gammas = nn.ParameterList(nn.Parameter(torch.from_numpy(d["gamma"]).view(1, -1, 1, 1), requires_grad=False)
                                       for d in affines)
        self.betas = nn.ParameterList(nn.Parameter(torch.from_numpy(d["beta"]).view(1, -1, 1, 1), requires_grad=False)
                                      for d in affines)
        self.geometry = [(d["stride"], d["padding"]) for d in convs]
        self.fc = nn.Parameter(torch.from_numpy(fcs[0]["weight"]), requires_grad=False)

    @classmethod
    def from_dat(cls, path: str | Path) -> "DlibFaceNet":
        return cls(*read_dat(path)).eval()

    def _conv_affine(self, x: torch.Tensor, i: int) -> torch.Tensor:
        stride, padding = self.geometry[i]
        return F.conv2d(x, self.weights[i], self.biases[i], stride=stride, padding=padding) * self.gammas[i] \
            + self.betas[i]

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = (chips - self.means) / 256.0
        x = F.max_pool2d(F.relu(self._conv_affine(x, 0)), 3, 2)
        i = 1
        for blocks, halves in STAGES:
            for b in range(blocks):
                y = self._conv_affine(F.relu(self._conv_affine(x, i)), i + 1)
                i += 2
                shortcut = F.avg_pool2d(x, 2, 2) if halves and b == 0 else x
                x = F.relu(_add_padded(shortcut, y))
        return x.mean(dim=(2, 3)) @ self.fc
