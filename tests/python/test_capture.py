"""Tests of samples/capture/paro_capture.py, the PyTorch capture module.

- A small diffusers-like transformer (2 layers, 4 heads, head_dim 16; an
  Attention module with .processor / set_processor whose processor applies RMS
  norm to q and k, a 3-D rotary embedding to the visual tokens, then
  F.scaled_dot_product_attention; 3 text tokens first + a 2x3x4 grid): its
  outputs are bit-identical wrapped and unwrapped, and the Q/K/V read back from
  the sample files (parsed here with struct and json, not through the module)
  are exactly what reached the kernel and reproduce the attention output the
  processor computed.
- The generic record() API: batch element, dtypes (bf16, f16), copies that the
  caller's later in-place changes do not reach, layers in any order, and the
  errors (missing or repeated layer, wrong shape, non-finite values, ...).
- The manifests are exactly CAPTURE.md's, and `paro calibrate` and `paro dump`
  accept the captures (where a paro binary is found: $PARO, build/paro or
  ./paro; that part is skipped without one).
- Where CUDA is available: the same model on the GPU, batch 2, captured in
  bf16 through CallSampler (skipped without a GPU).

Runs with Debian's torch 1.13, which has no scaled_dot_product_attention: the
test then installs a plain reference one for its model (and removes it at the
end); with torch 2.x the real one is used.  Exit status 0 pass, 1 fail, 77
when torch is not installed.
"""

import contextlib
import glob
import inspect
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import traceback

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:
    print("SKIP torch or numpy not installed (%s)" % e)
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(ROOT, "samples", "capture"))
import paro_capture as pc  # noqa: E402

GRID = (2, 3, 4)
TEXT = 3
HEADS, HEAD_DIM = 4, 16
LAYERS = 2
N = TEXT + GRID[0] * GRID[1] * GRID[2]


# ---- reading what the module wrote (independently of it) ---------------------

def read_safetensors(path):
    """{name: float64 array} in file order, checking the layout CAPTURE.md §7
    asks for: header padded to 8, tensors contiguous from 0 to the end."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    assert (8 + n) % 8 == 0, "header not padded to 8"
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = data[8 + n:]
    out = {}
    end = 0
    for name, t in header.items():
        assert list(t) == ["dtype", "shape", "data_offsets"], t
        b, e = t["data_offsets"]
        assert b == end, "gap or overlap before %s" % name
        end = e
        raw = body[b:e]
        if t["dtype"] == "F32":
            a = np.frombuffer(raw, "<f4")
        elif t["dtype"] == "F16":
            a = np.frombuffer(raw, "<f2")
        elif t["dtype"] == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view("<f4")
        else:
            raise AssertionError("dtype " + t["dtype"])
        assert a.size == math.prod(t["shape"]), name
        out[name] = (t["dtype"], a.reshape(t["shape"]).astype(np.float64))
    assert end == len(body), "trailing bytes"
    return out


def attention(q, k, v, scale):
    """softmax(scale q k^T) v per head, float64."""
    s = np.einsum("hnd,hmd->hnm", q, k) * scale
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return np.einsum("hnm,hmd->hnd", p, v)


def rel_l2(a, b):
    return float(np.sqrt(((a - b) ** 2).sum() / (b ** 2).sum()))


def leftovers(folder):
    return glob.glob(os.path.join(folder, "*.tmp.*"))


@contextlib.contextmanager
def raises(kind, text=""):
    try:
        yield
    except kind as e:
        assert text in str(e), "%r does not say %r" % (str(e), text)
    else:
        raise AssertionError("no %s raised" % kind.__name__)


# ---- a small diffusers-like transformer ---------------------------------------

def reference_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """Stands in for torch.nn.functional.scaled_dot_product_attention on torch
    < 2.0 (no mask, dropout or causal support: the model uses none)."""
    assert attn_mask is None and dropout_p == 0.0 and not is_causal
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    w = torch.softmax(torch.matmul(query, key.transpose(-2, -1)) * scale, dim=-1)
    return torch.matmul(w, value)


@contextlib.contextmanager
def sdpa_available():
    if hasattr(F, "scaled_dot_product_attention"):
        yield "torch's"
        return
    F.scaled_dot_product_attention = reference_sdpa
    try:
        yield "the test's reference (torch %s has none)" % torch.__version__
    finally:
        del F.scaled_dot_product_attention


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(1 + 0.1 * torch.randn(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def grid_rotary(grid, head_dim):
    """cos, sin [F*H*W, head_dim/2] of a 3-D rotary embedding over the visual
    tokens in row-major [F, H, W] order (pairs split 2/3/3 over f, h, w)."""
    Fr, Hr, Wr = grid
    f, h, w = torch.meshgrid(torch.arange(Fr), torch.arange(Hr), torch.arange(Wr), indexing="ij")
    angles = []
    for pos, pairs in ((f, 2), (h, 3), (w, 3)):
        freq = 1.0 / (10000.0 ** (torch.arange(pairs, dtype=torch.float32) / pairs))
        angles.append(pos.reshape(-1, 1).float() * freq)
    a = torch.cat(angles, dim=1)
    assert a.shape[1] == head_dim // 2
    return a.cos(), a.sin()


def apply_rotary(x, rotary):
    cos, sin = rotary
    x0, x1 = x.reshape(*x.shape[:-1], -1, 2).unbind(-1)
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)


class JointAttnProcessor:
    """Like diffusers' CogVideoXAttnProcessor2_0: text and visual tokens in one
    sequence (text first), RMS norm on q and k, rotary on the visual part,
    then scaled_dot_product_attention.  Keeps what it computed in attn.seen."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 image_rotary_emb=None):
        text = encoder_hidden_states.shape[1]
        x = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        B, n, _ = x.shape
        q, k, v = (proj(x).view(B, n, attn.heads, -1).transpose(1, 2)
                   for proj in (attn.to_q, attn.to_k, attn.to_v))
        q = attn.norm_q(q)
        k = attn.norm_k(k)
        if image_rotary_emb is not None:  # in place, as CogVideoX does
            q[:, :, text:] = apply_rotary(q[:, :, text:], image_rotary_emb)
            k[:, :, text:] = apply_rotary(k[:, :, text:], image_rotary_emb)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, dropout_p=0.0,
                                           is_causal=False)
        attn.seen = {"q": q.detach().clone(), "k": k.detach().clone(),
                     "v": v.detach().clone(), "out": o.detach().clone()}
        o = attn.to_out(o.transpose(1, 2).reshape(B, n, -1))
        return o[:, text:], o[:, :text]


class Attention(nn.Module):
    def __init__(self, dim, heads, head_dim):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, heads * head_dim) for _ in range(3))
        self.norm_q, self.norm_k = RMSNorm(head_dim), RMSNorm(head_dim)
        self.to_out = nn.Linear(heads * head_dim, dim)
        self.processor = JointAttnProcessor()

    def set_processor(self, processor):
        self.processor = processor

    def forward(self, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        # As diffusers' Attention.forward: keyword arguments the processor's
        # signature does not name are dropped.
        names = set(inspect.signature(self.processor.__call__).parameters)
        kwargs = {k: v for k, v in kwargs.items() if k in names}
        return self.processor(self, hidden_states, encoder_hidden_states=encoder_hidden_states,
                              attention_mask=attention_mask, **kwargs)


class Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, HEADS, HEAD_DIM)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, h, e, image_rotary_emb):
        ah, ae = self.attn(self.norm1(h), encoder_hidden_states=self.norm1(e),
                           image_rotary_emb=image_rotary_emb)
        h, e = h + ah, e + ae
        return h + self.ff(self.norm2(h)), e + self.ff(self.norm2(e))


class Transformer(nn.Module):
    def __init__(self, channels=8, dim=32):
        super().__init__()
        self.proj_in = nn.Linear(channels, dim)
        self.text_in = nn.Linear(channels, dim)
        self.time = nn.Linear(16, dim)
        self.blocks = nn.ModuleList(Block(dim) for _ in range(LAYERS))
        self.proj_out = nn.Linear(dim, channels)

    def forward(self, hidden_states, encoder_hidden_states, timestep, image_rotary_emb=None):
        freqs = torch.exp(-math.log(10000.0) * torch.arange(8, device=timestep.device) / 8)
        t = timestep.float().reshape(-1, 1) * freqs
        temb = self.time(torch.cat([t.sin(), t.cos()], dim=1))[:, None]
        h = self.proj_in(hidden_states) + temb
        e = self.text_in(encoder_hidden_states) + temb
        for block in self.blocks:
            h, e = block(h, e, image_rotary_emb)
        return self.proj_out(h)


def attention_modules(model):
    return [m for m in model.modules() if isinstance(m, Attention)]


# ---- the tests ---------------------------------------------------------------

def test_wrap_diffusers(tmp, paro):
    torch.manual_seed(0)
    model = Transformer().eval()
    g = torch.Generator().manual_seed(1)
    x = [torch.randn(1, N - TEXT, 8, generator=g) for _ in range(2)]
    text = [torch.randn(1, TEXT, 8, generator=g) for _ in range(2)]
    rotary = grid_rotary(GRID, HEAD_DIM)
    timesteps = [999, 750, 500, 250]

    def run(p, t):
        with torch.no_grad():
            return model(hidden_states=x[p], encoder_hidden_states=text[p],
                         timestep=torch.tensor([t]), image_rotary_emb=rotary)

    ref = {(p, t): run(p, t) for p in (0, 1) for t in timesteps}
    originals = [m.processor for m in attention_modules(model)]

    cap = os.path.join(tmp, "wrapped")
    rec = pc.Recorder(cap, grid=GRID, text_tokens=TEXT, text_position="first", layers=LAYERS,
                      heads=HEADS, head_dim=HEAD_DIM, model="test-dit", dtype="f32", steps=4,
                      timesteps={999, 500})
    mods = pc.wrap_diffusers(model, rec)
    assert mods == attention_modules(model)  # layer i = i-th in named_modules()
    with raises(ValueError, "already wrapped"):
        pc.wrap_diffusers(model, rec)

    # Outside a sample the wrapper only passes the call on.
    assert torch.equal(run(0, 999), ref[0, 999])

    seen = {}
    for step, t in enumerate(timesteps):
        with rec.sample(prompt=0, timestep=t, step=step):
            out = run(0, t)
        assert torch.equal(out, ref[0, t]), "wrapped output differs at t=%d" % t
        seen[0, t] = [m.seen for m in mods]

    # The second prompt as a pipeline would run it: one sample per model call.
    with pc.CallSampler(model, rec) as sampler:
        assert "forward" in model.__dict__
        sampler.start(prompt=1)
        for t in timesteps:
            out = run(1, t)
            assert torch.equal(out, ref[1, t]), "output differs under CallSampler at t=%d" % t
            seen[1, t] = [m.seen for m in mods]
    assert "forward" not in model.__dict__

    assert pc.unwrap(model) == LAYERS
    assert all(m.processor is p for m, p in zip(attention_modules(model), originals))
    assert torch.equal(run(0, 750), ref[0, 750])
    rec.close()

    with open(os.path.join(cap, "manifest.json")) as f:
        manifest = json.load(f)
    want = {"format": "paro-capture", "version": 1, "model": "test-dit", "grid": list(GRID),
            "text_tokens": TEXT, "text_position": "first", "layers": LAYERS, "heads": HEADS,
            "head_dim": HEAD_DIM, "steps": 4,
            "samples": [{"file": "p%d_t%d.safetensors" % (p, t), "prompt": p, "timestep": t,
                         "step": s} for p in (0, 1) for s, t in ((0, 999), (2, 500))]}
    assert manifest == want, manifest
    assert list(manifest) == list(want)
    assert sorted(os.listdir(cap)) == sorted(["manifest.json"] + [s["file"] for s in want["samples"]])

    worst_out = 0.0
    for s in want["samples"]:
        tensors = read_safetensors(os.path.join(cap, s["file"]))
        assert list(tensors) == ["layers.%d.%s" % (l, kind) for l in range(LAYERS)
                                 for kind in "qkv"]
        for l in range(LAYERS):
            got = {kind: tensors["layers.%d.%s" % (l, kind)] for kind in "qkv"}
            inside = seen[s["prompt"], s["timestep"]][l]
            for kind in "qkv":
                dtype, a = got[kind]
                assert dtype == "F32" and a.shape == (HEADS, N, HEAD_DIM)
                # exactly what reached the kernel (after norm and rotary)
                assert np.array_equal(a, inside[kind][0].double().numpy()), (s, l, kind)
            out = attention(got["q"][1], got["k"][1], got["v"][1], 1 / math.sqrt(HEAD_DIM))
            err = rel_l2(out, inside["out"][0].double().numpy())
            assert err < 1e-3, (s, l, err)
            worst_out = max(worst_out, err)
    print("     wrapped: outputs bit-identical over %d calls, %d samples, q/k/v exact, "
          "attention rel_l2 <= %.1e" % (len(ref) + 2, len(want["samples"]), worst_out))
    paro_accepts(paro, cap, tmp)


def test_record_api(tmp, paro):
    cap = os.path.join(tmp, "generic")
    grid, T, L, H, D = (1, 4, 5), 2, 3, 2, 8
    n = T + 20
    rec = pc.Recorder(cap, grid=grid, text_tokens=T, text_position="last", layers=L, heads=H,
                      head_dim=D, model="generic", dtype="bf16", batch_index=1)
    g = torch.Generator().manual_seed(3)
    qkv = [[torch.randn(2, H, n, D, generator=g) for _ in range(3)] for _ in range(L)]

    rec.record(0, *qkv[0])  # outside a sample: nothing happens
    assert not rec.active and os.listdir(cap) == []

    with rec.sample(prompt=3, timestep=999):
        assert rec.active
        for layer in (2, 0, 1):  # any order
            q, k, v = (t.clone().requires_grad_() for t in qkv[layer])
            before = [t.detach().clone() for t in (q, k, v)]
            rec.record(layer, q, k, v)
            assert all(torch.equal(t.detach(), b) for t, b in zip((q, k, v), before))
            with torch.no_grad():  # the caller changes its tensors afterwards
                for t in (q, k, v):
                    t.mul_(2)
        with raises(RuntimeError, "recorded twice"):
            rec.record(1, *qkv[1])
        with raises(RuntimeError, "nested"):
            with rec.sample(prompt=0, timestep=1):
                pass
    tensors = read_safetensors(os.path.join(cap, "p3_t999.safetensors"))
    assert list(tensors) == ["layers.%d.%s" % (l, kind) for l in range(L) for kind in "qkv"]
    for l in range(L):
        for i, kind in enumerate("qkv"):
            dtype, a = tensors["layers.%d.%s" % (l, kind)]
            want = qkv[l][i][1].to(torch.bfloat16).double().numpy()  # batch element 1
            assert dtype == "BF16" and np.array_equal(a, want), (l, kind)

    # a timestep not among those to record, with a recorder that filters
    rec.record_timesteps = frozenset([999.0, 500.0])
    with rec.sample(prompt=5, timestep=400):
        assert not rec.active
        rec.record(0, *qkv[0])
    rec.record_timesteps = None

    # a layer missing: an error, and no file (nor temporary file) left
    with raises(RuntimeError, "1 of 3 layers were not recorded (1)"):
        with rec.sample(prompt=4, timestep=500):
            rec.record(0, *qkv[0])
            rec.record(2, *qkv[2])
    # an exception inside the block discards the sample
    with raises(KeyError):
        with rec.sample(prompt=4, timestep=500):
            rec.record(0, *qkv[0])
            raise KeyError("model failed")
    assert not os.path.exists(os.path.join(cap, "p4_t500.safetensors")) and not leftovers(cap)

    with rec.sample(prompt=6, timestep=10):
        with raises(ValueError, "[heads, N, head_dim] = [2, 22, 8]"):
            rec.record(0, torch.zeros(2, 3, n, D), *qkv[0][1:])
        with raises(ValueError, "batch_index"):
            rec.record(0, torch.zeros(1, H, n, D), *qkv[0][1:])
        bad = qkv[0][0].clone()
        bad[1, 1, 7, 3] = float("inf")
        with raises(ValueError, "head 1, token 7, dim 3"):
            rec.record(0, bad, *qkv[0][1:])
        with raises(ValueError, "Recorder(scale=0.3)"):
            rec.record(0, *qkv[0], scale=0.3)
        rec.record(0, *qkv[0], scale=1 / math.sqrt(D))
        with raises(ValueError, "earlier layers with"):
            rec.record(1, *qkv[1][:2])
        rec.record(1, *qkv[1])
        rec.record(2, *qkv[2])
    with raises(ValueError, "already recorded"):
        with rec.sample(prompt=6, timestep=10.0):
            pass
    with raises(ValueError, "needs Recorder(steps"):
        with rec.sample(prompt=7, timestep=10, step=0):
            pass
    with raises(ValueError, "timestep must be in"):
        with rec.sample(prompt=7, timestep=1000.5):
            pass
    rec.close()
    with open(os.path.join(cap, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["text_position"] == "last" and "steps" not in manifest
    assert manifest["samples"] == [
        {"file": "p3_t999.safetensors", "prompt": 3, "timestep": 999},
        {"file": "p6_t10.safetensors", "prompt": 6, "timestep": 10}], manifest["samples"]
    assert sorted(os.listdir(cap)) == ["manifest.json", "p3_t999.safetensors", "p6_t10.safetensors"]

    # f16, [heads, N, D] input, V dropped, a fractional timestep, a custom scale
    cap16 = os.path.join(tmp, "f16")
    rec = pc.Recorder(cap16, grid=(1, 2, 2), text_tokens=0, layers=1, heads=1, head_dim=4,
                      dtype="f16", save_v=False, scale=0.7, timestep_max=1)
    q, k, v = (torch.randn(1, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    with rec.sample(prompt=0, timestep=0.4875):
        rec.record(0, q, k, v)
    with raises(ValueError, "overflows float16"):
        with rec.sample(prompt=1, timestep=0.5):
            rec.record(0, q * 1e6, k)
    rec.close()
    tensors = read_safetensors(os.path.join(cap16, "p0_t0.4875.safetensors"))
    assert list(tensors) == ["layers.0.q", "layers.0.k"]
    assert tensors["layers.0.q"][0] == "F16"
    assert np.array_equal(tensors["layers.0.q"][1], q.half().double().numpy())
    with open(os.path.join(cap16, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["scale"] == 0.7 and manifest["timestep_max"] == 1
    assert manifest["samples"] == [{"file": "p0_t0.4875.safetensors", "prompt": 0,
                                    "timestep": 0.4875}]

    with raises(RuntimeError, "no sample was recorded"):
        pc.Recorder(os.path.join(tmp, "empty"), grid=(1, 1, 1), text_tokens=0, layers=1,
                    heads=1, head_dim=1).close()
    with raises(ValueError, "text_position"):
        pc.Recorder(cap, grid=grid, text_tokens=T, text_position="middle", layers=1, heads=1,
                    head_dim=1)
    print("     record(): batch element, bf16/f16 values, copies, any layer order, errors")
    paro_accepts(paro, cap, tmp)


def test_wrap_errors(tmp, paro):
    torch.manual_seed(0)
    model = Transformer().eval()
    rec = pc.Recorder(os.path.join(tmp, "errors"), grid=GRID, text_tokens=TEXT, layers=3,
                      heads=HEADS, head_dim=HEAD_DIM)
    with raises(ValueError, "found 2 attention modules"):
        pc.wrap_diffusers(model, rec)

    class NoSdpa:  # a processor that computes attention some other way
        def __call__(self, attn, hidden_states, encoder_hidden_states=None, **kwargs):
            return hidden_states, encoder_hidden_states

    rec = pc.Recorder(os.path.join(tmp, "errors"), grid=GRID, text_tokens=TEXT, layers=1,
                      heads=HEADS, head_dim=HEAD_DIM)
    attn = attention_modules(model)[0]
    attn.set_processor(NoSdpa())
    pc.wrap_diffusers([attn], rec)
    h, e = torch.zeros(1, N - TEXT, 32), torch.zeros(1, TEXT, 32)
    attn(h, encoder_hidden_states=e)  # no sample: fine
    sdpa = F.scaled_dot_product_attention
    with raises(RuntimeError, "did not call"):
        with rec.sample(prompt=0, timestep=0):
            attn(h, encoder_hidden_states=e)
    assert F.scaled_dot_product_attention is sdpa  # the patch is undone after an error too
    assert pc.unwrap([attn]) == 1 and isinstance(attn.processor, NoSdpa)
    print("     wrap errors: layer count, processor without SDPA, SDPA restored")


def test_cuda(tmp, paro):
    """The wrapped model on a GPU, captured in bf16 through CallSampler."""
    if not torch.cuda.is_available():
        print("     SKIP cuda part: no CUDA device")
        return
    torch.manual_seed(0)
    model = Transformer().eval().cuda()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, N - TEXT, 8, generator=g).cuda()  # batch 2, as under CFG
    text = torch.randn(2, TEXT, 8, generator=g).cuda()
    rotary = tuple(t.cuda() for t in grid_rotary(GRID, HEAD_DIM))

    def run(t):
        with torch.no_grad():
            return model(hidden_states=x, encoder_hidden_states=text,
                         timestep=torch.tensor([t, t], device="cuda"), image_rotary_emb=rotary)

    ref = {t: run(t) for t in (999, 400)}
    cap = os.path.join(tmp, "cuda")
    rec = pc.Recorder(cap, grid=GRID, text_tokens=TEXT, layers=LAYERS, heads=HEADS,
                      head_dim=HEAD_DIM, model="test-dit cuda", dtype="bf16", batch_index=1)
    mods = pc.wrap_diffusers(model, rec)
    seen = {}
    with pc.CallSampler(model, rec) as sampler:
        sampler.start(prompt=0)
        for t in ref:
            out = run(t)
            assert torch.equal(out, ref[t]), "wrapped output differs on cuda at t=%d" % t
            seen[t] = [m.seen for m in mods]
    pc.unwrap(model)
    rec.close()
    for t in ref:
        tensors = read_safetensors(os.path.join(cap, "p0_t%d.safetensors" % t))
        for l in range(LAYERS):
            for kind in "qkv":
                dtype, a = tensors["layers.%d.%s" % (l, kind)]
                want = seen[t][l][kind][1].to(torch.bfloat16).double().cpu().numpy()
                assert dtype == "BF16" and np.array_equal(a, want), (t, l, kind)
    print("     cuda: outputs bit-identical, bf16 q/k/v of batch element 1 exact")
    paro_accepts(paro, cap, tmp)


# ---- paro itself -------------------------------------------------------------

def find_paro():
    for path in (os.environ.get("PARO"), os.path.join(ROOT, "build", "paro"),
                 os.path.join(ROOT, "paro")):
        if path and os.access(path, os.X_OK):
            return os.path.abspath(path)
    return None


def paro_accepts(paro, cap, tmp):
    if paro is None:
        print("     SKIP paro calibrate: no binary (make build/paro, or set PARO)")
        return
    plan = os.path.join(tmp, os.path.basename(cap) + ".paro")
    r = subprocess.run([paro, "calibrate", "-m", os.path.join(cap, "manifest.json"), "-o", plan,
                        "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, "paro calibrate exited %d:\n%s" % (r.returncode, r.stdout.decode())
    r = subprocess.run([paro, "dump", plan], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, "paro dump exited %d:\n%s" % (r.returncode, r.stdout.decode())
    print("     paro calibrate + dump: exit 0 (%s, %d bytes of dump)"
          % (os.path.basename(cap), len(r.stdout)))


def main():
    paro = find_paro()
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp, sdpa_available() as which:
        print("torch %s, numpy %s, scaled_dot_product_attention: %s, paro: %s"
              % (torch.__version__, np.__version__, which, paro))
        for test in (test_wrap_diffusers, test_record_api, test_wrap_errors, test_cuda):
            try:
                test(tmp, paro)
            except Exception:
                traceback.print_exc()
                print("FAIL %s" % test.__name__)
                failed += 1
            else:
                print("ok   %s" % test.__name__)
                passed += 1
    print("capture: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
