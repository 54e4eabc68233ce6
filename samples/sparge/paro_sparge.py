"""Run a paro plan with SpargeAttn's block-sparse kernel.

    import paro_sparge
    plan = paro_sparge.load("model.paro")        # or the arrays of `paro export --to npz`
    out = paro_sparge.attend(plan, q, k, v, layer=0, bucket=0)   # q, k, v: [B, H, N, D], CUDA

SpargeAttn's `block_sparse_sage2_attn_cuda(q, k, v, mask_id=...)` computes, per
head, the tiles a 0/1 mask of shape (batch, heads, ceil(N / BQ), ceil(N / BK))
keeps, with BQ x BK = 128 x 64 on sm80 (A100) and 64 x 128 on sm90 (H100) in
current versions.  A plan calibrated with `paro calibrate --block BQxBK` holds
exactly that mask per layer, head and timestep bucket, in the head's order, so
the recipe is: permute q, k, v into the head's order, call the kernel with the
plan's mask, permute the output back.  Text tokens never move (PLAN.md 8.1).

Everything but attend() needs only numpy and torch on the CPU (the masks, the
permutations and the checks); attend() needs SpargeAttn (`spas_sage_attn`) and
a GPU.  The kernel also wants head_dim 64 or 128 and N >= 128.
"""

import math
import os
import sys

import numpy as np

_here = os.path.dirname(os.path.abspath(__file__))
_reader_dir = os.path.join(_here, "..", "..", "formats", "python")
if os.path.isdir(_reader_dir) and _reader_dir not in sys.path:
    sys.path.insert(0, _reader_dir)

# (BQ, BK) of block_sparse_sage2_attn_cuda's mask_id, by GPU architecture
SPARGE_BLOCKS = {"sm80": (128, 64), "sm86": (128, 64), "sm87": (128, 64), "sm89": (128, 64),
                 "sm90": (64, 128)}


def load(path):
    """A plan as the arrays the recipe needs, from a .paro file (read with
    formats/python/paro_plan.py) or from the .npz that `paro export --to npz`
    writes (numpy alone):

      masks   bool [buckets, layers, heads, nq, nk]  1 = the tile is computed
      perms   int64 [orders, N]  per order, the capture index of the token at
              each permuted position
      orders  int64 [layers, heads]  each head's index into perms
      layers  list of model layer ids (position = layer slot)
      tokens  N
      block   (BQ, BK), or None from an .npz (which does not record it;
              sparge_mask_id then checks the tile counts instead)
      scale   the softmax scale of the capture, or None from an .npz"""
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            masks = z["masks"].astype(bool)
            perms = z["perms"].astype(np.int64)
            orders = z["orders"].astype(np.int64)
            layers = [int(x) for x in z["layers"]]
        return {"masks": masks, "perms": perms, "orders": orders, "layers": layers,
                "tokens": perms.shape[1], "block": None, "scale": None}
    import paro_plan
    doc = paro_plan.load(path, numpy=True, perms=True)
    names = [o["name"] for o in doc["orders"]]
    L, H = len(doc["layers"]), doc["num_heads"]
    orders = np.zeros((L, H), dtype=np.int64)
    for h in doc["heads"]:
        orders[doc["layers"].index(h["layer"]), h["head"]] = names.index(h["order"])
    return {"masks": np.stack(doc["masks"], axis=1), "perms": np.stack(doc["perms"]),
            "orders": orders, "layers": list(doc["layers"]), "tokens": doc["tokens"],
            "block": tuple(doc["block"]), "scale": doc["scale"]}


def bucket_of(progress, buckets):
    """The timestep bucket of denoising progress p (0 at the first step, 1 at
    the last), as paro calibrated it: min(floor(p * K), K - 1)."""
    return min(int(math.floor(progress * buckets)), buckets - 1) if progress > 0 else 0


def _slot(plan, layer):
    if layer not in plan["layers"]:
        raise ValueError("layer %d is not in the plan (it has %s)" % (layer, plan["layers"]))
    return plan["layers"].index(layer)


def head_permutations(plan, layer):
    """torch int64 [heads, N]: for each head of the model layer, the capture
    index of the token at each position of the head's order."""
    import torch
    return torch.from_numpy(plan["perms"][plan["orders"][_slot(plan, layer)]])


def permute(x, perm):
    """x [batch, heads, N, D] in capture order -> each head's tokens in its
    order: out[:, h, p] = x[:, h, perm[h, p]]."""
    index = perm.to(x.device)[None, :, :, None].expand(x.shape[0], -1, -1, x.shape[-1])
    return x.gather(2, index)


def unpermute(y, perm):
    """The inverse of permute: y in the heads' orders -> capture order."""
    import torch
    index = perm.to(y.device)[None, :, :, None].expand(y.shape[0], -1, -1, y.shape[-1])
    return torch.zeros_like(y).scatter(2, index, y)


def sparge_mask_id(plan, layer, bucket=0, batch=1, arch="sm90", block=None):
    """The mask_id of block_sparse_sage2_attn_cuda for one model layer and
    timestep bucket: torch int8 (batch, heads, nq, nk), contiguous, 1 where
    the plan computes the tile.  The plan must have been calibrated with the
    kernel's blocks for arch (--block 128x64 for sm80, 64x128 for sm90), or
    give block=(BQ, BK) to name them; otherwise ValueError says what to do."""
    import torch
    bq, bk = block or SPARGE_BLOCKS.get(arch, (None, None))
    if bq is None:
        raise ValueError("unknown architecture %r: give block=(BQ, BK)" % arch)
    masks = plan["masks"]
    n = plan["tokens"]
    nq, nk = masks.shape[-2:]
    have = plan["block"]
    if (have is not None and tuple(have) != (bq, bk)) or (nq, nk) != (-(-n // bq), -(-n // bk)):
        raise ValueError("the plan's tiles are %s (%d x %d of %d tokens), but SpargeAttn on %s "
                         "takes %dx%d blocks: calibrate with --block %dx%d"
                         % ("%dx%d" % tuple(have) if have else "unknown", nq, nk, n, arch,
                            bq, bk, bq, bk))
    if not 0 <= bucket < masks.shape[0]:
        raise ValueError("bucket %d is not in the plan's %d buckets" % (bucket, masks.shape[0]))
    m = torch.from_numpy(np.ascontiguousarray(masks[bucket, _slot(plan, layer)]))
    return m.to(torch.int8)[None].expand(batch, -1, -1, -1).contiguous()


def attend(plan, q, k, v, layer, bucket=0, arch=None, scale=None, **kwargs):
    """The plan's block-sparse attention of one layer with SpargeAttn: q, k, v
    [batch, heads, N, head_dim] in capture order (HND) on a GPU; returns the
    output in capture order.  scale defaults to the plan's (the capture's)
    softmax scale; other keyword arguments go to the kernel."""
    import torch
    from spas_sage_attn import block_sparse_sage2_attn_cuda
    if arch is None:
        major, minor = torch.cuda.get_device_capability(q.device)
        arch = "sm%d%d" % (major, minor)
    perm = head_permutations(plan, layer)
    mask_id = sparge_mask_id(plan, layer, bucket, q.shape[0], arch).to(q.device)
    if scale is None:
        scale = plan["scale"]
    out = block_sparse_sage2_attn_cuda(permute(q, perm), permute(k, perm), permute(v, perm),
                                       mask_id=mask_id, scale=scale, tensor_layout="HND",
                                       **kwargs)
    return unpermute(out, perm)
