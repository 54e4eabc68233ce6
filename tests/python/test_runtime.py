"""Tests of samples/runtime/paro_runtime.py.

CPU part (runs in CI with numpy; torch only where noted): the plan reader
against `paro dump --json`, the permutations against the plan's PERM
sections, the mask bit order, the BlockMask inputs, the permute / un-permute
round trip, and the block-sparse attention the runtime computes (written out
with numpy) against `paro eval`'s recall and out_rel_l2.

GPU part (needs torch with CUDA and flex_attention; prints SKIP and passes
without them): PlanAttention equals dense attention when the plan keeps every
tile, and equals the numpy reference for a sparse plan.

Environment: PARO, the paro binary (default ./paro).
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(ROOT, "samples", "runtime"))
import paro_runtime as pr  # noqa: E402

PARO = os.path.abspath(os.environ.get("PARO", os.path.join(ROOT, "paro")))


def paro(*args):
    return subprocess.run([PARO, "-q"] + [str(a) for a in args], check=True,
                          stdout=subprocess.PIPE).stdout


def make_plan(tmp, name, grid, text, text_position, heads, d, samples, calib, block, density,
              buckets=1):
    cap = os.path.join(tmp, name)
    grid_arg = "x".join(str(g) for g in grid)
    paro("synth", "-o", cap, "--grid", grid_arg, "--text", text, "--layers", 2, "--heads", heads,
         "--head-dim", d, "--samples", samples, "--seed", 7, "--dtype", "f32",
         "--text-position", text_position)
    plan = cap + ".paro"
    paro("calibrate", "-m", os.path.join(cap, "manifest.json"), "-o", plan, "--block", block,
         "--density", density, "--samples", calib, "--timestep-buckets", buckets, "-j", 2)
    return os.path.join(cap, "manifest.json"), plan


def masked_attention(q, k, v, perm, tile_mask, block, scale):
    """What PlanAttention computes, written out with numpy in fp64 on capture
    order: the dense output, and the output with softmax over the kept tiles
    of each head's order only (a row that keeps nothing gives 0), and the
    kept share of the mass.  q, k, v: [H, N, D]; perm: [H, N]; tile_mask:
    [H, nq, nk]."""
    H, N, _ = q.shape
    dense, sparse, recall = np.empty_like(q), np.empty_like(q), np.empty(H)
    for h in range(H):
        pos = np.empty(N, dtype=np.int64)
        pos[perm[h]] = np.arange(N)
        blk = pos // block
        keep = tile_mask[h][blk[:, None], blk[None, :]]
        s = (q[h] @ k[h].T) * scale
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        dense[h] = p @ v[h]
        recall[h] = (p * keep).sum() / N
        sm = np.where(keep, s, -np.inf)
        mx = np.where(keep.any(axis=1), sm.max(axis=1), 0.0)[:, None]
        e = np.where(keep, np.exp(np.where(keep, s, mx) - mx), 0.0)
        z = e.sum(axis=1, keepdims=True)
        sparse[h] = np.where(z > 0, (e @ v[h]) / np.where(z > 0, z, 1.0), 0.0)
    return dense, sparse, recall


def rel_l2(a, b):
    return float(np.sqrt(((a - b) ** 2).sum() / (b ** 2).sum()))


# ---- CPU ----------------------------------------------------------------------

def check_reader_and_orders(manifest, plan_path):
    plan = pr.read_plan_file(plan_path)
    dump = json.loads(paro("dump", "--json", plan_path))
    for key, value in dump.items():
        if key == "heads":
            continue
        assert plan[key] == value, (key, plan[key], value)
    assert len(plan["heads"]) == len(dump["heads"])
    for mine, theirs in zip(plan["heads"], dump["heads"]):
        for key in ("layer", "head", "order", "density", "recall"):
            assert mine[key] == theirs[key], (key, mine, theirs)
    # The permutations from the order names are the ones paro stored.
    for o, entry in enumerate(plan["orders"]):
        want = pr.order_permutation(entry["name"], plan["grid"], plan["text_tokens"],
                                    plan["text_position"])
        assert np.array_equal(want, plan["perms"][o]), entry["name"]
    # Mask bit order: densities agree exactly; text rows and columns are kept.
    nq, nk = plan["blocks"]
    bq, bk = plan["block"]
    N, T = plan["tokens"], plan["text_tokens"]
    t0 = T and (0 if plan["text_position"] == "first" else N - T)
    text_q = {p // bq for p in range(t0, t0 + T)}
    text_k = {p // bk for p in range(t0, t0 + T)}
    for slot, layer in enumerate(plan["layers"]):
        masks = plan["masks"][slot]
        assert masks.shape == (plan["buckets"]["count"], plan["num_heads"], nq, nk)
        for h in range(plan["num_heads"]):
            head = plan["heads"][slot * plan["num_heads"] + h]
            for b in range(plan["buckets"]["count"]):
                m = masks[b, h]
                assert m.sum() / m.size == head["density"][b], (layer, h, b)
                assert m.any(axis=1).all()
                for a in text_q:
                    assert m[a].all()
                for kb in text_k:
                    assert m[:, kb].all()
    if pr._paro_plan is not None:  # the repository's reader, once it is there
        other = pr.load_plan(plan_path)
        for slot in range(len(plan["layers"])):
            assert np.array_equal(other["masks"][slot], plan["masks"][slot])
        assert [h["order"] for h in other["heads"]] == [h["order"] for h in plan["heads"]]
    return plan


def check_block_mask_inputs():
    rng = np.random.default_rng(3)
    for n, block in ((410, 128), (512, 128), (105, 16), (7, 4)):
        nb = -(-n // block)
        mask = rng.random((3, nb, nb)) < 0.4
        mask[:, :, 0] = True
        kv_num, kv_idx, full_num, full_idx = pr.block_mask_inputs(mask, n, block)
        assert kv_num.shape == (1, 3, nb) and kv_idx.shape == (1, 3, nb, nb)
        assert kv_num.dtype == np.int32 and kv_idx.dtype == np.int32
        partial = pr.dense_from_block_inputs(kv_num, kv_idx)[0]
        full = pr.dense_from_block_inputs(full_num, full_idx)[0]
        assert not (partial & full).any()
        assert np.array_equal(partial | full, mask)
        ragged = n % block != 0
        assert np.array_equal(partial[:, :, :-1], np.zeros_like(partial[:, :, :-1]))
        assert partial[:, :, -1].any() == (ragged and mask[:, :, -1].any())
        # kept blocks first, in increasing order
        for h in range(3):
            for a in range(nb):
                c = full_num[0, h, a]
                assert list(full_idx[0, h, a, :c]) == sorted(np.flatnonzero(full[h, a]))
                assert sorted(full_idx[0, h, a]) == list(range(nb))
    try:
        pr.block_mask_inputs(np.ones((1, 2, 2), bool), 300, 128)
    except ValueError:
        pass
    else:
        raise AssertionError("a mask of the wrong size was accepted")


def check_against_eval(manifest, plan_path, plan):
    """The runtime's attention, computed from the plan as read here, has the
    recall and output error `paro eval` reports for the same sample."""
    ev = json.loads(paro("eval", "-m", manifest, "-p", plan_path, "--samples", 1, "--json",
                         "-j", 2))
    (q, k, v), m = pr.read_capture_layer(manifest, 1, plan["layers"][0])
    progress = 1 - m["samples"][1]["timestep"] / m.get("timestep_max", 1000)
    bucket = pr.bucket_of(progress, plan["buckets"]["count"])
    assert ev["samples"][0]["bucket"] == bucket
    perm = pr.head_permutations(plan, plan["layers"][0])
    dense, sparse, recall = masked_attention(
        q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), perm,
        plan["masks"][0][bucket], plan["block"][0], plan["scale"])
    for h in range(plan["num_heads"]):
        head = ev["heads"][h]
        assert abs(recall[h] - head["recall_mean"]) < 1e-9, (h, recall[h], head["recall_mean"])
        err = rel_l2(sparse[h], dense[h])
        assert abs(err - head["out_rel_l2"]) < 1e-9 * max(1.0, err), (h, err, head["out_rel_l2"])


def check_torch_permutation(plan):
    try:
        import torch
    except ImportError:
        print("SKIP torch permutation round trip: torch is not installed")
        return
    perm = torch.as_tensor(pr.head_permutations(plan, plan["layers"][0]))
    x = torch.randn(2, perm.shape[0], perm.shape[1], 5, dtype=torch.float64)
    y = pr.permute_tokens(x, perm)
    for h in range(perm.shape[0]):
        assert torch.equal(y[:, h], x[:, h, perm[h]])
    assert torch.equal(pr.permute_tokens(y, pr.inverse_permutation(perm)), x)


# ---- GPU ----------------------------------------------------------------------

def check_gpu(tmp):
    ok, why = pr.flex_attention_available()
    if not ok:
        print("SKIP gpu part: " + why)
        return
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here
    for text_position in ("first", "last"):
        for density in (1, 0.5):
            manifest, plan_path = make_plan(
                tmp, "gpu_%s_%g" % (text_position, density), (3, 10, 13), 20, text_position,
                4, 64, 2, 0, 128, density)
            plan = pr.load_plan(plan_path)
            layer = plan["layers"][0]
            attn = pr.PlanAttention(plan, layer)
            N, H = plan["tokens"], plan["num_heads"]
            assert N % 128 != 0  # a ragged last block
            g = torch.Generator(device="cuda").manual_seed(1)
            q, k, v = (torch.randn(1, H, N, 64, device="cuda", generator=g) for _ in range(3))
            perm = pr.head_permutations(plan, layer)
            to64 = lambda t: t[0].double().cpu().numpy()
            dense, sparse, _ = masked_attention(to64(q), to64(k), to64(v), perm,
                                                plan["masks"][0][0], 128, plan["scale"])
            want = dense if density == 1 else sparse
            got32 = to64(attn(q, k, v))
            err32 = rel_l2(got32, want)
            assert err32 < 1e-3, ("fp32", text_position, density, err32)
            got16 = to64(attn(q.bfloat16(), k.bfloat16(), v.bfloat16()).float())
            err16 = rel_l2(got16, want)
            assert err16 < 2e-2, ("bf16", text_position, density, err16)
            if density == 1:
                sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=plan["scale"])
                assert rel_l2(got32, to64(sdpa)) < 1e-3
            print("gpu %s text, density %g: rel_l2 fp32 %.2e, bf16 %.2e"
                  % (text_position, density, err32, err16))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        # (the 2-bucket plan needs a calibration sample in each bucket)
        for name, grid, text, position, calib, buckets in (
                ("first", (3, 5, 7), 5, "first", "0,1", 2),
                ("last", (2, 4, 6), 3, "last", "0", 1),
                ("image", (1, 6, 9), 0, "first", "0", 1)):
            manifest, plan_path = make_plan(tmp, name, grid, text, position, 3, 16, 2, calib, 16,
                                            0.4, buckets)
            plan = check_reader_and_orders(manifest, plan_path)
            check_against_eval(manifest, plan_path, plan)
            check_torch_permutation(plan)
        check_block_mask_inputs()
        print("cpu part: ok")
        check_gpu(tmp)
    print("ok")


if __name__ == "__main__":
    main()
