"""Apply a paro plan in PyTorch: permute q, k, v per head, run block-sparse
attention with the plan's masks through FlexAttention, un-permute the output.

    import paro_runtime
    plan = paro_runtime.load_plan("model.paro")            # plain dict
    attn = paro_runtime.PlanAttention(plan, layer=0)       # torch.nn.Module
    out = attn(q, k, v, bucket=0)     # q, k, v: [batch, heads, N, head_dim] on CUDA

Everything but PlanAttention needs only numpy (and the standard library):
reading the plan, the permutations of formats/PLAN.md section 8.1, and the
kv_num_blocks / kv_indices inputs of FlexAttention's BlockMask, so they can
be checked on machines without a GPU. PlanAttention needs torch >= 2.5 with
CUDA (torch.nn.attention.flex_attention).

The plan must be calibrated with --block 128: FlexAttention's block size.
"""

import json
import os
import struct
import sys
import zlib

import numpy as np

FLEX_BLOCK = 128

_here = os.path.dirname(os.path.abspath(__file__))
_reader_dir = os.path.join(_here, "..", "..", "formats", "python")
if os.path.isdir(_reader_dir) and _reader_dir not in sys.path:
    sys.path.insert(0, _reader_dir)
try:  # the repository's stdlib plan reader, when it is there
    import paro_plan as _paro_plan
except ImportError:
    _paro_plan = None


# ---- reading a plan -------------------------------------------------------

_MAGIC = b"\x97PAR\r\n\x1a\n"


def read_plan_file(path):
    """Reads a plan with the standard library and numpy, following
    formats/PLAN.md (section 15's reader plus the dump --json shape): returns
    the `paro dump --json` dict (metadata keys and "heads" with layer, head,
    order, density and recall per bucket) plus "masks" (per layer slot, a
    bool array [bucket][head][qi][kj]) and "perms" (order index -> int64
    array [N], from the PERM sections)."""
    with open(path, "rb") as f:
        b = f.read()
    if b[:8] != _MAGIC:
        raise ValueError("%s: not a paro plan" % path)
    (major, _minor, hsize, required, _optional, nsec, esize, table, fsize,
     hcrc) = struct.unpack_from("<HHIIIIIQQI", b, 8)
    if major != 1 or required != 0 or fsize != len(b) or table != hsize:
        raise ValueError("%s: unsupported or damaged plan" % path)
    head = bytearray(b[:table + nsec * esize])
    head[48:52] = bytes(4)
    if zlib.crc32(head) != hcrc:
        raise ValueError("%s: header checksum mismatch" % path)
    sec = {}
    for i in range(nsec):
        (typ, flags, off, stored, raw, codec, crc,
         index) = struct.unpack_from("<IIQQQIII", b, table + i * esize)
        data = b[off:off + stored]
        if zlib.crc32(data) != crc:
            raise ValueError("%s: section %d checksum mismatch" % (path, i))
        if codec == 1:
            data = zlib.decompress(data)
        elif codec != 0:
            raise ValueError("%s: unknown codec %d" % (path, codec))
        if len(data) != raw:
            raise ValueError("%s: section %d has the wrong length" % (path, i))
        if typ > 7 and not flags & 1:
            continue
        sec.setdefault(typ, {})[index] = data
    meta = json.loads(sec[1][0])
    layers, heads = meta["layers"], meta["num_heads"]
    buckets = meta["buckets"]["count"]
    nq, nk = meta["blocks"]
    order_index = sec[2][0]
    density = np.frombuffer(sec[4][0], "<f8").reshape(len(layers), buckets, heads)
    recall = np.frombuffer(sec[5][0], "<f8").reshape(len(layers), buckets, heads)
    plan = {"schema": "paro-plan/v1"}
    plan.update(meta)
    plan["heads"] = [
        {"layer": layer, "head": h,
         "order": meta["orders"][order_index[slot * heads + h]]["name"],
         "density": [float(x) for x in density[slot, :, h]],
         "recall": [float(x) for x in recall[slot, :, h]]}
        for slot, layer in enumerate(layers) for h in range(heads)]
    tiles = buckets * heads * nq * nk
    plan["masks"] = [
        np.unpackbits(np.frombuffer(sec[7][layer], np.uint8), bitorder="little")
        [:tiles].reshape(buckets, heads, nq, nk).astype(bool)
        for layer in layers]
    plan["perms"] = {o: np.frombuffer(d, "<u4").astype(np.int64)
                     for o, d in sec.get(6, {}).items()}
    return plan


def load_plan(path):
    """The plan as a dict: formats/python/paro_plan.load(path, numpy=True)
    when that reader is present, else read_plan_file(path); either way with
    the dump --json keys and "masks" as numpy bool arrays per layer slot."""
    if _paro_plan is not None:
        plan = _paro_plan.load(path, numpy=True)
        plan["masks"] = [np.asarray(m, dtype=bool) for m in plan["masks"]]
        return plan
    return read_plan_file(path)


# ---- orders, buckets, block masks ------------------------------------------

_AXES = {"F": 0, "H": 1, "W": 2}


def order_permutation(name, grid, text_tokens, text_position):
    """perm[p] = capture index of the token at permuted position p, exactly as
    formats/PLAN.md section 8.1 defines it (text tokens never move)."""
    F, H, W = grid
    visual = F * H * W
    base = text_tokens if text_position == "first" else 0
    f, h, w = np.meshgrid(np.arange(F), np.arange(H), np.arange(W), indexing="ij")
    capture = base + f * H * W + h * W + w            # [F, H, W]
    axes = [_AXES[c] for c in name]                     # outermost first
    visual_perm = np.transpose(capture, axes).reshape(-1)
    text = np.arange(text_tokens) + (0 if text_position == "first" else visual)
    parts = [text, visual_perm] if text_position == "first" else [visual_perm, text]
    return np.concatenate(parts).astype(np.int64)


def bucket_of(progress, count):
    """Timestep bucket of a denoising progress in [0, 1] (PLAN.md section 7)."""
    if not progress > 0:
        return 0
    return min(int(progress * count), count - 1)


def block_mask_inputs(mask, n_tokens, block=FLEX_BLOCK):
    """FlexAttention's BlockMask inputs for one layer and bucket: mask is bool
    [heads, nq, nk] (1 = the tile is computed) over blocks of `block` tokens.
    Returns int32 arrays with a leading batch dimension of 1:
    (kv_num_blocks [1,H,nq], kv_indices [1,H,nq,nk],
     full_kv_num_blocks [1,H,nq], full_kv_indices [1,H,nq,nk]).
    A kept tile is "full" (computed without a mask_mod) unless its key block
    runs past the sequence end (N not a multiple of the block); those are
    the "partial" tiles, which PlanAttention masks with kv_idx < N.  Indices
    of a row list its kept blocks in increasing order, then the others."""
    mask = np.asarray(mask, dtype=bool)
    heads, nq, nk = mask.shape
    if nq != -(-n_tokens // block) or nk != -(-n_tokens // block):
        raise ValueError("mask of %dx%d blocks does not fit %d tokens in blocks of %d"
                         % (nq, nk, n_tokens, block))
    ragged = np.zeros(nk, dtype=bool)
    if n_tokens % block:
        ragged[-1] = True
    partial = mask & ragged[None, None, :]
    full = mask & ~ragged[None, None, :]

    def ordered(m):
        # Stable sort of "not kept": kept blocks first, each part increasing.
        idx = np.argsort(~m, axis=-1, kind="stable").astype(np.int32)
        return m.sum(axis=-1).astype(np.int32)[None], idx[None]

    kv_num, kv_idx = ordered(partial)
    full_num, full_idx = ordered(full)
    return kv_num, kv_idx, full_num, full_idx


def dense_from_block_inputs(kv_num_blocks, kv_indices):
    """The bool [.., nq, nk] tile mask that (kv_num_blocks, kv_indices)
    describe: the inverse of one half of block_mask_inputs."""
    nk = kv_indices.shape[-1]
    rank = np.arange(nk)
    listed = rank[None] < kv_num_blocks[..., None]             # [.., nq, nk]
    out = np.zeros(kv_indices.shape, dtype=bool)
    np.put_along_axis(out, kv_indices.astype(np.int64), listed, axis=-1)
    return out


def head_permutations(plan, layer):
    """int64 [heads, N]: each head's permutation in plan layer `layer` (a
    model layer id)."""
    heads = [h for h in plan["heads"] if h["layer"] == layer]
    if not heads:
        raise ValueError("the plan has no layer %d (it has %s)" % (layer, plan["layers"]))
    return np.stack([order_permutation(h["order"], plan["grid"], plan["text_tokens"],
                                       plan["text_position"]) for h in heads])


# ---- reading a capture --------------------------------------------------------

_ST_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}


def read_capture_layer(manifest_path, sample, layer, kinds="qkv"):
    """One layer of one sample of a paro capture (formats/CAPTURE.md,
    safetensors files) as float32 numpy arrays [heads, N, head_dim], one per
    kind in `kinds`, plus the manifest dict."""
    with open(manifest_path) as f:
        m = json.load(f)
    names = {"q": "layers.{layer}.q", "k": "layers.{layer}.k", "v": "layers.{layer}.v"}
    names.update(m.get("tensor_names", {}))
    path = os.path.join(os.path.dirname(manifest_path) or ".", m["samples"][sample]["file"])
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    out = []
    for kind in kinds:
        name = names[kind].replace("{layer}", str(layer))
        if name not in header:
            raise ValueError("%s: no tensor '%s'" % (path, name))
        t = header[name]
        if t["dtype"] not in _ST_DTYPES:
            raise ValueError("%s: tensor '%s' has dtype %s" % (path, name, t["dtype"]))
        begin, end = t["data_offsets"]
        dtype = np.dtype(_ST_DTYPES[t["dtype"]])
        raw = np.memmap(path, dtype=dtype, mode="r", offset=8 + n + begin,
                        shape=((end - begin) // dtype.itemsize,))
        if t["dtype"] == "BF16":  # the top half of a float32
            x = (raw.astype(np.uint32) << 16).view(np.float32)
        else:
            x = np.asarray(raw, dtype=np.float32)
        x = x.reshape(t["shape"])
        if m.get("layout", "HND") == "NHD":
            x = x.transpose(1, 0, 2)
        out.append(np.ascontiguousarray(x))
    return out, m


# ---- torch ------------------------------------------------------------------

try:
    import torch
except ImportError:
    torch = None


def permute_tokens(x, perm):
    """x: [batch, heads, N, d]; perm: long [heads, N].  Returns y with
    y[:, h, p] = x[:, h, perm[h, p]]."""
    index = perm[None, :, :, None].expand(x.shape[0], -1, -1, x.shape[3])
    return torch.gather(x, 2, index)


def inverse_permutation(perm):
    """pos with pos[h, perm[h, p]] = p (torch long [heads, N])."""
    return torch.argsort(perm, dim=-1)


def flex_attention_available():
    """(True, "") or (False, why not)."""
    if torch is None:
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, "torch %s has no CUDA device" % torch.__version__
    try:
        from torch.nn.attention.flex_attention import BlockMask, flex_attention  # noqa: F401
    except ImportError:
        return False, "torch %s has no flex_attention" % torch.__version__
    return True, ""


_compiled_flex = None


def _flex():
    global _compiled_flex
    if _compiled_flex is None:
        from torch.nn.attention.flex_attention import flex_attention
        # Each plan's BlockMask and dtype may compile anew; the default limit
        # (8) would send later ones to the slow eager path.
        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, 64)
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex


if torch is not None:
    class PlanAttention(torch.nn.Module):
        """Block-sparse attention of one plan layer: forward(q, k, v, bucket)
        with q, k, v [batch, heads, N, head_dim] in capture order (the order
        the model uses) returns the attention output in capture order."""

        def __init__(self, plan, layer, device="cuda", compile=True):
            super().__init__()
            ok, why = flex_attention_available()
            if not ok:
                raise RuntimeError("PlanAttention needs FlexAttention on CUDA: " + why)
            from torch.nn.attention.flex_attention import BlockMask
            if list(plan["block"]) != [FLEX_BLOCK, FLEX_BLOCK]:
                raise ValueError("the plan has blocks %s; FlexAttention needs %d x %d "
                                 "(paro calibrate --block %d)"
                                 % (plan["block"], FLEX_BLOCK, FLEX_BLOCK, FLEX_BLOCK))
            slot = plan["layers"].index(layer)
            n = plan["tokens"]
            self.scale = float(plan["scale"])
            self.n_tokens = n
            perm = torch.as_tensor(head_permutations(plan, layer), device=device)
            self.register_buffer("perm", perm, persistent=False)
            self.register_buffer("inv", inverse_permutation(perm), persistent=False)

            def inside(b, h, q_idx, kv_idx):  # keys past the end of a ragged last block
                return kv_idx < n

            self.block_masks = []
            for bucket_mask in plan["masks"][slot]:
                arrays = [torch.as_tensor(a, device=device)
                          for a in block_mask_inputs(bucket_mask, n)]
                self.block_masks.append(BlockMask.from_kv_blocks(
                    arrays[0], arrays[1], arrays[2], arrays[3], BLOCK_SIZE=FLEX_BLOCK,
                    mask_mod=inside, seq_lengths=(n, n)))
            self.density = [float(m.mean()) for m in plan["masks"][slot]]
            self.attend = _flex() if compile else None

        def permuted(self, q, k, v, bucket=0):
            """Attention on inputs already in the heads' orders (for timing
            the kernel alone)."""
            if self.attend is None:
                from torch.nn.attention.flex_attention import flex_attention
                return flex_attention(q, k, v, block_mask=self.block_masks[bucket],
                                      scale=self.scale)
            return self.attend(q, k, v, block_mask=self.block_masks[bucket], scale=self.scale)

        def forward(self, q, k, v, bucket=0):
            if q.shape[2] != self.n_tokens:
                raise ValueError("q has %d tokens; the plan has %d" % (q.shape[2], self.n_tokens))
            out = self.permuted(permute_tokens(q, self.perm), permute_tokens(k, self.perm),
                                permute_tokens(v, self.perm), bucket)
            return permute_tokens(out, self.inv)
