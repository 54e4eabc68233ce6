"""formats/python/paro_paroattn.py: plans as the PAROAttention runtime loads
them.  The files load with torch.load(weights_only=True); padding them as
that loader does gives back paro's masks (with the last block row and column
on, which that loader forces); the permutation built from their order index
equals paro's; plans that do not fit are refused with exit 2; a
CogVideoX-shaped plan (13x30x45 + 226 text, blocks 64) gives masks of
274 x 274.  `paro export --to paroattn` runs the script and writes the same
bytes, passing its exit status on; with `calibrate --keep-last` the loader's
padding gives back paro's masks exactly.  Skipped without torch and numpy."""
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "formats", "python"))
sys.path.insert(0, HERE)
import paro_plan  # noqa: E402
import plan_builder as pb  # noqa: E402

SCRIPT = os.path.join(HERE, "..", "..", "formats", "python", "paro_paroattn.py")

try:
    import numpy as np
    import torch
except ImportError:  # pragma: no cover - reported as a skip
    np = torch = None

THEIR_ORDERS = ["FHW", "FWH", "HWF", "HFW", "WHF", "WFH"]


def their_permutation(index, grid, text):
    """The token order a runtime builds from their index: the visual tokens
    [F, H, W] with the axes named by the index, outermost first; text first
    and untouched."""
    name = THEIR_ORDERS[index]
    axes = ["FHW".index(c) for c in name]
    visual = torch.arange(grid[0] * grid[1] * grid[2]).reshape(grid).permute(*axes).reshape(-1)
    return torch.cat([torch.arange(text), visual + text])


@unittest.skipIf(torch is None, "needs torch and numpy")
class PAROAttnExport(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def export(self, plan, *extra):
        out = os.path.join(self.dir, "out")
        r = subprocess.run([sys.executable, SCRIPT, plan, "-o", out, *map(str, extra)],
                           capture_output=True, text=True)
        return r.returncode, r.stderr, out

    def load(self, out):
        permute = torch.load(os.path.join(out, "permute_plan.pth"), weights_only=True)
        sparse = torch.load(os.path.join(out, "sparse_plan.pth"), weights_only=True)
        return permute, sparse

    def test_calibrated_plan_round_trips(self):
        # 256 text tokens: 4 blocks of 64, as their CogVideoX setup pads
        plan = pb.synth_plan(self.dir, "cap", "p", grid="2x8x16", text=256, layers=2, heads=2,
                             block="64", extra=("--timestep-buckets", 2))
        rc, err, out = self.export(plan)
        self.assertEqual(rc, 0, err)
        permute, sparse = self.load(out)
        doc = paro_plan.load(plan, numpy=True, perms=True)
        L, H, B = len(doc["layers"]), doc["num_heads"], doc["buckets"]["count"]
        nq = doc["blocks"][0]
        self.assertEqual(set(permute), {"permute", "empty"})
        self.assertEqual(set(sparse), {"sparse", "dense_rate"})
        self.assertEqual(permute["permute"].dtype, torch.int64)
        self.assertEqual(tuple(permute["permute"].shape), (L, H))
        self.assertTrue(torch.equal(permute["empty"], torch.zeros(L, H, dtype=torch.int64)))
        self.assertEqual(sparse["sparse"].dtype, torch.bool)
        self.assertEqual(tuple(sparse["sparse"].shape), (B, L, H, nq - 4, nq - 4))
        self.assertEqual(sparse["dense_rate"].dtype, torch.float32)
        # their loader: 4 leading rows and columns of ones, the last row and
        # column on; paro keeps the text tiles, so that is paro's mask with
        # the last row and column on
        mine = np.stack(doc["masks"], axis=1)
        padded = torch.ones(B, L, H, nq, nq, dtype=torch.bool)
        padded[..., 4:, 4:] = sparse["sparse"]
        padded[..., -1, :] = True
        padded[..., :, -1] = True
        want = mine.copy()
        want[..., -1, :] = True
        want[..., :, -1] = True
        self.assertTrue(np.array_equal(padded.numpy(), want))
        self.assertTrue(np.allclose(sparse["dense_rate"].numpy(),
                                    padded.float().mean(dim=(-2, -1)).numpy(), atol=1e-7))
        # the permutation their index stands for is the one paro chose
        names = [o["name"] for o in doc["orders"]]
        for h in doc["heads"]:
            slot = doc["layers"].index(h["layer"])
            index = int(permute["permute"][slot, h["head"]])
            ours = doc["perms"][names.index(h["order"])]
            theirs = their_permutation(index, doc["grid"], doc["text_tokens"])
            self.assertTrue(np.array_equal(theirs.numpy(), ours), (h["layer"], h["head"]))

    def test_plans_that_do_not_fit_are_refused(self):
        cases = [
            (dict(grid="2x8x16", text=256, block="32"), (), "64x64 blocks"),
            (dict(grid="2x8x16", text=256, position="last", block="64"), (), "text tokens first"),
            (dict(grid="2x8x16", text=130, block="64"), (), "span 3 blocks"),
        ]
        for i, (synth, extra, why) in enumerate(cases):
            with self.subTest(why=why):
                plan = pb.synth_plan(self.dir, "cap%d" % i, "p%d" % i, layers=1, heads=2, **synth)
                rc, err, out = self.export(plan, *extra)
                self.assertEqual(rc, 2, err)
                self.assertIn(why, err)
                self.assertFalse(os.path.exists(os.path.join(out, "sparse_plan.pth")))
        # a loader that pads 3 text blocks: say so and it fits
        rc, err, out = self.export(os.path.join(self.dir, "p2.paro"), "--text-blocks", 3)
        self.assertEqual(rc, 0, err)
        doc = paro_plan.load(os.path.join(self.dir, "p2.paro"), numpy=True)
        got = self.load(out)[1]["sparse"].numpy()
        self.assertEqual(doc["blocks"][0], 7)  # 130 + 256 tokens
        self.assertTrue(np.array_equal(got, np.stack(doc["masks"], axis=1)[..., 3:, 3:]))
        # a damaged plan: exit 3, with the byte offset
        bad = os.path.join(self.dir, "bad.paro")
        with open(os.path.join(self.dir, "p2.paro"), "rb") as f:
            data = bytearray(f.read())
        data[100] ^= 1
        with open(bad, "wb") as f:
            f.write(data)
        rc, err, _ = self.export(bad)
        self.assertEqual(rc, 3, err)
        self.assertRegex(err, r"at byte \d+")

    def paro_export(self, plan, out, *extra, python=None):
        """paro export PLAN --to paroattn -o OUT, with PARO_PYTHON = python
        (default: this interpreter, which has torch)."""
        env = dict(os.environ, PARO_PYTHON=python or sys.executable)
        r = subprocess.run([pb.PARO, "export", plan, "--to", "paroattn", "-o", out,
                            *map(str, extra)], capture_output=True, text=True, env=env)
        return r.returncode, r.stderr

    def test_paro_export_runs_the_script(self):
        plan = pb.synth_plan(self.dir, "cap", "p", grid="2x8x16", text=256, layers=2, heads=2,
                             block="64", extra=("--timestep-buckets", 2, "--keep-last"))
        rc, err = self.paro_export(plan, os.path.join(self.dir, "via_paro"))
        self.assertEqual(rc, 0, err)
        self.assertIn("wrote", err)  # the script's report, on stderr: stdout is for results
        rc, err, direct = self.export(plan)
        self.assertEqual(rc, 0, err)
        for name in ("permute_plan.pth", "sparse_plan.pth"):
            with open(os.path.join(self.dir, "via_paro", name), "rb") as f:
                ours = f.read()
            with open(os.path.join(direct, name), "rb") as f:
                theirs = f.read()
            self.assertEqual(ours, theirs, name)
        permute, sparse = self.load(os.path.join(self.dir, "via_paro"))
        want_p, want_s = self.load(direct)
        for got, want in ((permute, want_p), (sparse, want_s)):
            self.assertEqual(set(got), set(want))
            for k in got:
                self.assertTrue(torch.equal(got[k], want[k]), k)
        # --keep-last: what their loader makes of the files is paro's masks,
        # exactly, and dense_rate is paro's density
        doc = paro_plan.load(plan, numpy=True)
        self.assertTrue(doc["target"]["keep_last"])
        mine = np.stack(doc["masks"], axis=1)
        B, L, H, nq, _ = mine.shape
        padded = torch.ones(B, L, H, nq, nq, dtype=torch.bool)
        padded[..., 4:, 4:] = sparse["sparse"]
        padded[..., -1, :] = True
        padded[..., :, -1] = True
        self.assertTrue(np.array_equal(padded.numpy(), mine))
        density = np.zeros((B, L, H))
        for h in doc["heads"]:
            density[:, doc["layers"].index(h["layer"]), h["head"]] = h["density"]
        self.assertTrue(np.allclose(sparse["dense_rate"].numpy(), density, atol=1e-7))

    def test_paro_export_exit_status(self):
        plan = pb.synth_plan(self.dir, "cap", "p32", grid="2x8x16", text=256, layers=1, heads=2,
                             block="32")
        out = os.path.join(self.dir, "out")
        # the plan does not fit: the script's exit 2 and message
        rc, err = self.paro_export(plan, out)
        self.assertEqual(rc, 2, err)
        self.assertIn("64x64 blocks", err)
        self.assertFalse(os.path.exists(os.path.join(out, "sparse_plan.pth")))
        # --text-blocks reaches the script
        plan64 = pb.synth_plan(self.dir, "cap", "p64", block="64")
        rc, err = self.paro_export(plan64, out, "--text-blocks", 3)
        self.assertEqual(rc, 2, err)
        self.assertIn("pads 3", err)
        # no interpreter there: exit 1, saying what to set
        rc, err = self.paro_export(plan64, out, python=os.path.join(self.dir, "no-python"))
        self.assertEqual(rc, 1, err)
        self.assertIn("PARO_PYTHON", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        # a Python without torch (-S: no site packages): exit 1, one line
        bare = os.path.join(self.dir, "bare-python")
        with open(bare, "w") as f:
            f.write('#!/bin/sh\nexec "%s" -S "$@"\n' % sys.executable)
        os.chmod(bare, 0o755)
        rc, err = self.paro_export(plan64, out, python=bare)
        self.assertEqual(rc, 1, err)
        self.assertIn("needs torch", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        # a damaged plan: paro's reader says where, exit 3
        bad = os.path.join(self.dir, "bad.paro")
        with open(plan64, "rb") as f:
            data = bytearray(f.read())
        data[100] ^= 1
        with open(bad, "wb") as f:
            f.write(data)
        rc, err = self.paro_export(bad, out)
        self.assertEqual(rc, 3, err)
        self.assertRegex(err, r"at byte \d+")
        self.assertFalse(os.path.exists(os.path.join(out, "sparse_plan.pth")))

    def test_cogvideox_shape(self):
        # built from the spec (calibrating 17,776 tokens on a CPU takes minutes)
        grid, text, block = (13, 30, 45), 226, 64
        n = text + 13 * 30 * 45
        nq = -(-n // block)
        masks = [[1 if i < 4 or j < 4 or abs(i - j) <= 2 else 0 for j in range(nq)]
                 for i in range(nq)]
        plan = os.path.join(self.dir, "cog.paro")
        with open(plan, "wb") as f:
            f.write(pb.tiny_plan(masks, grid=grid, text=text, block=block))
        rc, err, out = self.export(plan)
        self.assertEqual(rc, 0, err)
        permute, sparse = self.load(out)
        self.assertEqual(tuple(sparse["sparse"].shape), (1, 1, 1, 274, 274))
        self.assertEqual(int(permute["permute"][0, 0]), THEIR_ORDERS.index("FWH"))
        got = sparse["sparse"][0, 0, 0].numpy()
        self.assertTrue(np.array_equal(got, np.array(masks, dtype=bool)[4:, 4:]))


if __name__ == "__main__":
    unittest.main(verbosity=1)
