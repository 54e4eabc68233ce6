"""Tests of formats/python/paro_plan.py, the stdlib-only plan reader, against
plans written by paro's C writer: load() equals `paro dump --json` key for key
and value for value, the masks equal `paro dump --json-full`'s, numpy arrays
equal the lists, and corrupt files are rejected with a byte offset.

Environment: PARO, the paro binary (default ./paro).
"""

import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plan_builder as pb  # noqa: E402

paro_plan = pb.paro_plan
READER = os.path.join(pb.ROOT, "formats", "python", "paro_plan.py")
PYTHON = sys.executable

try:
    import numpy as np
except ImportError:  # the reader works without; the numpy checks are skipped
    np = None


class CalibratedPlans(unittest.TestCase):
    """Plans from paro calibrate, in the shapes that matter for the layout."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        t = cls.tmp.name
        cls.plans = {
            "plain": pb.synth_plan(t, "cap", "plain"),
            "buckets": pb.synth_plan(t, "cap", "buckets",
                                     extra=("--timestep-buckets", 2, "--dense-until", 0.5)),
            "text_last_odd": pb.synth_plan(t, "odd", "text_last_odd", grid="3x5x7", text=5,
                                           position="last", layers=3, heads=3, block="16x8"),
            "block_16x8": pb.synth_plan(t, "cap", "block_16x8", block="16x8",
                                        extra=("--layers", "1")),
        }

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def check_plan(self, path):
        plan = paro_plan.load(path)
        masks = plan.pop("masks")
        dump = pb.dump_json(path)
        self.assertEqual(plan, dump)
        self.assertEqual(list(plan), list(dump))  # the same key order too
        for mine, theirs in zip(plan["heads"], dump["heads"]):
            self.assertEqual(list(mine), list(theirs))
        # masks against --json-full: per head, [bucket][qi][kj] of 0/1
        full = pb.dump_json(path, full=True)
        H = plan["num_heads"]
        B = plan["buckets"]["count"]
        nq, nk = plan["blocks"]
        self.assertEqual(len(masks), len(plan["layers"]))
        for i, head in enumerate(full["heads"]):
            slot, h = divmod(i, H)
            want = head.pop("masks")
            self.assertEqual(len(want), B)
            got = [[[int(x) for x in row] for row in masks[slot][b][h]] for b in range(B)]
            self.assertEqual(got, want, (slot, h))
            # density is the share of kept tiles, bucket by bucket
            for b in range(B):
                kept = sum(map(sum, want[b]))
                self.assertEqual(kept / (nq * nk), plan["heads"][i]["density"][b])
        self.assertEqual(full, dump)  # --json-full without the masks is --json
        if np is not None:
            arrays = paro_plan.load(path, numpy=True, perms=True)
            for slot, m in enumerate(arrays["masks"]):
                self.assertEqual(m.dtype, np.bool_)
                self.assertEqual(m.shape, (B, H, nq, nk))
                self.assertEqual(m.tolist(), masks[slot])
            for o, entry in enumerate(plan["orders"]):
                want = paro_plan.permutation(entry["name"], plan["grid"], plan["text_tokens"],
                                             plan["text_position"])
                self.assertEqual(arrays["perms"][o].tolist(), want)
        # the reader's command line prints the same document
        out = subprocess.run([PYTHON, READER, path], check=True, stdout=subprocess.PIPE).stdout
        self.assertEqual(json.loads(out), dump)
        out = subprocess.run([PYTHON, READER, "--json-full", path], check=True,
                             stdout=subprocess.PIPE).stdout
        self.assertEqual(json.loads(out), pb.dump_json(path, full=True))
        return plan

    def test_plans(self):
        for name, path in self.plans.items():
            with self.subTest(plan=name):
                plan = self.check_plan(path)
                tile_mass = paro_plan.load(path, tile_mass=True)["tile_mass"]
                if plan_has_tile_mass(path):  # once calibrate records them
                    self.assertEqual(len(tile_mass), len(plan["layers"]))
                else:
                    self.assertIsNone(tile_mass)
        plan = paro_plan.load(self.plans["buckets"])
        self.assertEqual(plan["buckets"]["count"], 2)
        self.assertEqual([len(h["density"]) for h in plan["heads"]], [2] * len(plan["heads"]))
        plan = paro_plan.load(self.plans["text_last_odd"])
        self.assertEqual((plan["text_position"], plan["grid"], plan["block"]),
                         ("last", [3, 5, 7], [16, 8]))
        self.assertEqual(paro_plan.load(self.plans["block_16x8"])["layers"], [1])

    def test_worked_example(self):
        """PLAN.md's hex dump is a valid plan, and reads as the text says."""
        with tempfile.TemporaryDirectory() as t:
            path = os.path.join(t, "example.paro")
            with open(path, "wb") as f:
                f.write(pb.plan_md_example())
            self.assertEqual(os.path.getsize(path), 1418)
            pb.paro("dump", "--verify", path)
            plan = self.check_plan(path)
            self.assertEqual(plan["heads"][0]["order"], "FWH")
            self.assertEqual(paro_plan.load(path)["masks"][0][0][0],
                             [[True, False, False], [True, True, False], [True, True, True]])

    def test_corruption(self):
        """Every byte of the worked example, flipped, is rejected with an offset
        (as the C reader does in tests/check_plan.c); so is every cut."""
        good = pb.plan_md_example()
        with tempfile.TemporaryDirectory() as t:
            path = os.path.join(t, "bad.paro")
            for i in range(len(good)):
                bad = bytearray(good)
                bad[i] ^= 0x10
                with open(path, "wb") as f:
                    f.write(bad)
                with self.assertRaises(paro_plan.PlanError, msg="byte %d" % i) as cm:
                    paro_plan.load(path)
                self.assertIsInstance(cm.exception, ValueError)
                self.assertIsNotNone(cm.exception.offset)
                self.assertIn("(at byte %d)" % cm.exception.offset, str(cm.exception))
            for n in list(range(0, 70)) + list(range(70, len(good), 37)):
                with open(path, "wb") as f:
                    f.write(good[:n])
                self.assertRaises(paro_plan.PlanError, paro_plan.load, path)

    def test_specific_errors(self):
        good = pb.plan_md_example()
        masks = [[1, 0, 0], [1, 1, 0], [1, 1, 1]]

        def fails(data, want):
            with tempfile.NamedTemporaryFile(suffix=".paro") as f:
                f.write(data)
                f.flush()
                with self.assertRaises(paro_plan.PlanError) as cm:
                    paro_plan.load(f.name)
                self.assertIn(want, str(cm.exception))
                # and paro's C reader refuses it too
                rc, _, err = pb.paro("dump", "--verify", f.name, check=False)
                self.assertEqual(rc, 3, err)
                return cm.exception

        self.assertEqual(fails(good + b"\0", "trailing").offset, len(good))
        self.assertEqual(fails(good[:8] + struct.pack("<H", 2) + good[10:],
                               "unsupported plan version 2.1").offset, 8)
        self.assertEqual(fails(good[:8] + struct.pack(">HH", 1, 1) + good[12:],
                               "byte-swapped").offset, 8)
        self.assertEqual(fails(b"\x97PAR\n\x1a\n" + good[8:], "bad magic").offset, 0)
        e = fails(pb.tiny_plan(masks, meta_extra={"colour": 1}), 'unknown key "colour"')
        self.assertGreater(e.offset, 0)
        fails(pb.tiny_plan(masks, extra_sections=[{"type": 99, "flags": 1, "data": b"x"}]),
              "type 99, which this reader does not know")
        fails(pb.tiny_plan(masks, head_order=2), "order index 2")
        fails(pb.tiny_plan(masks, tile_mass=[[254, 0, 0], [1, 2, 3], [4, 5, 6]]),
              "peak at level 254")
        fails(pb.tiny_plan(masks, meta_edit=lambda m: m.replace(
            b'"num_heads":1,', b'"num_heads":1,"num_heads":1,')), "duplicate key")
        fails(pb.tiny_plan(masks, meta_edit=lambda m: m.replace(b'"scale":0.5', b'"scale":NaN')),
              "not valid json")
        fails(pb.tiny_plan(masks, meta_edit=lambda m: m.replace(b'"model":"tiny"',
                                                                b'"model":"t\\u0000y"')),
              "\\u0000")
        fails(pb.tiny_plan(masks, meta_edit=lambda m: m.replace(b'"tiny"', b'"t\xc0\xafy"')),
              "invalid utf-8")
        fails(pb.tiny_plan(masks, meta_edit=lambda m: m.replace(b'"tokens":5', b'"tokens":6')),
              '"tokens" is 6')
        # a plan of a newer minor version: unknown keys and optional sections are skipped
        newer = pb.tiny_plan(masks, minor=9, meta_extra={"colour": 1},
                             extra_sections=[{"type": 99, "data": b"later"}])
        with tempfile.NamedTemporaryFile(suffix=".paro") as f:
            f.write(newer)
            f.flush()
            plan = paro_plan.load(f.name)
            plan.pop("masks")
            self.assertEqual(plan, pb.dump_json(f.name))
            self.assertNotIn("colour", plan)

    def test_bad_input_corpus(self):
        """Every plan of tests/bad/plan, which paro refuses with exit 3, is
        refused by this reader too, with a byte offset."""
        folder = os.path.join(pb.ROOT, "tests", "bad", "plan")
        names = sorted(n for n in os.listdir(folder) if n.endswith(".paro"))
        self.assertGreaterEqual(len(names), 30)
        for name in names:
            with self.assertRaises(paro_plan.PlanError, msg=name) as cm:
                paro_plan.load(os.path.join(folder, name))
            self.assertIn("(at byte %d)" % cm.exception.offset, str(cm.exception), name)

    def test_tile_mass(self):
        levels = [[255, 0, 3], [128, 200, 0], [10, 60, 255]]
        with tempfile.NamedTemporaryFile(suffix=".paro") as f:
            f.write(pb.tiny_plan([[1, 0, 0], [1, 1, 0], [1, 1, 1]], tile_mass=levels))
            f.flush()
            pb.paro("dump", "--verify", f.name)
            plan = paro_plan.load(f.name, tile_mass=True)
            self.assertEqual(plan.pop("tile_mass"), [[[levels]]])
            plan.pop("masks")
            self.assertEqual(plan, pb.dump_json(f.name))
            if np is not None:
                arr = paro_plan.load(f.name, tile_mass=True, numpy=True)["tile_mass"][0]
                self.assertEqual((arr.dtype, arr.shape), (np.uint8, (1, 1, 3, 3)))
        self.assertEqual(paro_plan.tile_mass_share(0), 0.0)
        self.assertEqual(paro_plan.tile_mass_share(255), 1.0)
        self.assertAlmostEqual(paro_plan.tile_mass_share(128), 1e-3, delta=1e-15)

    def test_reader_cli(self):
        r = subprocess.run([PYTHON, READER], stderr=subprocess.PIPE, stdout=subprocess.PIPE)
        self.assertEqual(r.returncode, 2)
        with tempfile.NamedTemporaryFile(suffix=".paro") as f:
            f.write(b"not a plan")
            f.flush()
            r = subprocess.run([PYTHON, READER, f.name], stderr=subprocess.PIPE,
                               stdout=subprocess.PIPE)
            self.assertEqual(r.returncode, 3)
            self.assertIn(b"bad magic", r.stderr)
            self.assertEqual(r.stdout, b"")


def plan_has_tile_mass(path):
    with open(path, "rb") as f:
        b = f.read()
    n, = struct.unpack_from("<I", b, 24)
    return any(struct.unpack_from("<I", b, 64 + 48 * i)[0] == 8 for i in range(n))


if __name__ == "__main__":
    unittest.main(verbosity=1)
