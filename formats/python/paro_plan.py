"""Read a paro plan file (formats/PLAN.md) with the Python standard library.

    import paro_plan
    plan = paro_plan.load("model.paro")
    plan["heads"][0]["order"]         # the `paro dump --json` document, as a dict ...
    plan["masks"][0][0][3]            # ... plus the masks: per layer slot, [bucket][head][qi][kj]
    plan = paro_plan.load("model.paro", numpy=True)   # masks as numpy bool arrays

    python3 paro_plan.py model.paro   # prints the `paro dump --json` document

load() returns exactly the keys and values `paro dump --json` prints (schema
paro-plan/v1: "schema", the metadata keys, "heads") plus "masks"; perms=True
adds "perms" (per order, the capture index at each permuted position) and
tile_mass=True adds "tile_mass" (per layer slot, [bucket][head][qi][kj] levels
0..255, or None when the plan has none; see tile_mass_share).

Like paro's C reader, it checks everything that matters for safety before
trusting a byte: magic, version, flags, sizes, the coverage of the file by its
sections, padding, every CRC-32, section types and order, the metadata
(strict JSON and the rules of PLAN.md section 7), section lengths against the
metadata, exact zlib streams, and the contents (order indices, finite scores,
density and recall in [0, 1], permutations, mask padding bits, tile-mass
levels).  A bad file raises PlanError (a ValueError) whose message ends with
the byte offset, as paro's do.  numpy is used only when asked for.
"""

import json
import math
import struct
import sys
import zlib

MAGIC = b"\x97PAR\r\n\x1a\n"
MAJOR, MINOR = 1, 2  # the format version this reader implements
SCHEMA = "paro-plan/v1"

META, HEAD_ORDER, SCORES, DENSITY, RECALL, PERM, MASKS, TILEMASS = range(1, 9)
SECTION_NAMES = {META: "META", HEAD_ORDER: "HEAD_ORDER", SCORES: "SCORES",
                 DENSITY: "DENSITY", RECALL: "RECALL", PERM: "PERM", MASKS: "MASKS",
                 TILEMASS: "TILEMASS"}
OPTIONAL_TYPES = (PERM, TILEMASS)  # known types without the required bit
REQUIRED = 1

HEADER_SIZE, ENTRY_SIZE, ALIGN = 64, 48, 64
MAX_HEADER_SIZE = 65536
MAX_SECTIONS = 65536
MAX_JSON = 16 << 20
MAX_JSON_DEPTH = 32
MAX_NUMBER_CHARS = 63
MAX_ORDERS = 255
MAX_BLOCKS = 65536
MAX_BUCKETS = 1024
MAX_INT = 2 ** 53
ZLIB_MAX_RATIO = 1032
AXES_NAMES = ("FHW", "FWH", "HFW", "HWF", "WFH", "WHF")
TILE_MASS_DECADES = 6

# The metadata keys in the order paro writes them, with those of the nested objects.
META_KEYS = ("tool", "model", "backend", "grid", "text_tokens", "text_position", "tokens",
             "num_heads", "head_dim", "scale", "model_layers", "layers", "block", "blocks",
             "orders", "metric", "target", "buckets", "samples", "seed", "inputs")
NESTED_KEYS = {"orders": ("kind", "name"), "metric": ("alpha", "score_recall"),
               "target": ("mode", "value", "keep_text", "keep_last"),
               "buckets": ("count", "edges", "dense_until"),
               "samples": ("index", "prompt", "timestep", "step", "bucket"),
               "inputs": ("layer_crc32",)}


class PlanError(ValueError):
    """A plan the reader rejects; .offset is the byte offset (or None)."""

    def __init__(self, path, message, offset=None):
        self.path, self.offset = path, offset
        where = "" if offset is None else " (at byte %d)" % offset
        super().__init__("%s: %s%s" % (path, message, where))


def _align64(x):
    return (x + ALIGN - 1) & ~(ALIGN - 1)


def permutation(name, grid, text_tokens, text_position):
    """PLAN.md 8.1: perm[p] = capture index of the token at permuted position p
    for the axis order `name` ("HWF": h outermost, f innermost)."""
    F, H, W = grid
    size = {"F": F, "H": H, "W": W}
    stride = {"F": H * W, "H": W, "W": 1}
    text_first = text_position == "first"
    base = text_tokens if text_first else 0
    perm = list(range(text_tokens)) if text_first else []
    a, b, c = name
    for i in range(size[a]):
        for j in range(size[b]):
            for k in range(size[c]):
                perm.append(base + i * stride[a] + j * stride[b] + k * stride[c])
    if not text_first:
        perm.extend(range(F * H * W, F * H * W + text_tokens))
    return perm


def tile_mass_share(level):
    """The mass relative to the head's largest tile that a TILEMASS level stands
    for (PLAN.md "TILEMASS"): 0 for level 0 (below 1e-6 or no mass)."""
    if level == 0:
        return 0.0
    return 10.0 ** (TILE_MASS_DECADES * (level - 1) / 254.0 - TILE_MASS_DECADES)


class _Reader:
    def __init__(self, data, path):
        self.b, self.path = data, path

    def fail(self, message, offset=None):
        raise PlanError(self.path, message, offset)

    # ---- header, table, coverage, CRCs (PLAN.md 3-5) ----

    def header(self):
        b = self.b
        if not b:
            self.fail("file is empty", 0)
        if b[:8] != MAGIC:
            if len(b) < 8 and MAGIC.startswith(b):
                self.fail("file is truncated: %d bytes, shorter than the header" % len(b), len(b))
            if len(b) >= 4 and (b[0] & 0x7F) == 0x17 and b[1:4] == b"PAR":
                self.fail("bad magic: the file was damaged by a text-mode transfer", 0)
            self.fail("not a paro plan (bad magic)", 0)
        if len(b) < HEADER_SIZE:
            self.fail("file is truncated: %d bytes, shorter than the header" % len(b), len(b))
        (self.major, self.minor, self.header_size, required, _optional, self.n_sec,
         self.entry_size, table, file_size, stored_crc) = struct.unpack_from("<HHIIIIIQQI", b, 8)
        if self.major != MAJOR:
            if self.major and self.major & 0xFF == 0:
                self.fail("version %d.%d: byte-swapped file? plans are little-endian"
                          % (self.major, self.minor), 8)
            self.fail("unsupported plan version %d.%d: this reader reads version %d.x"
                      % (self.major, self.minor, MAJOR), 8)
        self.lenient = self.minor > MINOR
        if not HEADER_SIZE <= self.header_size <= MAX_HEADER_SIZE:
            self.fail("header_size %d is not in [%d, %d]"
                      % (self.header_size, HEADER_SIZE, MAX_HEADER_SIZE), 12)
        if self.n_sec > MAX_SECTIONS:
            self.fail("%d sections exceed the limit of %d" % (self.n_sec, MAX_SECTIONS), 24)
        if not ENTRY_SIZE <= self.entry_size <= MAX_HEADER_SIZE:
            self.fail("section_entry_size %d is not in [%d, %d]"
                      % (self.entry_size, ENTRY_SIZE, MAX_HEADER_SIZE), 28)
        if table != self.header_size:
            self.fail("section_table_offset %d differs from header_size %d"
                      % (table, self.header_size), 32)
        if file_size > len(b):
            self.fail("file is truncated: the header says %d bytes, found %d"
                      % (file_size, len(b)), len(b))
        if file_size < len(b):
            self.fail("%d trailing bytes after the %d bytes the header declares"
                      % (len(b) - file_size, file_size), file_size)
        self.table_end = table + self.n_sec * self.entry_size
        if self.table_end > len(b):
            self.fail("section table runs past the end of the file", table)
        head = bytearray(b[:self.table_end])
        head[48:52] = bytes(4)
        crc = zlib.crc32(head)
        if crc != stored_crc:
            self.fail("header checksum mismatch: stored %08x, computed %08x"
                      % (stored_crc, crc), 48)
        for i in range(52, HEADER_SIZE):
            if b[i]:
                self.fail("reserved header byte is 0x%02x, must be 0" % b[i], i)
        if required:
            bit = (required & -required).bit_length() - 1
            self.fail("requires feature bit %d which this reader does not know" % bit, 16)

    def table(self):
        b, end = self.b, self.table_end
        self.sec = []
        for i in range(self.n_sec):
            e = self.header_size + i * self.entry_size
            (typ, flags, offset, stored, raw, codec, crc, index,
             reserved) = struct.unpack_from("<IIQQQIIII", b, e)
            if reserved:
                self.fail("section %d: reserved field is not 0" % i, e + 44)
            if flags & ~REQUIRED:
                self.fail("section %d: unknown flag bits 0x%x" % (i, flags & ~REQUIRED), e + 4)
            if offset % ALIGN:
                self.fail("section %d: offset %d is not a multiple of %d" % (i, offset, ALIGN),
                          e + 8)
            want = _align64(end)
            if offset != want:
                self.fail("section %d starts at byte %d, but must start at %d (sections are "
                          "contiguous, each at the next multiple of %d)"
                          % (i, offset, want, ALIGN), e + 8)
            if offset > len(b):
                self.fail("section %d starts past the end of the file" % i, e + 8)
            for k in range(end, offset):
                if b[k]:
                    self.fail("padding byte before a section is 0x%02x, must be 0" % b[k], k)
            if stored > len(b) - offset:
                self.fail("section %d (%d bytes at byte %d) runs past the end of the file"
                          % (i, stored, offset), e + 16)
            end = offset + stored
            if codec == 0 and stored != raw:
                self.fail("section %d is not compressed, but its raw_len %d differs from "
                          "stored_len %d" % (i, raw, stored), e + 24)
            if codec == 1 and raw > stored * ZLIB_MAX_RATIO:
                self.fail("section %d: raw_len %d is more than zlib can inflate from %d bytes"
                          % (i, raw, stored), e + 24)
            self.sec.append({"i": i, "entry": e, "type": typ, "flags": flags, "offset": offset,
                             "stored": stored, "raw": raw, "codec": codec, "crc": crc,
                             "index": index})
        if end != len(b):
            self.fail("the %s ends at byte %d, but the file is %d bytes"
                      % ("last section" if self.n_sec else "section table", end, len(b)), end)
        for s in self.sec:
            crc = zlib.crc32(b[s["offset"]:s["offset"] + s["stored"]])
            if crc != s["crc"]:
                self.fail("section %d (%s) checksum mismatch: stored %08x, computed %08x"
                          % (s["i"], SECTION_NAMES.get(s["type"], "unknown"), s["crc"], crc),
                          s["offset"])

    def types(self):
        last, last_index, seen = 0, 0, set()
        known = []
        for s in self.sec:
            typ, e, i = s["type"], s["entry"], s["i"]
            if typ not in SECTION_NAMES:
                if s["flags"] & REQUIRED:
                    self.fail("section %d has type %d, which this reader does not know, and is "
                              "marked required (a newer reader is needed)" % (i, typ), e)
                continue
            name = SECTION_NAMES[typ]
            want_required = 0 if typ in OPTIONAL_TYPES else REQUIRED
            if s["flags"] & REQUIRED != want_required:
                self.fail("section %d (%s) must %shave the required flag"
                          % (i, name, "" if want_required else "not "), e + 4)
            if s["codec"] != 0 and (s["codec"] != 1 or typ == META):
                self.fail("section %d (%s): codec %d is not allowed" % (i, name, s["codec"]),
                          e + 32)
            if typ < PERM and s["index"] != 0:
                self.fail("section %d (%s): index must be 0, not %d" % (i, name, s["index"]),
                          e + 40)
            if typ < last:
                self.fail("section %d (%s) is out of order: it must come before %s"
                          % (i, name, SECTION_NAMES[last]), e)
            if typ == last and typ < PERM:
                self.fail("section %d is a second %s section" % (i, name), e)
            if typ == last and s["index"] <= last_index:
                self.fail("section %d (%s): index %d after %d (indices must increase)"
                          % (i, name, s["index"], last_index), e + 40)
            last, last_index = typ, s["index"]
            seen.add(typ)
            known.append(s)
        for typ in (META, HEAD_ORDER, SCORES, DENSITY, RECALL):
            if typ not in seen:
                self.fail("the plan has no %s section" % SECTION_NAMES[typ], self.header_size)
        self.known = known

    # ---- META (PLAN.md 7) ----

    def meta(self):
        s = next(s for s in self.known if s["type"] == META)
        off = s["offset"]
        if s["stored"] > MAX_JSON:
            self.fail("metadata is %d bytes, over the limit of %d" % (s["stored"], MAX_JSON),
                      s["entry"] + 16)
        raw = self.b[off:off + s["stored"]]

        def bad(message):
            self.fail("metadata: " + message, off)

        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            self.fail("metadata is not valid json: invalid utf-8", off + e.start)
        if text.startswith("\ufeff"):
            self.fail("metadata is not valid json: a byte-order mark", off)

        def number(token, convert):
            if len(token) > MAX_NUMBER_CHARS:
                bad("a number longer than %d characters" % MAX_NUMBER_CHARS)
            v = convert(token)
            if isinstance(v, float) and not math.isfinite(v):
                bad("number out of the range of a binary64")
            return v

        def pairs(items):
            keys = [k for k, _ in items]
            if len(set(keys)) != len(keys):
                dup = next(k for k in keys if keys.count(k) > 1)
                bad('duplicate key "%s"' % dup)
            return dict(items)

        def constant(name):
            bad("not valid json: %s" % name)

        try:
            m = json.loads(text, object_pairs_hook=pairs, parse_constant=constant,
                           parse_int=lambda t: number(t, int),
                           parse_float=lambda t: number(t, float))
        except json.JSONDecodeError as e:
            self.fail("metadata is not valid json: %s" % e.msg,
                      off + len(text[:e.pos].encode("utf-8")))
        except RecursionError:
            bad("nested too deep")

        def walk(v, depth):
            if isinstance(v, (dict, list)):
                if depth > MAX_JSON_DEPTH:
                    bad("nested deeper than %d levels" % MAX_JSON_DEPTH)
                for k, x in (v.items() if isinstance(v, dict) else enumerate(v)):
                    if isinstance(k, str):
                        walk(k, depth)
                    walk(x, depth + 1)
            elif isinstance(v, str):
                if "\x00" in v:
                    bad("\\u0000 in a string")
                if any(0xD800 <= ord(c) <= 0xDFFF for c in v):
                    bad("unpaired surrogate in a \\u escape")

        if not isinstance(m, dict):
            bad("metadata must be a json object")
        walk(m, 1)
        self.meta_obj = self.check_meta(m, bad)

    def check_meta(self, m, bad):
        lenient = self.lenient

        def known_keys(obj, what, keys, optional=()):
            if not isinstance(obj, dict):
                bad("%s must be an object" % what)
            for k in obj:
                if k not in keys and not lenient:
                    bad('unknown key "%s" in %s (not defined by plan version %d.%d)'
                        % (k, what, self.major, self.minor))
            for k in keys:
                if k not in obj and k not in optional:
                    bad('%s lacks the key "%s"' % (what, k))
            return {k: obj[k] for k in keys if k in obj}

        def is_num(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        def integer(v, lo, hi, what):
            if not is_num(v) or v != math.floor(v) or not lo <= v <= hi:
                bad("%s must be an integer in [%d, %d]" % (what, lo, hi))
            return int(v)

        def num(v, what):
            if not is_num(v):
                bad("%s must be a number" % what)
            return float(v)

        def string(v, what):
            if not isinstance(v, str):
                bad("%s must be a string" % what)
            return v

        def int_list(v, n, what):
            if not isinstance(v, list) or (n is not None and len(v) != n):
                bad("%s must be an array of %s integers" % (what, n if n else "some"))
            return [integer(x, 0, 2 ** 32 - 1, what) for x in v]

        top = known_keys(m, "the metadata", META_KEYS)
        U32 = 2 ** 32 - 1
        d = {}
        for k in ("tool", "model", "backend"):
            d[k] = string(top[k], '"%s"' % k)
        if d["backend"] not in ("cpu", "cuda"):
            bad('"backend" must be "cpu" or "cuda"')
        d["grid"] = int_list(top["grid"], 3, '"grid"')
        d["text_tokens"] = integer(top["text_tokens"], 0, U32, '"text_tokens"')
        d["text_position"] = string(top["text_position"], '"text_position"')
        if d["text_position"] not in ("first", "last"):
            bad('"text_position" must be "first" or "last"')
        for k in ("tokens", "num_heads", "head_dim"):
            d[k] = integer(top[k], 0, U32, '"%s"' % k)
        d["scale"] = num(top["scale"], '"scale"')
        d["model_layers"] = integer(top["model_layers"], 0, U32, '"model_layers"')
        d["layers"] = int_list(top["layers"], None, '"layers"')
        d["block"] = int_list(top["block"], 2, '"block"')
        d["blocks"] = int_list(top["blocks"], 2, '"blocks"')
        if not isinstance(top["orders"], list):
            bad('"orders" must be an array')
        if len(top["orders"]) > MAX_ORDERS:
            bad("%d orders exceed the limit of %d" % (len(top["orders"]), MAX_ORDERS))
        d["orders"] = []
        for o, e in enumerate(top["orders"]):
            e = known_keys(e, "an order", NESTED_KEYS["orders"])
            kind, name = string(e["kind"], '"kind"'), string(e["name"], '"name"')
            if kind != "axes":
                bad('order %d has kind "%s", but version %d.%d knows only "axes"'
                    % (o, kind, MAJOR, MINOR))
            if name not in AXES_NAMES:
                bad('order %d: name "%s" is not one of %s' % (o, name, " ".join(AXES_NAMES)))
            d["orders"].append({"kind": kind, "name": name})
        e = known_keys(top["metric"], '"metric"', NESTED_KEYS["metric"])
        d["metric"] = {"alpha": num(e["alpha"], 'metric "alpha"'),
                       "score_recall": num(e["score_recall"], 'metric "score_recall"')}
        # keep_last (1.2) is optional, and a key a 1.1 file does not know
        target_keys = NESTED_KEYS["target"][:3 if self.minor < 2 else 4]
        e = known_keys(top["target"], '"target"', target_keys, optional=("keep_last",))
        mode = e["mode"]
        if mode not in ("density", "threshold", "recall"):
            bad('target "mode" must be "density", "threshold" or "recall"')
        if not isinstance(e["keep_text"], bool):
            bad('target "keep_text" must be true or false')
        d["target"] = {"mode": mode, "value": num(e["value"], 'target "value"'),
                       "keep_text": e["keep_text"]}
        if "keep_last" in e:
            if not isinstance(e["keep_last"], bool):
                bad('target "keep_last" must be true or false')
            if e["keep_last"]:  # as paro dump --json: only when set
                d["target"]["keep_last"] = True
        e = known_keys(top["buckets"], '"buckets"', NESTED_KEYS["buckets"])
        count = integer(e["count"], 1, U32, 'buckets "count"')
        if count > MAX_BUCKETS:
            bad("%d buckets exceed the limit of %d" % (count, MAX_BUCKETS))
        edges = e["edges"]
        if not isinstance(edges, list) or len(edges) != count + 1:
            bad('buckets "edges" must be an array of count + 1 = %d numbers' % (count + 1))
        for i, x in enumerate(edges):
            if not is_num(x) or float(x) != i / count:
                bad('buckets "edges"[%d] must be %d/%d' % (i, i, count))
        d["buckets"] = {"count": count, "edges": [float(x) for x in edges],
                        "dense_until": num(e["dense_until"], 'buckets "dense_until"')}
        if not isinstance(top["samples"], list):
            bad('"samples" must be an array')
        d["samples"] = []
        for i, e in enumerate(top["samples"]):
            e = known_keys(e, "a sample", NESTED_KEYS["samples"], optional=("step",))
            s = {"index": integer(e["index"], 0, U32, "sample index"),
                 "prompt": integer(e["prompt"], -MAX_INT, MAX_INT, "sample prompt"),
                 "timestep": num(e["timestep"], "sample timestep")}
            if "step" in e:
                s["step"] = integer(e["step"], 0, MAX_INT, "sample step")
            s["bucket"] = integer(e["bucket"], 0, U32, "sample bucket")
            d["samples"].append(s)
        d["seed"] = integer(top["seed"], 0, MAX_INT, '"seed"')
        e = known_keys(top["inputs"], '"inputs"', NESTED_KEYS["inputs"])
        crcs = e["layer_crc32"]
        if not isinstance(crcs, list) or len(crcs) != len(d["layers"]):
            bad('inputs "layer_crc32" must be an array of %d strings (one per layer)'
                % len(d["layers"]))
        for c in crcs:
            if not isinstance(c, str) or len(c) != 8 or any(x not in "0123456789abcdef"
                                                            for x in c):
                bad('inputs "layer_crc32" entries must be 8 lowercase hex digits')
        d["inputs"] = {"layer_crc32": list(crcs)}

        # the rules between values
        F, H, W = d["grid"]
        if min(d["grid"]) < 1:
            bad('"grid" sizes must be >= 1')
        n = d["text_tokens"] + F * H * W
        if n > U32:
            bad("grid %dx%dx%d with %d text tokens has more than 2^32-1 tokens"
                % (F, H, W, d["text_tokens"]))
        if d["tokens"] != n:
            bad('"tokens" is %d, but text_tokens + F*H*W is %d' % (d["tokens"], n))
        if d["num_heads"] < 1 or d["head_dim"] < 1:
            bad('"num_heads" and "head_dim" must be >= 1')
        if not d["scale"] > 0:
            bad('"scale" must be a finite number > 0')
        if d["model_layers"] < 1:
            bad('"model_layers" must be >= 1')
        layers = d["layers"]
        if not layers:
            bad('"layers" must not be empty')
        for i, layer in enumerate(layers):
            if layer >= d["model_layers"]:
                bad("layer %d is not below model_layers %d" % (layer, d["model_layers"]))
            if i and layer <= layers[i - 1]:
                bad('"layers" must be strictly increasing (%d after %d)' % (layer, layers[i - 1]))
        bq, bk = d["block"]
        if bq < 1 or bk < 1:
            bad('"block" sizes must be >= 1')
        nq, nk = -(-n // bq), -(-n // bk)
        if d["blocks"] != [nq, nk]:
            bad('"blocks" is %s, but %d tokens in blocks of %s make [%d, %d]'
                % (d["blocks"], n, d["block"], nq, nk))
        if nq > MAX_BLOCKS or nk > MAX_BLOCKS:
            bad("%d x %d blocks exceed the limit of %d per axis" % (nq, nk, MAX_BLOCKS))
        names = [o["name"] for o in d["orders"]]
        if not names:
            bad('"orders" must not be empty')
        if len(set(names)) != len(names):
            bad("an order is listed twice")
        if not 0 <= d["metric"]["alpha"] <= 1:
            bad('metric "alpha" must be in [0, 1]')
        if not 0 < d["metric"]["score_recall"] <= 1:
            bad('metric "score_recall" must be in (0, 1]')
        value = d["target"]["value"]
        if not value >= 0 or (mode != "threshold" and value > 1):
            bad('target "value" is out of range')
        if not 0 <= d["buckets"]["dense_until"] <= 1:
            bad('buckets "dense_until" must be in [0, 1]')
        for i, s in enumerate(d["samples"]):
            if i and s["index"] <= d["samples"][i - 1]["index"]:
                bad("sample indices must be strictly increasing")
            if s["bucket"] >= count:
                bad("sample %d: bucket %d is not below %d" % (s["index"], s["bucket"], count))
        return {k: d[k] for k in META_KEYS}

    # ---- data sections (PLAN.md 6, 11) ----

    def inflate(self, s):
        stored = self.b[s["offset"]:s["offset"] + s["stored"]]
        what = "section %d (%s)" % (s["i"], SECTION_NAMES[s["type"]])
        if s["codec"] == 0:
            return stored
        z = zlib.decompressobj()
        try:
            raw = z.decompress(stored, s["raw"] + 1)
        except zlib.error as e:
            self.fail("%s: corrupt zlib stream: %s" % (what, e), s["offset"])
        if len(raw) > s["raw"]:
            self.fail("%s inflates to more than its raw_len of %d bytes" % (what, s["raw"]),
                      s["offset"])
        if not z.eof:
            self.fail("%s: zlib stream is cut short" % what, s["offset"])
        if z.unused_data or z.unconsumed_tail:
            self.fail("%s: bytes after the end of the zlib stream" % what, s["offset"])
        if len(raw) != s["raw"]:
            self.fail("%s inflates to %d bytes, but its raw_len is %d" % (what, len(raw),
                                                                           s["raw"]), s["offset"])
        return raw

    def data(self):
        m = self.meta_obj
        L, H, O = len(m["layers"]), m["num_heads"], len(m["orders"])
        B, N = m["buckets"]["count"], m["tokens"]
        nq, nk = m["blocks"]
        tiles = B * H * nq * nk
        want = {HEAD_ORDER: L * H, SCORES: L * H * O * 3 * 8, DENSITY: L * B * H * 8,
                RECALL: L * B * H * 8, PERM: N * 4, MASKS: (tiles + 7) // 8, TILEMASS: tiles}
        per_layer = {MASKS: [], TILEMASS: []}
        for s in self.known:
            typ, i = s["type"], s["i"]
            if typ == META:
                continue
            if typ == PERM and s["index"] >= O:
                self.fail("section %d (PERM) is for order %d, but there are %d orders"
                          % (i, s["index"], O), s["entry"] + 40)
            if typ in per_layer:
                got = per_layer[typ]
                if len(got) >= L or s["index"] != m["layers"][len(got)]:
                    if len(got) < L and s["index"] > m["layers"][len(got)]:
                        self.fail("the plan has no %s section for layer %d"
                                  % (SECTION_NAMES[typ], m["layers"][len(got)]), s["entry"] + 40)
                    self.fail('section %d (%s) is for layer %d, which is not in the plan\'s '
                              '"layers"' % (i, SECTION_NAMES[typ], s["index"]), s["entry"] + 40)
                got.append(s)
            if s["raw"] != want[typ]:
                self.fail("section %d (%s) holds %d bytes, but the metadata needs %d"
                          % (i, SECTION_NAMES[typ], s["raw"], want[typ]), s["entry"] + 24)
        if len(per_layer[MASKS]) < L:
            self.fail("the plan has no MASKS section for layer %d"
                      % m["layers"][len(per_layer[MASKS])], self.header_size)
        if per_layer[TILEMASS] and len(per_layer[TILEMASS]) < L:
            self.fail("the plan has TILEMASS sections, but none for layer %d"
                      % m["layers"][len(per_layer[TILEMASS])], self.header_size)

        def one(typ):
            return next(s for s in self.known if s["type"] == typ)

        s = one(HEAD_ORDER)
        self.head_order = self.inflate(s)
        for k, o in enumerate(self.head_order):
            if o >= O:
                self.fail("layer %d head %d has order index %d, but there are %d orders"
                          % (m["layers"][k // H], k % H, o, O),
                          s["offset"] + (k if s["codec"] == 0 else 0))
        s = one(SCORES)
        self.scores = struct.unpack("<%dd" % (L * H * O * 3), self.inflate(s))
        for k, v in enumerate(self.scores):
            if not math.isfinite(v):
                self.fail("a score is not finite", s["offset"] + (8 * k if s["codec"] == 0 else 0))
        for typ, attr in ((DENSITY, "density"), (RECALL, "recall")):
            s = one(typ)
            values = struct.unpack("<%dd" % (L * B * H), self.inflate(s))
            for k, v in enumerate(values):
                if not 0.0 <= v <= 1.0:
                    self.fail("%s of layer %d bucket %d head %d is %r, outside [0, 1]"
                              % (attr, m["layers"][k // (B * H)], k // H % B, k % H, v),
                              s["offset"] + (8 * k if s["codec"] == 0 else 0))
            setattr(self, attr, values)
        self.perms = {}
        for s in self.known:
            if s["type"] != PERM:
                continue
            name = m["orders"][s["index"]]["name"]
            perm = list(struct.unpack("<%dI" % N, self.inflate(s)))
            if sorted(perm) != list(range(N)):
                self.fail("section %d (PERM of order %s) is not a permutation" % (s["i"], name),
                          s["offset"])
            if perm != permutation(name, m["grid"], m["text_tokens"], m["text_position"]):
                self.fail("section %d (PERM of order %s) differs from the order's permutation"
                          % (s["i"], name), s["offset"])
            self.perms[s["index"]] = perm
        self.masks = []
        pad_bits = (-tiles) % 8
        for slot, s in enumerate(per_layer[MASKS]):
            raw = self.inflate(s)
            if pad_bits and raw[-1] >> (8 - pad_bits):
                self.fail("mask of layer %d has padding bits set in its last byte"
                          % m["layers"][slot], s["offset"] + (len(raw) - 1 if s["codec"] == 0
                                                              else 0))
            self.masks.append(raw)
        self.tile_mass = []
        head_tiles = nq * nk
        for slot, s in enumerate(per_layer[TILEMASS]):
            raw = self.inflate(s)
            for bh in range(B * H):
                top = max(raw[bh * head_tiles:(bh + 1) * head_tiles])
                if top not in (0, 255):
                    self.fail("tile masses of layer %d bucket %d head %d peak at level %d, but "
                              "the largest tile of a head is level 255"
                              % (m["layers"][slot], bh // H, bh % H, top), s["offset"])
            self.tile_mass.append(raw)


def read(path):
    """Reads and verifies a plan; returns the internal reader with .meta_obj,
    .head_order, .scores, .density, .recall, .perms, .masks (raw bitmaps) and
    .tile_mass (raw levels, [] when none).  load() is the friendlier form."""
    with open(path, "rb") as f:
        data = f.read()
    r = _Reader(data, path)
    r.header()
    r.table()
    r.types()
    r.meta()
    r.data()
    return r


def _bits(raw, count):
    """The first count bits of raw, least significant bit of each byte first."""
    return [bool(raw[i >> 3] >> (i & 7) & 1) for i in range(count)]


def _nest(flat, shape):
    for n in reversed(shape[1:]):
        flat = [flat[i:i + n] for i in range(0, len(flat), n)]
    return flat


def load(path, numpy=False, perms=False, tile_mass=False):
    """The plan as the `paro dump --json` dict plus "masks": per layer slot,
    [bucket][head][qi][kj] bools (numpy=True: a numpy bool array of that
    shape).  perms=True adds "perms": per order index, the permutation list
    (numpy: int64 arrays); tile_mass=True adds "tile_mass": per layer slot the
    levels [bucket][head][qi][kj] (numpy: uint8 arrays), or None."""
    r = read(path)
    m = r.meta_obj
    L, H, O = len(m["layers"]), m["num_heads"], len(m["orders"])
    B = m["buckets"]["count"]
    nq, nk = m["blocks"]
    doc = {"schema": SCHEMA}
    doc.update(m)
    heads = []
    for slot, layer in enumerate(m["layers"]):
        for h in range(H):
            scores = {}
            for o, entry in enumerate(m["orders"]):
                at = ((slot * H + h) * O + o) * 3
                scores[entry["name"]] = {"sparse": r.scores[at], "quant": r.scores[at + 1],
                                         "combined": r.scores[at + 2]}
            heads.append({
                "layer": layer, "head": h,
                "order": m["orders"][r.head_order[slot * H + h]]["name"],
                "density": [r.density[(slot * B + b) * H + h] for b in range(B)],
                "recall": [r.recall[(slot * B + b) * H + h] for b in range(B)],
                "scores": scores})
    doc["heads"] = heads
    shape = (B, H, nq, nk)
    tiles = B * H * nq * nk
    if numpy:
        import numpy as np
        doc["masks"] = [np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")[:tiles]
                        .reshape(shape).astype(bool) for raw in r.masks]
    else:
        doc["masks"] = [_nest(_bits(raw, tiles), shape) for raw in r.masks]
    if perms:
        full = [r.perms.get(o) or permutation(e["name"], m["grid"], m["text_tokens"],
                                              m["text_position"])
                for o, e in enumerate(m["orders"])]
        if numpy:
            import numpy as np
            full = [np.array(p, dtype=np.int64) for p in full]
        doc["perms"] = full
    if tile_mass:
        if not r.tile_mass:
            doc["tile_mass"] = None
        elif numpy:
            import numpy as np
            doc["tile_mass"] = [np.frombuffer(raw, np.uint8).reshape(shape).copy()
                                for raw in r.tile_mass]
        else:
            doc["tile_mass"] = [_nest(list(raw), shape) for raw in r.tile_mass]
    return doc


def _main(argv):
    full = "--json-full" in argv[1:]
    args = [a for a in argv[1:] if a != "--json-full"]
    if len(args) != 1 or args[0].startswith("-"):
        sys.stderr.write("usage: python3 paro_plan.py [--json-full] PLAN\n"
                         "prints the plan as `paro dump --json` (--json-full: with masks) does\n")
        return 2
    try:
        doc = load(args[0])
    except PlanError as e:
        sys.stderr.write("paro_plan.py: error: %s\n" % e)
        return 3
    except OSError as e:
        sys.stderr.write("paro_plan.py: error: %s\n" % e)
        return 1
    masks = doc.pop("masks")
    if full:
        H = doc["num_heads"]
        for i, head in enumerate(doc["heads"]):
            head["masks"] = [[[int(x) for x in row] for row in bucket[i % H]]
                             for bucket in masks[i // H]]
    sys.stdout.write(json.dumps(doc, indent="\t") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
