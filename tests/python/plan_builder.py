"""Helpers shared by the Python tests of plans: running paro, making plans
with `paro synth` + `paro calibrate`, writing plans byte by byte from
formats/PLAN.md (a second writer, independent of paro's), reading the worked
example's hex dump, and a PNG decoder written from the PNG spec.

Environment: PARO, the paro binary (default ./paro in the repository root).
"""

import json
import os
import struct
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PARO = os.path.abspath(os.environ.get("PARO", os.path.join(ROOT, "paro")))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(ROOT, "formats", "python"))
import paro_plan  # noqa: E402


def paro(*args, check=True, quiet=True):
    """Runs paro [-q] ARGS; returns (exit status, stdout bytes, stderr text)."""
    r = subprocess.run([PARO] + (["-q"] if quiet else []) + [str(a) for a in args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        raise AssertionError("paro %s: exit %d: %s" % (" ".join(map(str, args)), r.returncode,
                                                       r.stderr.decode()))
    return r.returncode, r.stdout, r.stderr.decode()


def dump_json(path, full=False):
    return json.loads(paro("dump", "--json-full" if full else "--json", path)[1])


def synth_plan(tmp, capture, name, grid="2x6x8", text=8, position="first", layers=2, heads=4,
               samples=2, block="16", extra=()):
    """tmp/name.paro: paro calibrate's plan of the capture tmp/capture, which
    paro synth makes the first time (the other options are only used then)."""
    cap = os.path.join(tmp, capture)
    if not os.path.exists(os.path.join(cap, "manifest.json")):
        paro("synth", "-o", cap, "--grid", grid, "--text", text, "--text-position", position,
             "--layers", layers, "--heads", heads, "--head-dim", 16, "--samples", samples,
             "--seed", 5, "--dtype", "f32")
    plan = os.path.join(tmp, name + ".paro")
    paro("calibrate", "-m", os.path.join(cap, "manifest.json"), "-o", plan, "--block", block,
         "-j", 2, *extra)
    return plan


# ---- writing plans from the spec ---------------------------------------------

MAGIC = b"\x97PAR\r\n\x1a\n"


def layout(sections, minor=1, header_size=64, entry_size=48):
    """The bytes of a plan made of sections, each a dict with type, data (the
    raw bytes), and optionally flags, codec (0 or 1: zlib level 9), index:
    PLAN.md sections 2 to 5, with every CRC."""
    stored = []
    for s in sections:
        raw = s["data"]
        codec = s.get("codec", 0)
        stored.append((zlib.compress(raw, 9) if codec == 1 else raw, len(raw), codec))
    table_end = header_size + len(sections) * entry_size
    pos, offsets = table_end, []
    for data, _, _ in stored:
        pos = (pos + 63) & ~63
        offsets.append(pos)
        pos += len(data)
    file_size = pos if sections else table_end
    out = bytearray(file_size)
    struct.pack_into("<8sHHIIIIIQQ", out, 0, MAGIC, 1, minor, header_size, 0, 0, len(sections),
                     entry_size, header_size, file_size)
    for i, (s, (data, raw_len, codec)) in enumerate(zip(sections, stored)):
        e = header_size + i * entry_size
        struct.pack_into("<IIQQQIII", out, e, s["type"], s.get("flags", 0), offsets[i], len(data),
                         raw_len, codec, zlib.crc32(data), s.get("index", 0))
        out[offsets[i]:offsets[i] + len(data)] = data
    struct.pack_into("<I", out, 48, zlib.crc32(bytes(out[:table_end])))
    return bytes(out)


def pack_bits(bits):
    """Bits LSB first, as PLAN.md's MASKS."""
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        if b:
            out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


def tiny_plan(masks, head_order=1, tile_mass=None, grid=(1, 2, 2), text=1, block=2, minor=1,
              extra_sections=(), meta_extra=None, meta_edit=None):
    """A one-layer, one-head, one-bucket plan with the orders FHW and FWH, as
    in PLAN.md's worked example; masks: nq x nk lists of 0/1; tile_mass: the
    same shape of levels 0..255, or None.  meta_extra: keys to add to META;
    meta_edit: a function applied to META's bytes."""
    F, H, W = grid
    n = text + F * H * W
    nq = -(-n // block)
    meta = {"tool": "paro 0.1.0", "model": "tiny", "backend": "cpu", "grid": list(grid),
            "text_tokens": text, "text_position": "first", "tokens": n, "num_heads": 1,
            "head_dim": 4, "scale": 0.5, "model_layers": 1, "layers": [0],
            "block": [block, block], "blocks": [nq, nq],
            "orders": [{"kind": "axes", "name": "FHW"}, {"kind": "axes", "name": "FWH"}],
            "metric": {"alpha": 0.5, "score_recall": 0.95},
            "target": {"mode": "density", "value": 0.5, "keep_text": True},
            "buckets": {"count": 1, "edges": [0.0, 1.0], "dense_until": 0.0},
            "samples": [{"index": 0, "prompt": 0, "timestep": 999.0, "bucket": 0}],
            "seed": 0, "inputs": {"layer_crc32": ["1234abcd"]}}
    meta.update(meta_extra or {})
    kept = sum(map(sum, masks))
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode()
    sections = [
        {"type": 1, "flags": 1, "data": meta_edit(meta_bytes) if meta_edit else meta_bytes},
        {"type": 2, "flags": 1, "data": bytes([head_order])},
        {"type": 3, "flags": 1, "data": struct.pack("<6d", 0.5, 1.25, 1.0, 0.25, 1.5, 0.0)},
        {"type": 4, "flags": 1, "data": struct.pack("<d", kept / (nq * nq))},
        {"type": 5, "flags": 1, "data": struct.pack("<d", 0.75)}]
    for o, name in enumerate(("FHW", "FWH")):
        perm = paro_plan.permutation(name, grid, text, "first")
        sections.append({"type": 6, "codec": 1, "index": o,
                         "data": struct.pack("<%dI" % n, *perm)})
    sections.append({"type": 7, "flags": 1, "codec": 1, "index": 0,
                     "data": pack_bits([b for row in masks for b in row])})
    if tile_mass is not None:
        sections.append({"type": 8, "codec": 1, "index": 0,
                         "data": bytes(v for row in tile_mass for v in row)})
    sections.extend(extra_sections)
    return layout(sections, minor=minor)


def plan_md_example():
    """The bytes of the worked example's hex dump in formats/PLAN.md."""
    out = bytearray()
    with open(os.path.join(ROOT, "formats", "PLAN.md")) as f:
        for line in f:
            parts = line.split(":", 1)
            head = parts[0].split()
            if len(parts) < 2 or len(head) != 2 or len(head[0]) != 5:
                continue
            try:
                hex_off, dec_off = int(head[0], 16), int(head[1])
            except ValueError:
                continue
            if hex_off != dec_off or hex_off != len(out):
                continue
            out.extend(bytes.fromhex(parts[1][:50].strip()))
    return bytes(out)


# ---- PNG ------------------------------------------------------------------------

def png_decode(data):
    """(width, height, rows of (r, g, b) tuples) of an 8-bit RGB PNG; checks
    the signature, each chunk's CRC, IHDR first and IEND last."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    at, idat, chunks = 8, b"", []
    while at < len(data):
        n, = struct.unpack_from(">I", data, at)
        ctype = data[at + 4:at + 8]
        body = data[at + 8:at + 8 + n]
        crc, = struct.unpack_from(">I", data, at + 8 + n)
        assert crc == zlib.crc32(ctype + body), "bad CRC in chunk %r" % ctype
        chunks.append(ctype)
        if ctype == b"IHDR":
            w, h, depth, colour, comp, filt, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, colour, comp, filt, interlace) == (8, 2, 0, 0, 0)
        elif ctype == b"IDAT":
            idat += body
        at += 12 + n
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and at == len(data)
    raw = zlib.decompress(idat)
    stride = 3 * w
    assert len(raw) == (stride + 1) * h
    rows, prev = [], bytearray(stride)
    for y in range(h):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - 3] if i >= 3 else 0
            b = prev[i]
            c = prev[i - 3] if i >= 3 else 0
            if ftype == 0:
                pred = 0
            elif ftype == 1:
                pred = a
            elif ftype == 2:
                pred = b
            elif ftype == 3:
                pred = (a + b) // 2
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            else:
                raise AssertionError("filter type %d" % ftype)
            line[i] = (line[i] + pred) & 0xFF
        rows.append([tuple(line[3 * x:3 * x + 3]) for x in range(w)])
        prev = line
    return w, h, rows
