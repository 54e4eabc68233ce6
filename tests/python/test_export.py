"""Tests of `paro export`: the npz loads in numpy (allow_pickle=False, no
warnings) with exactly the documented keys, shapes, dtypes and values (checked
against the stdlib plan reader), each .npy member is byte for byte what
numpy.save writes; the safetensors file parses with a few lines of struct and
json (and feeds torch where it is installed); the JSON has the same numbers.

Environment: PARO, the paro binary (default ./paro).
"""

import io
import json
import os
import struct
import sys
import tempfile
import unittest
import warnings
import zipfile

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plan_builder as pb  # noqa: E402

paro_plan = pb.paro_plan

KEYS = ["order_names", "layers", "orders", "perms", "masks", "kv_num_blocks", "kv_indices",
        "density", "recall"]


def expected_arrays(path):
    """What the export must hold, from the plan as the stdlib reader sees it."""
    plan = paro_plan.load(path, numpy=True, perms=True)
    L, H = len(plan["layers"]), plan["num_heads"]
    names = [o["name"] for o in plan["orders"]]
    masks = np.stack(plan["masks"], axis=1)  # [B, L, H, nq, nk]
    nk = masks.shape[-1]
    kv_num = masks.sum(axis=-1, dtype=np.int32)
    kv_idx = np.zeros(masks.shape, dtype=np.int32)
    for index in np.ndindex(*masks.shape[:-1]):
        kept = np.flatnonzero(masks[index])
        kv_idx[index][:len(kept)] = kept
    heads = plan["heads"]
    B = plan["buckets"]["count"]

    def per_bucket(key):
        return np.array([[[heads[slot * H + h][key][b] for h in range(H)] for slot in range(L)]
                         for b in range(B)], dtype=np.float32)

    assert kv_idx.shape[-1] == nk
    return {
        "order_names": np.array(names, dtype="<U3"),
        "layers": np.array(plan["layers"], dtype=np.int32),
        "orders": np.array([[names.index(heads[slot * H + h]["order"]) for h in range(H)]
                            for slot in range(L)], dtype=np.int8),
        "perms": np.array(plan["perms"], dtype=np.int32),
        "masks": masks,
        "kv_num_blocks": kv_num,
        "kv_indices": kv_idx,
        "density": per_bucket("density"),
        "recall": per_bucket("recall"),
    }


SAFETENSORS_LIBRARY_CHECKED = []  # plans the safetensors package loaded


def read_safetensors(path):
    """(metadata, {name: numpy array}) with struct and json alone."""
    dtypes = {"I8": np.int8, "I32": np.int32, "BOOL": np.bool_, "F32": np.float32}
    with open(path, "rb") as f:
        data = f.read()
    n, = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__")
    base = 8 + n
    arrays = {}
    ends = []
    for name, t in header.items():
        begin, end = t["data_offsets"]
        ends.append((begin, end))
        arrays[name] = np.frombuffer(data[base + begin:base + end],
                                     dtype=np.dtype(dtypes[t["dtype"]]).newbyteorder("<")
                                     ).reshape(t["shape"])
    # contiguous from 0 to the end of the file, in header order
    assert [b for b, _ in ends] == [0] + [e for _, e in ends[:-1]]
    assert base + ends[-1][1] == len(data)
    return meta, arrays


class Export(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        t = cls.dir = cls.tmp.name
        cls.plans = {
            "buckets": pb.synth_plan(t, "cap", "buckets",
                                     extra=("--timestep-buckets", 2, "--dense-until", 0.5)),
            "text_last_odd_16x8": pb.synth_plan(t, "odd", "odd", grid="3x5x7", text=5,
                                                position="last", layers=3, heads=3,
                                                block="16x8", extra=("--layers", "0,2")),
        }
        example = os.path.join(t, "example.paro")
        with open(example, "wb") as f:
            f.write(pb.plan_md_example())
        cls.plans["worked_example"] = example

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def export(self, plan, name, *args):
        out = os.path.join(self.dir, name)
        pb.paro("export", plan, "-o", out, *args)
        return out

    def check_arrays(self, got, want, json_numbers=False):
        self.assertEqual(list(got), KEYS)
        for key in KEYS:
            g, w = got[key], want[key]
            if json_numbers:  # lists from JSON: as the documented dtype
                g = np.array(g, dtype=w.dtype)
            self.assertEqual((g.dtype, g.shape), (w.dtype, w.shape), key)
            self.assertTrue(np.array_equal(g, w), key)

    def test_npz(self):
        for name, plan in self.plans.items():
            want = expected_arrays(plan)
            B, L, H = want["density"].shape
            for compress in (False, True):
                with self.subTest(plan=name, compress=compress):
                    out = self.export(plan, "%s%s.npz" % (name, "-z" if compress else ""),
                                      *(["--compress"] if compress else []))
                    with zipfile.ZipFile(out) as z:
                        self.assertIsNone(z.testzip())
                        self.assertEqual(z.namelist(), [k + ".npy" for k in KEYS])
                        method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
                        self.assertEqual({i.compress_type for i in z.infolist()}, {method})
                        # each member is what numpy.save writes for the array
                        for k in KEYS:
                            buf = io.BytesIO()
                            np.save(buf, want[k])
                            self.assertEqual(z.read(k + ".npy"), buf.getvalue(), k)
                    with warnings.catch_warnings():
                        warnings.simplefilter("error")
                        with np.load(out, allow_pickle=False) as d:
                            got = {k: d[k] for k in d.files}
                    self.check_arrays(got, want)
                    nq, nk = got["masks"].shape[-2:]
                    self.assertEqual(got["masks"].shape, (B, L, H, nq, nk))
                    self.assertEqual(got["kv_indices"].shape, (B, L, H, nq, nk))
                    self.assertEqual(got["kv_num_blocks"].shape, (B, L, H, nq))
                    N = paro_plan.load(plan)["tokens"]
                    self.assertEqual(got["perms"].shape, (len(got["order_names"]), N))
            # the same plan, the same bytes
            again = self.export(plan, "again.npz")
            with open(again, "rb") as f1, open(self.export(plan, "again2.npz"), "rb") as f2:
                self.assertEqual(f1.read(), f2.read())

    def test_safetensors(self):
        for name, plan in self.plans.items():
            with self.subTest(plan=name):
                out = self.export(plan, name + ".safetensors")
                meta, arrays = read_safetensors(out)
                self.assertEqual(meta, {"order_names": json.dumps(
                    [o["name"] for o in paro_plan.load(plan)["orders"]], separators=(",", ":"))})
                got = {"order_names": np.array(json.loads(meta["order_names"]), dtype="<U3")}
                got.update(arrays)
                self.check_arrays(got, expected_arrays(plan))
                # the safetensors library itself, where installed (the GPU
                # machine has it): the same arrays and metadata, no warning
                try:
                    from safetensors import safe_open
                    from safetensors.numpy import load_file
                except ImportError:
                    pass
                else:
                    with warnings.catch_warnings():
                        warnings.simplefilter("error")
                        loaded = load_file(out)
                        with safe_open(out, framework="np") as f:
                            self.assertEqual(f.metadata(), meta)
                    self.assertEqual(sorted(loaded), sorted(arrays))
                    for key, value in arrays.items():
                        self.assertEqual(loaded[key].dtype, value.dtype, key)
                        self.assertTrue(np.array_equal(loaded[key], value), key)
                    SAFETENSORS_LIBRARY_CHECKED.append(name)
                try:
                    import torch
                except ImportError:
                    continue
                masks = torch.from_numpy(arrays["masks"].copy())
                kv = torch.from_numpy(arrays["kv_indices"].copy())
                self.assertEqual(masks.dtype, torch.bool)
                self.assertEqual(kv.dtype, torch.int32)
                self.assertEqual(tuple(kv.shape), arrays["kv_indices"].shape)
                self.assertTrue(torch.equal(masks.sum(-1, dtype=torch.int32),
                                            torch.from_numpy(arrays["kv_num_blocks"].copy())))

    def test_json(self):
        for name, plan in self.plans.items():
            with self.subTest(plan=name):
                out = self.export(plan, name + ".json", "--to", "json")
                with open(out) as f:
                    got = json.load(f)
                self.check_arrays(got, expected_arrays(plan), json_numbers=True)
                self.assertIsInstance(got["masks"][0][0][0][0][0], bool)

    def test_format_from_extension_and_errors(self):
        plan = self.plans["worked_example"]
        out = self.export(plan, "by-extension.safetensors")
        self.assertEqual(read_safetensors(out)[1]["masks"].shape, (1, 1, 1, 3, 3))
        target = os.path.join(self.dir, "never.npz")
        for args, code, want in (
                ((plan, "-o", target, "--to", "pth"), 2, "--to pth: the formats are npz, json"),
                ((plan, "-o", os.path.join(self.dir, "x.bin")), 2, "cannot tell the format"),
                ((plan, "--to", "npz"), 2, "-o FILE is required"),
                ((plan, "-o", "-", "--to", "npz"), 2, "cannot write to stdout"),
                ((plan, "-o", target, "--to", "json", "--compress"), 2,
                 "--compress applies to npz"),
                (("-o", target), 2, "a plan file is required"),
                ((os.path.join(self.dir, "missing.paro"), "-o", target), 1, "cannot open")):
            rc, stdout, err = pb.paro("export", *args, check=False)
            self.assertEqual(rc, code, (args, err))
            self.assertIn(want, err)
            self.assertEqual(stdout, b"")
            self.assertFalse(os.path.exists(target))
        # a corrupt plan: exit 3, nothing written
        bad = bytearray(pb.plan_md_example())
        bad[700] ^= 1
        path = os.path.join(self.dir, "bad.paro")
        with open(path, "wb") as f:
            f.write(bad)
        rc, _, err = pb.paro("export", path, "-o", target, check=False)
        self.assertEqual(rc, 3)
        self.assertIn("checksum mismatch", err)
        self.assertFalse(os.path.exists(target))


if __name__ == "__main__":
    result = unittest.main(verbosity=1, exit=False).result
    print("safetensors library: " + (f"loaded {len(SAFETENSORS_LIBRARY_CHECKED)} exports"
                                     if SAFETENSORS_LIBRARY_CHECKED else "not installed here"))
    sys.exit(not result.wasSuccessful())
