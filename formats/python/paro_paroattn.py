"""Write a paro plan as the two files the PAROAttention runtime loads.

    python3 formats/python/paro_paroattn.py model.paro -o paroattn/ [--text-blocks N]
    paro export model.paro --to paroattn -o paroattn/   # the same, run by paro

The official PAROAttention code ships its runtime but not its calibration;
the runtime reads, with torch.load(..., weights_only=True):

  permute_plan.pth  {"permute": int64 [layers, heads], "empty": int64 [layers, heads]}
                    each head's order as their index: 0 FHW, 1 FWH, 2 HWF,
                    3 HFW, 4 WHF, 5 WFH (names outermost to innermost, as
                    paro's); "empty" all 0 (no head is replaced);
  sparse_plan.pth   {"sparse": bool [buckets, layers, heads, n, n],
                     "dense_rate": float32 [buckets, layers, heads]}

Their loader pads the mask with `text_blocks` leading rows and columns of
ones (the text blocks, 4 in their CogVideoX setup) and forces the last block
row and column on; so "sparse" is paro's mask without its first text_blocks
blocks on each axis, and "dense_rate" is the share of tiles the padded mask
computes.  A plan calibrated with `paro calibrate --keep-last` (text tiles
kept, the default) already keeps the tiles that loader forces on: padding
then gives back paro's masks exactly, dense_rate is paro's density, and
`paro eval` reports what the runtime computes.  Plans whose blocks are not
64 x 64, whose text is not first, or whose text spans another number of
blocks than --text-blocks (default 4) are refused (exit 2): their loader
would put the masks in the wrong place.

Needs torch (to write .pth) and numpy; reads the plan with paro_plan.py.
Exit status: 0 written, 1 torch or numpy missing or writing failed, 2 the
plan does not fit, 3 the plan file is bad.
"""

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import paro_plan  # noqa: E402

# their order index -> axis names, outermost to innermost
PAROATTN_ORDERS = ["FHW", "FWH", "HWF", "HFW", "WHF", "WFH"]
BLOCK = 64


def paroattn_padded(sparse, text_blocks):
    """What their loader makes of one [n, n] mask (numpy bool): text_blocks
    leading rows and columns of ones, the last row and column on."""
    import numpy as np
    n = sparse.shape[-1] + text_blocks
    full = np.ones(sparse.shape[:-2] + (n, n), dtype=bool)
    full[..., text_blocks:, text_blocks:] = sparse
    full[..., -1, :] = True
    full[..., :, -1] = True
    return full


def convert(plan, text_blocks):
    """The two dicts of numpy arrays, or a ValueError saying why the plan
    does not fit that runtime."""
    import numpy as np
    if tuple(plan["block"]) != (BLOCK, BLOCK):
        raise ValueError("the PAROAttention runtime uses 64x64 blocks; this plan has %dx%d "
                         "(calibrate with --block 64)" % tuple(plan["block"]))
    if plan["text_position"] != "first":
        raise ValueError("the PAROAttention runtime expects the text tokens first; this plan "
                         "has them last")
    have = math.ceil(plan["text_tokens"] / BLOCK)
    if have != text_blocks:
        raise ValueError("the plan's %d text tokens span %d blocks, but the target loader pads "
                         "%d (give --text-blocks %d if that is what it pads)"
                         % (plan["text_tokens"], have, text_blocks, have))
    nq, nk = plan["blocks"]
    if nq != nk or nq <= text_blocks:
        raise ValueError("the plan's %dx%d blocks leave no visual blocks" % (nq, nk))
    layers, heads = len(plan["layers"]), plan["num_heads"]
    buckets = plan["buckets"]["count"]
    index = {name: i for i, name in enumerate(PAROATTN_ORDERS)}
    permute = np.zeros((layers, heads), dtype=np.int64)
    for h in plan["heads"]:
        slot = plan["layers"].index(h["layer"])
        permute[slot, h["head"]] = index[h["order"]]
    masks = np.stack([np.asarray(m) for m in plan["masks"]], axis=1)  # [B, L, H, nq, nk]
    assert masks.shape == (buckets, layers, heads, nq, nk), masks.shape
    sparse = np.ascontiguousarray(masks[..., text_blocks:, text_blocks:])
    dense_rate = paroattn_padded(sparse, text_blocks).mean(axis=(-2, -1), dtype=np.float64)
    return ({"permute": permute, "empty": np.zeros_like(permute)},
            {"sparse": sparse, "dense_rate": dense_rate.astype(np.float32)})


def main(argv):
    ap = argparse.ArgumentParser(
        prog="paro_paroattn.py",
        description="Write a paro plan as PAROAttention's permute_plan.pth and sparse_plan.pth.")
    ap.add_argument("plan")
    ap.add_argument("-o", "--output", required=True, help="folder for the two .pth files")
    ap.add_argument("--text-blocks", type=int, default=4,
                    help="leading text blocks the target loader pads [default: 4]")
    args = ap.parse_args(argv)
    try:
        import numpy  # noqa: F401
        import torch
    except ImportError as e:
        # one line that names the interpreter: paro runs this with $PARO_PYTHON
        # or python3, which may not be the Python that has torch
        print("paro_paroattn: error: writing .pth files needs torch and numpy, which %s lacks "
              "(%s); install them (Debian: python3-torch python3-numpy) or use another Python "
              "(paro export: set PARO_PYTHON)" % (sys.executable, e), file=sys.stderr)
        return 1
    try:
        plan = paro_plan.load(args.plan, numpy=True)
    except OSError as e:
        print("paro_paroattn: error: cannot read %s: %s" % (args.plan, e.strerror),
              file=sys.stderr)
        return 1
    except ValueError as e:
        print("paro_paroattn: error: %s" % e, file=sys.stderr)
        return 3
    try:
        permute, sparse = convert(plan, args.text_blocks)
    except ValueError as e:
        print("paro_paroattn: error: %s: %s" % (args.plan, e), file=sys.stderr)
        return 2
    path = args.output
    try:
        os.makedirs(args.output, exist_ok=True)
        for name, arrays in (("permute_plan.pth", permute), ("sparse_plan.pth", sparse)):
            path = os.path.join(args.output, name)
            tmp = path + ".tmp"
            # written whole then renamed: an interrupted run leaves no half file
            torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, tmp)
            os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        # torch's zip writer reports a full disk as a RuntimeError
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
        print("paro_paroattn: error: cannot write %s: %s" % (path, why), file=sys.stderr)
        return 1
    b, l, h, n, _ = sparse["sparse"].shape
    print("wrote %s: permute [%d, %d], sparse [%d, %d, %d, %d, %d]"
          % (args.output, l, h, b, l, h, n, n))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
