"""A small ONNX graph interpreter on top of PyTorch, enough to run PaddleOCR's
PP-OCRv4 text recognizer (ch_PP-OCRv4_rec_infer.onnx: opset 9, exported by
paddle2onnx, weights in Constant nodes and initializers) on the CPU, and to
read any intermediate tensor on the way.

    import onnx, onnx_torch
    graph = onnx_torch.Graph(onnx.load("ch_PP-OCRv4_rec_infer.onnx"))
    out, seen = graph.run(x, watch={"softmax_9.tmp_0"})   # x: [B, 3, 48, W] float32

It is not a general ONNX runtime: it implements the ~25 operators this model
uses, with their opset-9 semantics (Slice and Clip take attributes, Softmax
flattens from `axis`), and refuses anything else by name.  Parsing is done by
the `onnx` package (Debian: python3-onnx); evaluation by torch (>= 1.13) in
float32, one node after the other in the graph's (topological) order.

find_attention() locates the scaled dot-product attention blocks of a graph
(softmax(Mul(q, scale) @ Transpose(k)) @ v), so that a caller can record the
q, k, v that enter softmax without hard-coding tensor names.
"""

import math

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

__all__ = ["Graph", "find_attention", "UnsupportedModel"]


class UnsupportedModel(ValueError):
    """The graph uses an operator (or an operator form) outside the subset
    this interpreter covers, the one of the PP-OCRv4 recognizer."""

# ONNX TensorProto data types that appear in Cast nodes.
_CAST = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.BOOL: torch.bool,
}


def _attributes(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _tensor(proto):
    """A TensorProto as a torch tensor (a copy: numpy_helper may return a
    read-only view of the protobuf's bytes)."""
    return torch.from_numpy(np.array(numpy_helper.to_array(proto), copy=True))


def _pads_2d(pads):
    """ONNX pads [top, left, bottom, right] -> (symmetric (h, w) or None,
    F.pad tuple for the asymmetric case)."""
    top, left, bottom, right = pads
    if top == bottom and left == right:
        return (top, left), None
    return (0, 0), (left, right, top, bottom)


# ---- operators ---------------------------------------------------------------
# Each takes (inputs, attributes) and returns one tensor.  inputs are torch
# tensors (None for an omitted optional input).

def _conv(i, a):
    x, w = i[0], i[1]
    b = i[2] if len(i) > 2 else None
    sym, asym = _pads_2d(a.get("pads", [0, 0, 0, 0]))
    if asym is not None:
        x = F.pad(x, asym)
    return F.conv2d(x, w, b, stride=a.get("strides", [1, 1]), padding=sym,
                    dilation=a.get("dilations", [1, 1]), groups=a.get("group", 1))


def _batch_norm(i, a):
    x, gamma, beta, mean, var = i
    return F.batch_norm(x, mean, var, gamma, beta, training=False,
                        eps=a.get("epsilon", 1e-5))


def _average_pool(i, a):
    sym, asym = _pads_2d(a.get("pads", [0, 0, 0, 0]))
    if asym is not None:
        raise UnsupportedModel("AveragePool with asymmetric pads is outside the subset covered")
    return F.avg_pool2d(i[0], a["kernel_shape"], a.get("strides", a["kernel_shape"]), sym,
                        count_include_pad=bool(a.get("count_include_pad", 0)))


def _clip(i, a):
    # opset < 11: bounds are attributes
    return torch.clamp(i[0], a.get("min", -math.inf), a.get("max", math.inf))


def _hard_sigmoid(i, a):
    return torch.clamp(a.get("alpha", 0.2) * i[0] + a.get("beta", 0.5), 0.0, 1.0)


def _slice(i, a):
    # opset < 10: starts, ends, axes are attributes; ends are clamped
    x = i[0]
    starts, ends = a["starts"], a["ends"]
    axes = a.get("axes", list(range(len(starts))))
    index = [slice(None)] * x.dim()
    for axis, start, end in zip(axes, starts, ends):
        index[axis] = slice(start, end)  # Python slicing clamps the same way
    return x[tuple(index)]


def _reshape(i, a):
    x = i[0]
    shape = [int(s) for s in i[1].tolist()]
    # 0 copies the input's dimension; -1 is inferred (torch does that)
    shape = [x.shape[k] if s == 0 else s for k, s in enumerate(shape)]
    return x.reshape(shape)


def _concat(i, a):
    return torch.cat([t.reshape(1) if t.dim() == 0 else t for t in i], dim=a["axis"])


def _squeeze(i, a):
    x = i[0]
    if "axes" not in a:
        return x.squeeze()
    for axis in sorted((ax % x.dim() for ax in a["axes"]), reverse=True):
        if x.shape[axis] != 1:
            raise ValueError("Squeeze of axis %d of shape %s" % (axis, tuple(x.shape)))
        x = x.squeeze(axis)
    return x


def _softmax(i, a):
    # opset < 13: the input is flattened to 2-D at `axis` and the softmax taken
    # over the second dimension (the same as dim=-1 when axis is the last one)
    x = i[0]
    axis = a.get("axis", 1) % x.dim()
    flat = x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)
    return torch.softmax(flat, dim=1).reshape(x.shape)


_OPS = {
    "Add": lambda i, a: i[0] + i[1],
    "Sub": lambda i, a: i[0] - i[1],
    "Mul": lambda i, a: i[0] * i[1],
    "Div": lambda i, a: i[0] / i[1],
    "Pow": lambda i, a: torch.pow(i[0], i[1]),
    "Sqrt": lambda i, a: torch.sqrt(i[0]),
    "Relu": lambda i, a: F.relu(i[0]),
    "Sigmoid": lambda i, a: torch.sigmoid(i[0]),
    "HardSigmoid": _hard_sigmoid,
    "Clip": _clip,
    "Conv": _conv,
    "BatchNormalization": _batch_norm,
    "AveragePool": _average_pool,
    "GlobalAveragePool": lambda i, a: i[0].mean(dim=(2, 3), keepdim=True),
    "ReduceMean": lambda i, a: i[0].mean(dim=tuple(a["axes"]), keepdim=bool(a.get("keepdims", 1))),
    "MatMul": lambda i, a: torch.matmul(i[0], i[1]),
    "Softmax": _softmax,
    "Shape": lambda i, a: torch.tensor(i[0].shape, dtype=torch.int64),
    "Cast": lambda i, a: i[0].to(_CAST[a["to"]]),
    "Slice": _slice,
    "Concat": _concat,
    "Reshape": _reshape,
    "Transpose": lambda i, a: i[0].permute(*a["perm"]),
    "Squeeze": _squeeze,
    "Flatten": lambda i, a: i[0].flatten(a.get("axis", 1)) if a.get("axis", 1) else i[0].reshape(1, -1),
}


class Graph:
    """An ONNX model ready to run: weights converted to torch once."""

    def __init__(self, model):
        if not isinstance(model, onnx.ModelProto):
            model = onnx.load(model)
        self.model = model
        g = model.graph
        self.weights = {t.name: _tensor(t) for t in g.initializer}
        self.constants = {}
        self.nodes = []
        for node in g.node:
            attrs = _attributes(node)
            if node.op_type == "Constant":
                self.constants[node.output[0]] = _tensor(attrs["value"])
                continue
            if node.op_type not in _OPS:
                raise UnsupportedModel("ONNX operator %s (node %s) is outside the subset covered"
                                          % (node.op_type, node.name or node.output[0]))
            self.nodes.append((node.op_type, list(node.input), list(node.output), attrs))
        inputs = [v.name for v in g.input if v.name not in self.weights]
        if len(inputs) != 1:
            raise ValueError("expected one graph input, got %s" % inputs)
        self.input_name = inputs[0]
        self.output_name = g.output[0].name

    @torch.no_grad()
    def run(self, x, watch=()):
        """Evaluate the graph on x; returns (output, {name: tensor} for the
        names in watch)."""
        env = dict(self.weights)
        env.update(self.constants)
        env[self.input_name] = x
        for op, inputs, outputs, attrs in self.nodes:
            args = [env[name] if name else None for name in inputs]
            env[outputs[0]] = _OPS[op](args, attrs)
        missing = set(watch) - set(env)
        if missing:
            raise KeyError("no tensor named %s in the graph" % ", ".join(sorted(missing)))
        return env[self.output_name], {name: env[name] for name in watch}


def find_attention(model):
    """The attention blocks of an ONNX graph, in graph order: a list of dicts
    with the names of q, k (as [B, heads, N, D], before the transpose), v, the
    softmax output ("probs"), the attention output ("out", probs @ v) and the
    scale (a float) of every Softmax(MatMul(Mul(q, scale), Transpose(k, perm
    [0, 1, 3, 2]))) whose output is multiplied by v.  Softmaxes of any other
    shape (e.g. a classifier's) are not listed."""
    g = model.graph
    producer = {out: n for n in g.node for out in n.output}
    consumers = {}
    for n in g.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    constants = {n.output[0]: numpy_helper.to_array(_attributes(n)["value"])
                 for n in g.node if n.op_type == "Constant"}
    constants.update({t.name: numpy_helper.to_array(t) for t in g.initializer})

    blocks = []
    for sm in g.node:
        if sm.op_type != "Softmax":
            continue
        scores = producer.get(sm.input[0])
        if scores is None or scores.op_type != "MatMul":
            continue
        mul, kt = producer.get(scores.input[0]), producer.get(scores.input[1])
        if mul is None or kt is None or mul.op_type != "Mul" or kt.op_type != "Transpose":
            continue
        if list(_attributes(kt)["perm"]) != [0, 1, 3, 2]:
            continue
        q_name, scale = None, None
        for a, b in ((mul.input[0], mul.input[1]), (mul.input[1], mul.input[0])):
            if b in constants and constants[b].size == 1:
                q_name, scale = a, float(constants[b].reshape(()))
        if q_name is None:
            continue
        pv = [n for n in consumers.get(sm.output[0], [])
              if n.op_type == "MatMul" and n.input[0] == sm.output[0]]
        if len(pv) != 1:
            continue
        blocks.append({"q": q_name, "k": kt.input[0], "v": pv[0].input[1],
                       "probs": sm.output[0], "out": pv[0].output[0], "scale": scale,
                       "softmax_axis": _attributes(sm).get("axis", 1)})
    return blocks
