#!/usr/bin/env python3
"""Writes the bad-input corpus under tests/bad/ (run from anywhere):

    PARO=./paro python3 tests/bad/make.py

Each case is a broken input that paro must refuse with a precise message and
the right exit status, never a crash: manifest/NAME.json (with the good
sample file beside it), safetensors/NAME/ (a manifest and one broken sample
file), npz/NAME/ and npy/NAME/ (the same with an .npz or a folder of .npy
files), plan/NAME.paro, and links/NAME/ (symbolic links where a manifest,
sample or plan file is expected).  tests/bad/run feeds each to paro and compares the
exit status and the message with tests/bad/expected.txt.

The good inputs the cases are cut from are made with `paro synth` and
`paro calibrate`, so the corpus follows the current formats; the script is
deterministic, and its output is committed (it is also the fuzzers' seed).
"""
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import zipfile
import zlib

warnings.filterwarnings("ignore", "Duplicate name")

HERE = os.path.dirname(os.path.abspath(__file__))
PARO = os.environ.get("PARO", os.path.join(HERE, "..", "..", "paro"))


def base_capture(tmp):
    cap = os.path.join(tmp, "cap")
    subprocess.run([PARO, "-q", "synth", "-o", cap, "--grid", "1x2x2", "--text", "1",
                    "--layers", "2", "--heads", "2", "--head-dim", "4", "--samples", "1",
                    "--seed", "1", "--dtype", "f32", "--no-v"], check=True)
    plan = os.path.join(tmp, "good.paro")
    subprocess.run([PARO, "-q", "calibrate", "-m", os.path.join(cap, "manifest.json"),
                    "-o", plan, "--block", "2"], check=True)
    with open(os.path.join(cap, "manifest.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(cap, "s000.safetensors"), "rb") as f:
        sample = f.read()
    with open(plan, "rb") as f:
        plan_bytes = f.read()
    return manifest, sample, plan_bytes


# ---- manifests: text edits of a good one --------------------------------------

def manifest_cases(m):
    def edit(fn):
        d = json.loads(json.dumps(m))
        fn(d)
        return json.dumps(d)

    def drop(key):
        return edit(lambda d: d.pop(key))

    def set_(key, value):
        def fn(d):
            d[key] = value
        return edit(fn)

    def sample(key, value):
        def fn(d):
            d["samples"][0][key] = value
        return edit(fn)

    good = json.dumps(m)
    return {
        "empty": "",
        "not_json": "this is not json\n",
        "array_root": "[1, 2, 3]",
        "truncated": good[: len(good) // 2],
        "trailing_garbage": good + " }",
        "bom": "\ufeff" + good,
        "invalid_utf8": good.replace('"paro-synth"', '"paro-\udcff"'),
        "nan_literal": good.replace('"heads": 2', '"heads": NaN'),
        "missing_grid": drop("grid"),
        "missing_samples": drop("samples"),
        "unknown_key": set_("colour", "blue"),
        "case_variant_key": good.replace('"grid"', '"Grid"'),
        "duplicate_key": good.replace('"heads": 2', '"heads": 2, "heads": 3'),
        "wrong_format": set_("format", "paro-plan"),
        "version_2": set_("version", 2),
        "grid_two_axes": set_("grid", [2, 2]),
        "grid_zero_axis": set_("grid", [1, 0, 2]),
        "grid_negative": set_("grid", [1, -2, 2]),
        "grid_float": set_("grid", [1, 2.5, 2]),
        "grid_overflow": set_("grid", [65536, 65536, 65536]),
        "text_negative": set_("text_tokens", -1),
        "text_position_middle": set_("text_position", "middle"),
        "layers_zero": set_("layers", 0),
        "layers_huge": set_("layers", 10 ** 9),
        "heads_string": set_("heads", "2"),
        "head_dim_zero": set_("head_dim", 0),
        "scale_negative": set_("scale", -0.5),
        "layout_bad": set_("layout", "NDH"),
        "tensor_name_no_layer": set_("tensor_names", {"q": "layers.q"}),
        "tensor_name_unknown_kind": set_("tensor_names", {"x": "layers.{layer}.x"}),
        "steps_zero": set_("steps", 0),
        "timestep_max_zero": set_("timestep_max", 0),
        "samples_empty": set_("samples", []),
        "sample_absolute_path": sample("file", "/etc/passwd"),
        "sample_dotdot_path": sample("file", "../cap/s000.safetensors"),
        "sample_timestep_range": sample("timestep", 1200),
        "sample_prompt_negative": sample("prompt", -1),
        "sample_step_without_steps": sample("step", 3),
        "sample_unknown_key": sample("weight", 1),
        "sample_missing_file": sample("file", "nowhere.safetensors"),
        "sample_is_folder": sample("file", "."),
        # valid JSON whose shape disagrees with the tensors
        "heads_mismatch": set_("heads", 3),
        "grid_mismatch": set_("grid", [1, 2, 3]),
        "head_dim_mismatch": set_("head_dim", 8),
        "layout_mismatch": set_("layout", "NHD"),
        "layers_missing_in_file": set_("layers", 3),
        "tensor_names_absent": set_("tensor_names", {"q": "blocks.{layer}.q"}),
        "text_tokens_mismatch": set_("text_tokens", 2),
        # keys: nested duplicates and case variants (cJSON looks keys up
        # case-insensitively and returns the first duplicate)
        "sample_duplicate_key": good.replace('"file": "s000.safetensors"',
                                             '"file": "s000.safetensors", "file": "other.safetensors"'),
        "tensor_names_case_variant": set_("tensor_names", {"Q": "layers.{layer}.q"}),
        # numbers out of range
        "heads_huge": set_("heads", 5000),
        "head_dim_huge": set_("head_dim", 5000),
        "text_tokens_huge": set_("text_tokens", 2 ** 24),
        "integer_past_2p53": sample("prompt", 10 ** 16),
        "scale_overflow": good.replace('"head_dim": 4', '"head_dim": 4, "scale": 1e400'),
        "grid_past_u64": good.replace('"grid": [1, 2, 2]', '"grid": [1, 18446744073709551617, 2]'),
    }


# ---- safetensors: byte edits of a good sample file ---------------------------

def st_cases(sample):
    n = struct.unpack("<Q", sample[:8])[0]
    header = json.loads(sample[8 : 8 + n])
    data = sample[8 + n :]

    def rebuild(h, payload=data):
        raw = json.dumps(h).encode()
        raw += b" " * (-len(raw) % 8)
        return struct.pack("<Q", len(raw)) + raw + payload

    def hedit(fn):
        h = json.loads(json.dumps(header))
        fn(h)
        return rebuild(h)

    def tensor(name, key, value):
        def fn(h):
            h[name][key] = value
        return hedit(fn)

    first = "layers.0.q"
    begin = header[first]["data_offsets"][0]

    def nan_at(index, value):
        b = bytearray(sample)
        struct.pack_into("<f", b, 8 + n + begin + 4 * index, value)
        return bytes(b)

    cases = {
        "empty": b"",
        "short_length": sample[:4],
        "length_only": sample[:8],
        "cut_in_header": sample[: 8 + n // 2],
        "cut_in_data": sample[: len(sample) - 5],
        "cut_at_tensor_boundary": sample[: 8 + n + header[first]["data_offsets"][1]],
        "header_size_past_end": struct.pack("<Q", len(sample)) + sample[8:],
        "header_size_huge": struct.pack("<Q", 1 << 40) + sample[8:],
        "trailing_byte": sample + b"\0",
        "header_not_object": rebuild([1, 2]),
        "header_bad_json": sample[:8] + b"[" + sample[9:],
        "unknown_dtype": tensor(first, "dtype", "Q4"),
        "unloadable_dtype": tensor(first, "dtype", "I32"),
        "negative_shape": tensor(first, "shape", [-2, 5, 4]),
        "float_shape": tensor(first, "shape", [2, 5.5, 4]),
        "shape_product_overflow": tensor(first, "shape", [2 ** 40, 2 ** 40, 4]),
        "shape_bytes_mismatch": tensor(first, "shape", [2, 5, 2]),
        "offsets_out_of_order": tensor(first, "data_offsets", [8, 4]),
        "offsets_gap": tensor("layers.1.k", "data_offsets",
                              [header["layers.1.k"]["data_offsets"][0] + 8,
                               header["layers.1.k"]["data_offsets"][1] + 8]),
        "offsets_overlap": tensor("layers.0.k", "data_offsets",
                                  [header["layers.0.k"]["data_offsets"][0] - 8,
                                   header["layers.0.k"]["data_offsets"][1] - 8]),
        "missing_data_offsets": hedit(lambda h: h[first].pop("data_offsets")),
        "extra_field": tensor(first, "extra", 1),
        "case_variant_field": hedit(lambda h: h[first].update({"DTYPE": h[first].pop("dtype")})),
        "duplicate_name": sample[:8] + sample[8 : 8 + n].replace(b'"layers.0.k"', b'"layers.0.q"')
        + data,
        "metadata_not_strings": hedit(lambda h: h.update({"__metadata__": {"a": 1}})),
        "missing_layer_tensor": None,  # filled below: a header without layers.1.k
        "cut_after_header": sample[: 8 + n],
        "dtype_case_variant": tensor(first, "dtype", "f32"),
        "offset_past_2p64": None,
        "nan_in_q": nan_at(3, float("nan")),
        "inf_in_q": nan_at(7, float("inf")),
        "wrong_rank": None,
    }
    # Drop a tensor: rebuild header and data without it (offsets stay contiguous).
    def without(name):
        h = {}
        payload = b""
        for key in sorted(header, key=lambda k: header[k]["data_offsets"][0] if k != "__metadata__" else -1):
            if key == "__metadata__" or key == name:
                continue
            b0, b1 = header[key]["data_offsets"]
            h[key] = dict(header[key], data_offsets=[len(payload), len(payload) + b1 - b0])
            payload += data[b0:b1]
        return rebuild(h, payload)
    cases["missing_layer_tensor"] = without("layers.1.k")
    cases["wrong_rank"] = tensor(first, "shape", [10, 4])
    cases["offset_past_2p64"] = tensor(first, "data_offsets", [2 ** 64, 2 ** 64 + 160])
    return cases


# ---- npy arrays and npz archives, built with the stdlib --------------------

def npy_bytes(shape, descr="<f4", payload=None, fortran="False", version=1, dict_text=None):
    """An .npy file as numpy writes it (header padded to 64 bytes)."""
    if dict_text is None:
        dims = "".join(f"{d}, " for d in shape) if len(shape) != 1 else f"{shape[0]},"
        dims = "(" + dims.rstrip(", ") + ")" if len(shape) != 1 else "(" + dims + ")"
        dict_text = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {dims}, }}"
    head = dict_text.encode()
    fixed = 10 if version == 1 else 12
    pad = -(fixed + len(head) + 1) % 64
    head += b" " * pad + b"\n"
    size = struct.pack("<H", len(head)) if version == 1 else struct.pack("<I", len(head))
    return b"\x93NUMPY" + bytes([version, 0]) + size + head + (payload or b"")


def st_arrays(sample):
    """name -> (shape, f32 bytes) of the good sample."""
    n = struct.unpack("<Q", sample[:8])[0]
    header = json.loads(sample[8 : 8 + n])
    out = {}
    for name, t in header.items():
        if name != "__metadata__":
            b0, b1 = t["data_offsets"]
            out[name] = (t["shape"], sample[8 + n + b0 : 8 + n + b1])
    return out


def npz_bytes(members, method=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, content in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            z.writestr(info, content)
    return buf.getvalue()


def npz_cases(sample):
    arrays = st_arrays(sample)
    good = [(name + ".npy", npy_bytes(shape, payload=data)) for name, (shape, data) in
            sorted(arrays.items())]
    stored = npz_bytes(good)
    deflated = npz_bytes(good, zipfile.ZIP_DEFLATED)
    z = zipfile.ZipFile(io.BytesIO(stored))
    first = z.infolist()[0]
    data_at = first.header_offset + 30 + len(first.filename) + len(first.extra)
    zd = zipfile.ZipFile(io.BytesIO(deflated))
    dfirst = zd.infolist()[0]
    ddata_at = dfirst.header_offset + 30 + len(dfirst.filename) + len(dfirst.extra)
    cd_at = struct.unpack_from("<I", stored, len(stored) - 6)[0]

    def flip(blob, at):
        b = bytearray(blob)
        b[at] ^= 0x01
        return bytes(b)

    def put32(blob, at, value):
        b = bytearray(blob)
        struct.pack_into("<I", b, at, value)
        return bytes(b)

    def replace(name, content):
        return npz_bytes([(n, content if n == name else c) for n, c in good])

    q0 = "layers.0.q.npy"
    shape, data = arrays["layers.0.q"]
    cases = {
        "cut_in_directory": stored[:-30],
        "cut_in_member": stored[: data_at + 40],
        "member_crc": flip(stored, data_at + 140),  # in the data, past the 128-byte header
        "deflate_garbage": flip(deflated, ddata_at + 3),
        "declared_too_small": put32(deflated, struct.unpack_from("<I", deflated, len(deflated) - 6)[0] + 24, 100),
        "overlapping_members": put32(stored, cd_at + 46 + len(first.filename) + 42 + (46 - 46), 0)
        if False else put32(stored, cd_at + 46 + len(first.filename) + len(first.extra) + 42, 0),
        "encrypted": flip(stored, cd_at + 8),
        "method_lzma": put32(stored, cd_at + 10, 14 | (struct.unpack_from("<H", stored, cd_at + 12)[0] << 16)),
        "duplicate_member": npz_bytes(good + [good[0]]),
        "missing_layer": npz_bytes([m for m in good if m[0] != "layers.1.k.npy"]),
        "npy_bad_magic": replace(q0, b"\x93NUMPZ" + npy_bytes(shape, payload=data)[6:]),
        "npy_version_4": replace(q0, npy_bytes(shape, payload=data)[:6] + b"\x04\x00" + npy_bytes(shape, payload=data)[8:]),
        "npy_fortran": replace(q0, npy_bytes(shape, payload=data, fortran="True")),
        "npy_big_endian": replace(q0, npy_bytes(shape, descr=">f4", payload=data)),
        "npy_raw16_without_dtype": replace(q0, npy_bytes([2, 5, 4], descr="<u2", payload=data[:80])),
        "npy_structured": replace(q0, npy_bytes(shape, payload=data, dict_text="{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 5, 4), }")),
        "npy_shape_vs_bytes": replace(q0, npy_bytes([2, 5, 5], payload=data)),
        "npy_trailing_bytes": replace(q0, npy_bytes(shape, payload=data + b"\0\0\0\0")),
        "npy_header_len_huge": replace(q0, npy_bytes(shape, payload=data, version=2)[:8] + struct.pack("<I", 0x7fffffff) + npy_bytes(shape, payload=data, version=2)[12:]),
        "npy_cut_in_header": replace(q0, npy_bytes(shape, payload=data)[:40]),
        "npy_wrong_shape": replace(q0, npy_bytes([2, 4, 5], payload=data)),
        "npy_batch_of_2": replace(q0, npy_bytes([2, 1, 5, 4], payload=data)),
        "npy_duplicate_key": replace(q0, npy_bytes(shape, payload=data, dict_text="{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 5, 4), }")),
        "not_a_zip_named_npz": b"PK\x03\x04" + b"\0" * 40,
        "cut_at_directory": stored[:cd_at],
        "cut_in_local_header": stored[:15],
        # the directory says the first member is 2 GiB (compressed and not)
        "member_size_past_file": put32(put32(stored, cd_at + 20, 0x7fffff00), cd_at + 24, 0x7fffff00),
        "entry_count_mismatch": put32(stored, len(stored) - 22 + 8, 9 | (9 << 16)),
    }
    return cases


def npy_folder_cases(sample):
    arrays = st_arrays(sample)
    good = {name + ".npy": npy_bytes(shape, payload=data) for name, (shape, data) in arrays.items()}
    shape, data = arrays["layers.0.k"]

    def with_(name, content):
        d = dict(good)
        if content is None:
            del d[name]
        else:
            d[name] = content
        return d

    k0 = "layers.0.k.npy"
    return {
        "empty_folder": {"notes.txt": b"no arrays here\n"},  # git keeps no empty folders
        "cut_in_data": with_(k0, npy_bytes(shape, payload=data)[:-3]),
        "cut_in_header": with_(k0, npy_bytes(shape, payload=data)[:9]),
        "empty_file": with_(k0, b""),
        "missing_layer": with_("layers.1.q.npy", None),
        "f2_under_f32_dtype": with_(k0, npy_bytes(shape, descr="<f2", payload=data[: len(data) // 2])),
        "npy_object": with_(k0, npy_bytes(shape, descr="|O", payload=data)),
        "k_is_a_folder": with_(k0, "folder"),
        "nan_in_k": with_(k0, npy_bytes(shape, payload=data[:12] + struct.pack("<f", float("nan")) + data[16:])),
        "cut_after_prefix": with_(k0, npy_bytes(shape, payload=data)[:10]),
        "header_only": with_(k0, npy_bytes(shape)),
        "shape_overflow": with_(k0, npy_bytes([2 ** 40, 2 ** 40, 4], payload=data)),
        "complex_dtype": with_(k0, npy_bytes(shape, descr="<c8", payload=data + data)),
    }


# ---- plans: byte edits of a good plan ----------------------------------------

def plan_cases(plan):
    n_sections = struct.unpack_from("<I", plan, 24)[0]
    table_end = 64 + 48 * n_sections

    def flip(at):
        b = bytearray(plan)
        b[at] ^= 0x01
        return bytes(b)

    first_section = struct.unpack_from("<Q", plan, 64 + 8)[0]
    last_entry = 64 + 48 * (n_sections - 1)
    last_section = struct.unpack_from("<Q", plan, last_entry + 8)[0]
    meta_len = struct.unpack_from("<Q", plan, 64 + 16)[0]

    def resign(b):
        """The CRC-32s made right again (each section's, then the header's),
        so that an edit reaches the checks behind them."""
        b = bytearray(b)
        n = struct.unpack_from("<I", b, 24)[0]
        for i in range(min(n, (len(b) - 64) // 48)):
            e = 64 + 48 * i
            off, length = struct.unpack_from("<QQ", b, e + 8)
            if off + length <= len(b):
                struct.pack_into("<I", b, e + 36, zlib.crc32(bytes(b[off : off + length])))
        struct.pack_into("<I", b, 48, 0)
        table = bytes(b[64 : 64 + 48 * n])
        struct.pack_into("<I", b, 48, zlib.crc32(table, zlib.crc32(bytes(b[:64]))))
        return bytes(b)

    def entry(i, *fields):
        """Section table entry i with fields (offset in the entry, struct
        format, value) set."""
        b = bytearray(plan)
        for at, fmt, value in fields:
            struct.pack_into(fmt, b, 64 + 48 * i + at, value)
        return resign(b)

    def swap_entries(i, j):
        b = bytearray(plan)
        a0, b0 = 64 + 48 * i, 64 + 48 * j
        b[a0 : a0 + 48], b[b0 : b0 + 48] = plan[b0 : b0 + 48], plan[a0 : a0 + 48]
        return resign(b)

    def meta(old, new):
        """META with one edit of the same length, so no offset moves."""
        assert len(old) == len(new)
        m = plan[first_section : first_section + meta_len]
        assert m.count(old) == 1, old
        return resign(plan[:first_section] + m.replace(old, new) + plan[first_section + meta_len :])

    return {
        "empty": b"",
        "not_a_plan": b"hello, I am not a plan\n",
        "cut_in_header": plan[:40],
        "cut_in_table": plan[: table_end - 10],
        "cut_in_section": plan[: first_section + 20],
        "cut_one_byte": plan[:-1],
        "trailing_byte": plan + b"\0",
        "bad_magic": b"\x97PAR\r\n\x1a\r" + plan[8:],
        "major_2": plan[:8] + struct.pack("<H", 2) + plan[10:],
        "byte_swapped": plan[:8] + struct.pack(">H", 1) + plan[10:],
        "header_crc": flip(50),
        "table_entry": flip(64 + 48 + 9),
        "meta_byte": flip(first_section + 10),
        "last_byte": flip(len(plan) - 1),
        # cut at the structural boundaries
        "cut_after_header": plan[:64],
        "cut_after_table": plan[:table_end],
        "cut_at_last_section": plan[:last_section],
        # hostile section tables behind right checksums
        "n_sections_huge": resign(plan[:24] + struct.pack("<I", 70000) + plan[28:]),
        "section_offset_overflow": entry(n_sections - 1, (8, "<Q", 2 ** 64 - 64)),
        "section_length_overflow": entry(n_sections - 1, (16, "<Q", 2 ** 64 - 1)),
        "sections_overlap": entry(1, (8, "<Q", first_section)),
        "sections_out_of_order": swap_entries(1, 2),
        "unknown_codec": entry(1, (32, "<I", 7)),
        "unknown_required_section": entry(5, (0, "<I", 99), (4, "<I", 1)),
        "inflate_ratio": entry(5, (24, "<Q", 2 ** 40)),
        "masks_layer_missing": entry(n_sections - 1, (40, "<I", 5)),
        # metadata behind right checksums
        "meta_duplicate_key": meta(b'"seed":0', b'"tool":0'),
        "meta_case_variant_key": meta(b'"seed":0', b'"Seed":0'),
        "meta_tokens_mismatch": meta(b'"tokens":5', b'"tokens":6'),
        "meta_value_out_of_range": meta(b'"value":0.25', b'"value":7.25'),
    }


# ---- symbolic links where files are expected --------------------------------

class Link(str):
    """A symbolic link to this target."""


def link_cases(manifest, sample):
    good = json.dumps(manifest)
    npy_manifest = json.dumps(dict(manifest, samples=[dict(manifest["samples"][0], file="s000")]))
    npy_files = {"s000/" + name + ".npy": npy_bytes(shape, payload=data)
                 for name, (shape, data) in st_arrays(sample).items()}
    return {
        "manifest_to_folder": {"manifest.json": Link(".")},
        "manifest_dangling": {"manifest.json": Link("nowhere.json")},
        "manifest_loop": {"manifest.json": Link("manifest.json")},
        "sample_dangling": {"manifest.json": good, "s000.safetensors": Link("nowhere.safetensors")},
        "sample_loop": {"manifest.json": good, "s000.safetensors": Link("s000.safetensors")},
        "sample_to_device": {"manifest.json": good, "s000.safetensors": Link("/dev/null")},
        "npy_loop": dict(npy_files, **{"manifest.json": npy_manifest,
                                       "s000/layers.0.k.npy": Link("layers.0.k.npy")}),
        "plan_to_folder": {"plan.paro": Link(".")},
        "plan_dangling": {"plan.paro": Link("nowhere.paro")},
    }


def write(path, content):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "wb" if isinstance(content, bytes) else "w"
    with open(path, mode, **({} if mode == "wb" else {"encoding": "utf-8", "errors": "surrogateescape"})) as f:
        f.write(content)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        manifest, sample, plan = base_capture(tmp)
    for sub in ("manifest", "safetensors", "plan"):
        shutil.rmtree(os.path.join(HERE, sub), ignore_errors=True)
    write(os.path.join(HERE, "manifest", "s000.safetensors"), sample)
    for name, text in manifest_cases(manifest).items():
        write(os.path.join(HERE, "manifest", name + ".json"), text)
    for name, content in st_cases(sample).items():
        write(os.path.join(HERE, "safetensors", name, "manifest.json"), json.dumps(manifest))
        write(os.path.join(HERE, "safetensors", name, "s000.safetensors"), content)
    for name, content in plan_cases(plan).items():
        write(os.path.join(HERE, "plan", name + ".paro"), content)
    for sub in ("npz", "npy"):
        shutil.rmtree(os.path.join(HERE, sub), ignore_errors=True)
    for name, content in npz_cases(sample).items():
        write(os.path.join(HERE, "npz", name, "manifest.json"),
              json.dumps(dict(manifest, samples=[dict(manifest["samples"][0], file="s000.npz")])))
        write(os.path.join(HERE, "npz", name, "s000.npz"), content)
    for name, files in npy_folder_cases(sample).items():
        m = dict(manifest, samples=[dict(manifest["samples"][0], file="s000")])
        if name == "f2_under_f32_dtype":
            m["dtype"] = "f32"
        write(os.path.join(HERE, "npy", name, "manifest.json"), json.dumps(m))
        os.makedirs(os.path.join(HERE, "npy", name, "s000"), exist_ok=True)
        for fname, content in files.items():
            path = os.path.join(HERE, "npy", name, "s000", fname)
            if content == "folder":
                os.makedirs(path, exist_ok=True)
                write(os.path.join(path, "keep"), b"")
            else:
                write(path, content)
    shutil.rmtree(os.path.join(HERE, "links"), ignore_errors=True)
    for name, files in link_cases(manifest, sample).items():
        for fname, content in files.items():
            path = os.path.join(HERE, "links", name, fname)
            if isinstance(content, Link):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.symlink(content, path)
            else:
                write(path, content)
    print(f"{len(manifest_cases(manifest)) + len(st_cases(sample)) + len(plan_cases(plan)) + len(npz_cases(sample)) + len(npy_folder_cases(sample)) + len(link_cases(manifest, sample))} cases",
          file=sys.stderr)


if __name__ == "__main__":
    main()
