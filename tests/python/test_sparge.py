"""samples/sparge/paro_sparge.py: a plan as SpargeAttn's mask_id, on the CPU.

For plans calibrated on a synth capture with --block 128x64 (sm80's blocks)
and 64x128 (sm90's): the mask_id of every layer and bucket has the kernel's
shape (batch, heads, ceil(N/BQ), ceil(N/BK)), is int8 and contiguous, and
equals the plan's masks (as `paro dump --json-full` prints them), whether the
plan is read from the .paro or from `paro export --to npz`; a plan with other
blocks is refused with the --block to use.  The permutations are PLAN.md's,
and un-permuting a permutation gives back the input.  The recipe (permute,
attend over the tiles mask_id keeps, un-permute), with a pure torch
block-masked attention standing in for the kernel, equals the attention the
plan's masks define in capture order, and dense attention for a plan that
keeps every tile.  Skipped without torch and numpy; SpargeAttn itself is not
needed.
"""
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "samples", "sparge"))
import plan_builder as pb  # noqa: E402  (sets up formats/python and no __pycache__)
import paro_plan  # noqa: E402

try:
    import numpy as np
    import torch
    import paro_sparge as ps
except ImportError:  # pragma: no cover - reported as a skip
    np = torch = ps = None

GRID, TEXT, HEADS = (2, 8, 16), 64, 2
N = TEXT + GRID[0] * GRID[1] * GRID[2]  # 320: partial blocks of 128


def block_masked_attention(q, k, v, mask_id, bq, bk, scale):
    """What block_sparse_sage2_attn_cuda computes, in fp64 on the CPU: per
    head, softmax(scale q k^T) over the keys of the tiles mask_id keeps
    (tile (i, j) = query block i of bq tokens, key block j of bk), then the
    weighted sum of v.  q, k, v [B, H, N, D]; mask_id [B, H, nq, nk]."""
    n = q.shape[2]
    keep = mask_id.bool().repeat_interleave(bq, dim=2)[:, :, :n]
    keep = keep.repeat_interleave(bk, dim=3)[..., :n]
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    s = s.masked_fill(~keep, float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1), v)


@unittest.skipIf(torch is None, "needs torch and numpy")
class Sparge(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.tmp.name
        grid = "x".join(map(str, GRID))
        common = dict(grid=grid, text=TEXT, layers=2, heads=HEADS, samples=2)
        cls.plans = {
            "sm80": pb.synth_plan(d, "cap", "b128x64", block="128x64",
                                  extra=("--density", 0.3, "--timestep-buckets", 2), **common),
            "sm90": pb.synth_plan(d, "cap", "b64x128", block="64x128",
                                  extra=("--density", 0.3), **common),
        }
        cls.full = pb.synth_plan(d, "cap", "full", block="64x128", extra=("--density", 1),
                                 **common)
        cls.npz = {}
        for arch, plan in cls.plans.items():
            cls.npz[arch] = plan[:-len(".paro")] + ".npz"
            pb.paro("export", plan, "-o", cls.npz[arch])

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_mask_id_is_the_plans_masks(self):
        for arch, path in self.plans.items():
            bq, bk = ps.SPARGE_BLOCKS[arch]
            doc = pb.dump_json(path, full=True)
            plan, from_npz = ps.load(path), ps.load(self.npz[arch])
            self.assertEqual(plan["block"], (bq, bk))
            for key in ("masks", "perms", "orders"):
                self.assertTrue(np.array_equal(plan[key], from_npz[key]), (arch, key))
            self.assertEqual(plan["layers"], from_npz["layers"])
            B = doc["buckets"]["count"]
            for h in doc["heads"]:
                for b in range(B):
                    for p in (plan, from_npz):
                        m = ps.sparge_mask_id(p, h["layer"], b, batch=3, arch=arch)
                        shape = (3, HEADS, -(-N // bq), -(-N // bk))
                        self.assertEqual(tuple(m.shape), shape, arch)
                        self.assertEqual(m.dtype, torch.int8)
                        self.assertTrue(m.is_contiguous())
                        want = torch.tensor(h["masks"][b], dtype=torch.int8)
                        for i in range(3):
                            self.assertTrue(torch.equal(m[i, h["head"]], want),
                                            (arch, h["layer"], h["head"], b))
            # the other architecture's blocks: refused, naming the --block to use
            other = "sm90" if arch == "sm80" else "sm80"
            for p in (plan, from_npz):
                with self.assertRaisesRegex(ValueError, "--block %dx%d" % ps.SPARGE_BLOCKS[other]):
                    ps.sparge_mask_id(p, 0, 0, arch=other)
            with self.assertRaisesRegex(ValueError, "layer 7 is not in the plan"):
                ps.sparge_mask_id(plan, 7, 0, arch=arch)
            with self.assertRaisesRegex(ValueError, "bucket %d is not" % B):
                ps.sparge_mask_id(plan, 0, B, arch=arch)

    def test_permutations(self):
        plan = ps.load(self.plans["sm90"])
        doc = paro_plan.load(self.plans["sm90"])
        g = torch.Generator().manual_seed(1)
        x = torch.randn(2, HEADS, N, 5, generator=g, dtype=torch.float64)
        for layer in plan["layers"]:
            perm = ps.head_permutations(plan, layer)
            self.assertEqual(tuple(perm.shape), (HEADS, N))
            for h in doc["heads"]:
                if h["layer"] == layer:
                    want = paro_plan.permutation(h["order"], GRID, TEXT, "first")
                    self.assertEqual(perm[h["head"]].tolist(), want)
            self.assertTrue(torch.equal(perm[:, :TEXT], torch.arange(TEXT).expand(HEADS, -1)))
            y = ps.permute(x, perm)
            for h in range(HEADS):
                self.assertTrue(torch.equal(y[:, h], x[:, h, perm[h]]))
            self.assertTrue(torch.equal(ps.unpermute(y, perm), x))
            self.assertTrue(torch.equal(ps.permute(ps.unpermute(x, perm), perm), x))

    def attention_inputs(self, seed):
        g = torch.Generator().manual_seed(seed)
        return [torch.randn(2, HEADS, N, 16, generator=g, dtype=torch.float64) * 2
                for _ in range(3)]

    def recipe(self, plan, arch, q, k, v, layer, bucket):
        """attend() with the torch reference in place of the kernel."""
        perm = ps.head_permutations(plan, layer)
        mask_id = ps.sparge_mask_id(plan, layer, bucket, q.shape[0], arch)
        out = block_masked_attention(ps.permute(q, perm), ps.permute(k, perm),
                                     ps.permute(v, perm), mask_id, *ps.SPARGE_BLOCKS[arch],
                                     plan["scale"])
        return ps.unpermute(out, perm)

    def test_recipe_computes_the_plans_kept_tiles(self):
        for arch, path in self.plans.items():
            plan = ps.load(path)
            bq, bk = ps.SPARGE_BLOCKS[arch]
            q, k, v = self.attention_inputs(2)
            dense = torch.matmul(torch.softmax(
                torch.matmul(q, k.transpose(-1, -2)) * plan["scale"], dim=-1), v)
            for slot, layer in enumerate(plan["layers"]):
                perm = ps.head_permutations(plan, layer)
                pos = torch.argsort(perm, dim=1)  # permuted position of each token
                for b in range(plan["masks"].shape[0]):
                    got = self.recipe(plan, arch, q, k, v, layer, b)
                    # the plan's masks in capture order, token by token
                    tiles = torch.from_numpy(plan["masks"][b, slot])
                    keep = torch.stack([tiles[h][pos[h][:, None] // bq, pos[h][None, :] // bk]
                                        for h in range(HEADS)])
                    s = torch.matmul(q, k.transpose(-1, -2)) * plan["scale"]
                    want = torch.matmul(torch.softmax(s.masked_fill(~keep, float("-inf")), -1), v)
                    self.assertTrue(torch.allclose(got, want, rtol=0, atol=1e-12), (arch, layer, b))
                    # and it is sparse: not the dense output
                    self.assertGreater((got - dense).abs().max().item(), 1e-3)

    def test_a_plan_that_keeps_every_tile_is_dense(self):
        plan = ps.load(self.full)
        self.assertTrue(plan["masks"].all())
        q, k, v = self.attention_inputs(3)
        dense = torch.matmul(torch.softmax(
            torch.matmul(q, k.transpose(-1, -2)) * plan["scale"], dim=-1), v)
        for layer in plan["layers"]:
            got = self.recipe(plan, "sm90", q, k, v, layer, 0)
            self.assertTrue(torch.allclose(got, dense, rtol=0, atol=1e-12), layer)

    def test_bucket_of(self):
        self.assertEqual([ps.bucket_of(p, 4) for p in (0, 0.2499, 0.25, 0.999, 1.0)],
                         [0, 0, 1, 3, 3])


if __name__ == "__main__":
    unittest.main(verbosity=1)
