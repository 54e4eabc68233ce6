"""Format equivalence: the same capture written by numpy as .npz (stored and
deflated), as a folder of .npy files, and as safetensors, in layouts HND and
NHD, with and without a batch dimension of 1, as f32, f16 and bf16 (raw
'<u2', '<i2', '|V2' with "dtype": "bf16"), gives a byte-identical plan.

The values come from `paro synth` (bf16) and are checked to be exactly
representable in f16, so every dtype carries the same numbers.  Also checks
that eval reads V from each container, and that a damaged or mislabelled
file is refused with exit 3.

Environment: PARO, the paro binary (default build/paro).
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

PARO = os.environ.get("PARO", "build/paro")
LAYERS, HEADS, DIM = 2, 3, 16
GRID, TEXT = (2, 4, 6), 5
N = TEXT + GRID[0] * GRID[1] * GRID[2]
ST_NAMES = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16"}

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(*args):
    return subprocess.run([PARO, *args], capture_output=True, text=True)


def read_safetensors(path):
    """name -> (dtype string, shape, raw bytes), with the stdlib."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack_from("<Q", blob)[0]
    header = json.loads(blob[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        out[name] = (t["dtype"], t["shape"], blob[8 + n + b:8 + n + e])
    return out


def write_safetensors(path, tensors):
    """tensors: list of (name, dtype name, numpy array)."""
    header, offset, chunks = {}, 0, []
    for name, dt, arr in tensors:
        data = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        chunks.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def bf16_to_f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def load_base(capture):
    """Per sample: {name: float32 [heads, N, dim]} and the raw bf16 bits."""
    with open(os.path.join(capture, "manifest.json")) as f:
        manifest = json.load(f)
    samples = []
    for s in manifest["samples"]:
        tensors = read_safetensors(os.path.join(capture, s["file"]))
        bits = {}
        for name, (dt, shape, data) in tensors.items():
            assert dt == "BF16", dt
            bits[name] = np.frombuffer(data, dtype="<u2").reshape(shape)
        samples.append(bits)
    return manifest, samples


def variant(root, label, manifest, samples, container, layout, dtype, batch=False,
            manifest_dtype=None):
    """Writes one capture; returns its manifest path."""
    folder = os.path.join(root, label)
    os.makedirs(folder)
    m = dict(manifest)
    m["layout"] = layout
    if manifest_dtype:
        m["dtype"] = manifest_dtype
    files = []
    for i, bits in enumerate(samples):
        arrays = {}
        for name, u16 in bits.items():
            if dtype == "f32":
                a = bf16_to_f32(u16)
            elif dtype == "f16":
                a = bf16_to_f32(u16).astype("<f2")
            elif dtype in ("<u2", "<i2"):
                a = u16.view(dtype)
            elif dtype == "|V2":
                a = u16.view("V2")
            else:
                raise ValueError(dtype)
            if layout == "NHD":
                a = np.ascontiguousarray(a.transpose(1, 0, 2))
            if batch:
                a = a[None]
            arrays[name] = a
        if container == "npz":
            fname = f"s{i}.npz"
            np.savez(os.path.join(folder, fname), **arrays)
        elif container == "npz-deflated":
            fname = f"s{i}.npz"
            np.savez_compressed(os.path.join(folder, fname), **arrays)
        elif container == "npy":
            fname = f"s{i}"
            os.makedirs(os.path.join(folder, fname))
            for name, a in arrays.items():
                np.save(os.path.join(folder, fname, name + ".npy"), a)
        elif container == "safetensors":
            fname = f"s{i}.safetensors"
            write_safetensors(os.path.join(folder, fname),
                              [(n, ST_NAMES[a.dtype], a) for n, a in sorted(arrays.items())])
        files.append(fname)
    m["samples"] = [dict(s, file=f) for s, f in zip(manifest["samples"], files)]
    path = os.path.join(folder, "manifest.json")
    with open(path, "w") as f:
        json.dump(m, f)
    return path


def plan_bytes(manifest_path, out):
    r = run("calibrate", "-m", manifest_path, "-o", out, "--device", "cpu", "-q")
    if r.returncode != 0:
        return None, r.stderr.strip()
    with open(out, "rb") as f:
        return f.read(), ""


def main():
    if not os.access(PARO, os.X_OK):
        print(f"SKIP: no paro binary at {PARO}")
        return 77
    root = tempfile.mkdtemp(prefix="paro-formats-")
    try:
        base_dir = os.path.join(root, "base")
        r = run("synth", "-o", base_dir, "--grid", "x".join(map(str, GRID)), "--text",
                str(TEXT), "--layers", str(LAYERS), "--heads", str(HEADS), "--head-dim",
                str(DIM), "--samples", "2", "--seed", "7", "--dtype", "bf16", "-q")
        check(r.returncode == 0, "synth writes the base capture " + r.stderr.strip())
        manifest, samples = load_base(base_dir)
        # Calibration reads Q and K only: those must be exact in f16 for the
        # f16 variants to carry the same numbers (V may round; eval below
        # uses f32 and bf16 captures only).
        f32 = np.concatenate([bf16_to_f32(b).ravel() for s in samples
                              for name, b in s.items() if not name.endswith(".v")])
        f16_exact = np.array_equal(f32.astype("<f2").astype(np.float32), f32)
        check(f16_exact, "the synth Q and K values are exact in f16 too")
        ref, err = plan_bytes(os.path.join(base_dir, "manifest.json"),
                              os.path.join(root, "base.paro"))
        check(ref is not None, "calibrate the base capture " + err)

        cases = [
            ("st-f32-hnd", "safetensors", "HND", "f32", False, None),
            ("st-f32-nhd-batch", "safetensors", "NHD", "f32", True, None),
            ("st-f16-nhd", "safetensors", "NHD", "f16", False, None),
            ("npz-f32-hnd", "npz", "HND", "f32", False, None),
            ("npz-f32-nhd", "npz", "NHD", "f32", False, None),
            ("npz-f16-hnd-batch", "npz", "HND", "f16", True, None),
            ("npz-u2-nhd-bf16", "npz", "NHD", "<u2", False, "bf16"),
            ("npzc-f32-nhd-batch", "npz-deflated", "NHD", "f32", True, None),
            ("npzc-f16-hnd", "npz-deflated", "HND", "f16", False, "f16"),
            ("npzc-i2-hnd-bf16", "npz-deflated", "HND", "<i2", True, "bf16"),
            ("npy-f32-hnd", "npy", "HND", "f32", False, "f32"),
            ("npy-f16-nhd", "npy", "NHD", "f16", False, None),
            ("npy-v2-nhd-bf16", "npy", "NHD", "|V2", True, "bf16"),
            ("npy-u2-hnd-bf16", "npy", "HND", "<u2", False, "bf16"),
        ]
        for label, container, layout, dtype, batch, mdtype in cases:
            path = variant(root, label, manifest, samples, container, layout, dtype, batch,
                           mdtype)
            got, err = plan_bytes(path, os.path.join(root, label + ".paro"))
            check(got is not None and got == ref,
                  f"{label}: plan byte-identical to the safetensors bf16 capture's {err}")

        # eval reads V from every container: same numbers.
        evals = []
        for label in ("npz-f32-hnd", "npzc-f32-nhd-batch", "npy-v2-nhd-bf16", "st-f32-hnd"):
            r = run("eval", "-m", os.path.join(root, label, "manifest.json"), "-p",
                    os.path.join(root, "base.paro"), "--samples", "0,1", "--json",
                    "--device", "cpu")
            if r.returncode != 0:
                evals.append(r.stderr)
                continue
            numbers = json.loads(r.stdout)
            del numbers["manifest"]  # the only field that names the capture
            evals.append(numbers)
        check(all(e == evals[0] for e in evals) and isinstance(evals[0], dict),
              "eval gives the same JSON from npz, deflated npz, npy folder and safetensors")

        # Refusals.
        raw = variant(root, "raw-without-dtype", manifest, samples, "npy", "HND", "<u2")
        r = run("calibrate", "-m", raw, "-o", os.path.join(root, "x.paro"))
        check(r.returncode == 3 and "\"dtype\": \"bf16\"" in r.stderr
              and not os.path.exists(os.path.join(root, "x.paro")),
              "raw '<u2' arrays without \"dtype\": \"bf16\" are refused: " + r.stderr.strip())
        wrong = variant(root, "dtype-says-f16", manifest, samples, "npz", "HND", "f32",
                        manifest_dtype="f16")
        r = run("calibrate", "-m", wrong, "-o", os.path.join(root, "x.paro"))
        check(r.returncode == 3 and "the manifest says \"dtype\": \"f16\"" in r.stderr,
              "an f32 array under \"dtype\": \"f16\" is refused: " + r.stderr.strip())
        fortran = variant(root, "fortran", manifest, samples, "npy", "HND", "f32")
        q0 = os.path.join(root, "fortran", "s0", "layers.0.q.npy")
        np.save(q0, np.asfortranarray(np.load(q0)))
        r = run("calibrate", "-m", fortran, "-o", os.path.join(root, "x.paro"))
        check(r.returncode == 3 and "Fortran order" in r.stderr,
              "a Fortran-order array is refused: " + r.stderr.strip())
        damaged = variant(root, "damaged", manifest, samples, "npz", "HND", "f32")
        z = os.path.join(root, "damaged", "s0.npz")
        with zipfile.ZipFile(z) as zf:
            info = zf.getinfo("layers.0.k.npy")
        with open(z, "r+b") as f:  # one bit of the array's data, past the npy header
            f.seek(info.header_offset + 30 + len(info.filename) + len(info.extra) + 200)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 1]))
        r = run("calibrate", "-m", damaged, "-o", os.path.join(root, "x.paro"))
        check(r.returncode == 3 and "CRC-32" in r.stderr and "layers.0.k.npy" in r.stderr,
              "a flipped bit in a stored npz member is caught by its CRC: " + r.stderr.strip())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
