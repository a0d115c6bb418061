"""Run a small ONNX CNN as a native, differentiable PyTorch module.

Weight-quantized models (DequantizeLinear on initializers, as in OpenCV Zoo's int8bq files) are
dequantized once at load time, so the module holds float weights and gradients reach its input.
Only the operators that face-recognition CNNs of this kind use are supported; anything else fails
at load time with the operator's name.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _dequantize(x: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int = 1,
                block_size: int = 0) -> np.ndarray:
    x = x.astype(np.float32)
    zero = np.zeros_like(scale) if zero is None else zero.astype(np.float32)
    if block_size:  # blocked quantization: one scale per `block_size` elements along `axis`
        axis = axis % x.ndim
        scale = np.repeat(scale, block_size, axis=axis).take(range(x.shape[axis]), axis=axis)
        zero = np.repeat(zero, block_size, axis=axis).take(range(x.shape[axis]), axis=axis)
    elif scale.ndim == 1 and scale.size > 1:  # per-axis
        shape = [1] * x.ndim
        shape[axis % x.ndim] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (x - zero) * scale


def _fold_constants(graph, values: dict[str, np.ndarray]) -> list:
    """Evaluate every node whose inputs are all constant; return the nodes left to run."""
    runtime = []
    for node in graph.node:
        attrs = _attrs(node)
        ins = list(node.input)
        if node.op_type == "Constant":
            from onnx import numpy_helper

            values[node.output[0]] = numpy_helper.to_array(attrs["value"])
        elif node.op_type == "DequantizeLinear" and ins[0] in values:
            zero = values[ins[2]] if len(ins) > 2 and ins[2] else None
            values[node.output[0]] = _dequantize(values[ins[0]], values[ins[1]], zero,
                                                 attrs.get("axis", 1), attrs.get("block_size", 0))
        elif node.op_type == "Reshape" and ins[0] in values and ins[1] in values:
            values[node.output[0]] = values[ins[0]].reshape(values[ins[1]].astype(np.int64))
        else:
            runtime.append(node)
    return runtime


def _fold_batchnorm(nodes: list, values: dict[str, np.ndarray]) -> list:
    """Fold every BatchNormalization that alone reads a constant-weight Conv into that Conv's weights
    and bias: one op instead of two, forward and backward, equal up to float rounding."""
    from onnx import NodeProto

    readers: dict[str, int] = {}
    for node in nodes:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    producer = {node.output[0]: node for node in nodes}
    folded, dropped = {}, set()
    for node in nodes:
        if node.op_type != "BatchNormalization":
            continue
        conv = producer.get(node.input[0])
        if conv is None or conv.op_type != "Conv" or readers[conv.output[0]] != 1 or conv.input[1] not in values:
            continue
        gamma, beta, mean, var = (values[name].astype(np.float64) for name in node.input[1:5])
        scale = gamma / np.sqrt(var + _attrs(node).get("epsilon", 1e-5))
        weight = values[conv.input[1]].astype(np.float64)
        bias = values[conv.input[2]].astype(np.float64) if len(conv.input) > 2 and conv.input[2] else 0.0
        fused = NodeProto()
        fused.CopyFrom(conv)
        fused.output[0] = node.output[0]
        fused.input[1] = f"{conv.output[0]}/folded_weight"
        values[fused.input[1]] = (weight * scale[:, None, None, None]).astype(np.float32)
        bias_name = f"{conv.output[0]}/folded_bias"
        values[bias_name] = ((bias - mean) * scale + beta).astype(np.float32)
        if len(fused.input) > 2:
            fused.input[2] = bias_name
        else:
            fused.input.append(bias_name)
        folded[id(conv)] = fused
        dropped.add(id(node))
    return [folded.get(id(node), node) for node in nodes if id(node) not in dropped]


class OnnxModule(nn.Module):
    """An ONNX graph of Conv/BatchNormalization/PRelu/Add/Gemm/... executed with torch ops."""

    SUPPORTED = {"Conv", "BatchNormalization", "PRelu", "Relu", "Add", "Sub", "Mul", "Gemm", "MatMul",
                 "Flatten", "Dropout", "Identity", "Reshape", "GlobalAveragePool", "MaxPool", "AveragePool"}

    def __init__(self, path: str | Path, fold_batchnorm: bool = False):
        """`fold_batchnorm`: merge batch norms into the convolutions before them (faster, equal up to
        float rounding); off, the module computes exactly what the ONNX graph says, op by op."""
        super().__init__()
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(path))
        graph = model.graph
        values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        self.nodes = _fold_constants(graph, values)
        if fold_batchnorm:
            self.nodes = _fold_batchnorm(self.nodes, values)
        unsupported = sorted({n.op_type for n in self.nodes} - self.SUPPORTED)
        if unsupported:
            raise NotImplementedError(f"{path}: unsupported ONNX operators {unsupported}")
        self.input_name = next(i.name for i in graph.input if i.name not in values)
        self.output_name = graph.output[0].name
        self.attrs = [_attrs(n) for n in self.nodes]
        used = {i for n in self.nodes for i in n.input if i in values}
        self.consts = nn.ParameterDict()
        self._names = {}
        for k, name in enumerate(sorted(used)):
            array = values[name]
            key = f"c{k}"
            self._names[name] = key
            if array.dtype.kind == "f":
                self.consts[key] = nn.Parameter(torch.from_numpy(np.ascontiguousarray(array, np.float32)),
                                                requires_grad=False)
            else:
                self.register_buffer(key, torch.from_numpy(np.ascontiguousarray(array)), persistent=True)

    def _const(self, name: str) -> torch.Tensor:
        key = self._names[name]
        return self.consts[key] if key in self.consts else getattr(self, key)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {self.input_name: x}

        def get(name: str) -> torch.Tensor:
            return env[name] if name in env else self._const(name)

        for node, a in zip(self.nodes, self.attrs):
            ins = [get(i) if i else None for i in node.input]
            env[node.output[0]] = self._run(node.op_type, ins, a)
        return env[self.output_name]

    @staticmethod
    def _run(op: str, ins: list, a: dict) -> torch.Tensor:
        x = ins[0]
        if op == "Conv":
            pads = a.get("pads", [0, 0, 0, 0])
            if pads[0] != pads[2] or pads[1] != pads[3]:
                x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
                pads = [0, 0]
            return F.conv2d(x, ins[1], ins[2] if len(ins) > 2 else None, a.get("strides", [1, 1]),
                            pads[:2], a.get("dilations", [1, 1]), a.get("group", 1))
        if op == "BatchNormalization":
            return F.batch_norm(x, ins[3], ins[4], ins[1], ins[2], False, 0.0, a.get("epsilon", 1e-5))
        if op == "PRelu":
            if ins[1].dim() == 3 and x.dim() == 4 and ins[1].shape[1:] == (1, 1):
                return F.prelu(x, ins[1].flatten())  # one fused kernel; the same arithmetic as below
            return torch.where(x >= 0, x, x * ins[1])
        if op == "Relu":
            return F.relu(x)
        if op == "Add":
            return x + ins[1]
        if op == "Sub":
            return x - ins[1]
        if op == "Mul":
            return x * ins[1]
        if op == "Gemm":
            a_mat = x.transpose(-1, -2) if a.get("transA", 0) else x
            b_mat = ins[1].transpose(-1, -2) if a.get("transB", 0) else ins[1]
            out = a.get("alpha", 1.0) * (a_mat @ b_mat)
            return out + a.get("beta", 1.0) * ins[2] if len(ins) > 2 and ins[2] is not None else out
        if op == "MatMul":
            return x @ ins[1]
        if op == "Flatten":
            return torch.flatten(x, a.get("axis", 1))
        if op in ("Dropout", "Identity"):
            return x
        if op == "Reshape":
            return x.reshape([x.shape[i] if int(s) == 0 else int(s) for i, s in enumerate(ins[1].tolist())])
        if op == "GlobalAveragePool":
            return x.mean(dim=(2, 3), keepdim=True)
        if op == "MaxPool":
            return F.max_pool2d(x, a["kernel_shape"], a.get("strides"), a.get("pads", [0, 0, 0, 0])[:2])
        if op == "AveragePool":
            return F.avg_pool2d(x, a["kernel_shape"], a.get("strides"), a.get("pads", [0, 0, 0, 0])[:2])
        raise NotImplementedError(op)
