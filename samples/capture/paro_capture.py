"""Record the attention inputs of a PyTorch diffusion transformer as a paro
capture (formats/CAPTURE.md): a folder with manifest.json and one safetensors
file per (prompt, timestep) sample holding every layer's Q, K (and V) in
layout HND, i.e. exactly what enters softmax(scale * Q K^T).

    rec = Recorder("capture", grid=(13, 30, 45), text_tokens=226, layers=42,
                   heads=48, head_dim=64, model="CogVideoX-5b")
    with rec:                                       # writes manifest.json
        with rec.sample(prompt=0, timestep=999):    # writes p0_t999.safetensors
            model(...)                              # calls rec.record(layer, q, k, v)

Two ways to feed it:
- record(layer, q, k, v) from your own attention code, right before the
  attention kernel;
- wrap_diffusers(model, rec) for diffusers-style Attention modules: the q, k,
  v that reach torch's scaled_dot_product_attention are recorded, outputs
  unchanged.  CallSampler(model, rec) then opens a sample around every call of
  the transformer, so a whole pipeline run can be captured as it is.

Needs only torch (>= 1.13) and numpy: the safetensors files are written with
the standard library.  See README.md beside this file.
"""

import contextlib
import inspect
import json
import math
import operator
import os
import struct
import warnings

import numpy as np
import torch

__all__ = ["Recorder", "CallSampler", "wrap_diffusers", "unwrap"]

# dtype argument -> (torch dtype of the copy, safetensors dtype name)
_DTYPES = {
    "bf16": (torch.bfloat16, "BF16"),
    "f16": (torch.float16, "F16"),
    "f32": (torch.float32, "F32"),
}

# Limits of CAPTURE.md §8 (checked here so that a run fails before it has
# spent hours writing files paro will refuse).
_MAX_LAYERS, _MAX_HEADS, _MAX_HEAD_DIM = 4096, 1024, 1024
_MAX_TOKENS = 1 << 24
_MAX_SAMPLES = 100000
_MAX_INT = 1 << 53


def _int(value, what, lo=0, hi=_MAX_INT):
    """An integer argument (Python, numpy or 0-d torch integer) in [lo, hi]."""
    if isinstance(value, bool):
        raise TypeError("%s must be an integer, not a bool" % what)
    if torch.is_tensor(value):
        if value.numel() != 1 or value.is_floating_point():
            raise TypeError("%s must be an integer, got a tensor of shape %s and dtype %s"
                            % (what, tuple(value.shape), value.dtype))
        value = value.item()
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError("%s must be an integer, got %r" % (what, value)) from None
    if not lo <= value <= hi:
        raise ValueError("%s must be in [%d, %d], got %d" % (what, lo, hi, value))
    return value


def _number(value, what):
    """A finite number (Python, numpy or one-element torch tensor) as a float."""
    if torch.is_tensor(value):
        if value.numel() != 1:
            raise TypeError("%s must be a number, got a tensor of shape %s"
                            % (what, tuple(value.shape)))
        value = value.item()
    if isinstance(value, bool):
        raise TypeError("%s must be a number, not a bool" % what)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError("%s must be a number, got %r" % (what, value)) from None
    if not math.isfinite(value):
        raise ValueError("%s must be finite, got %r" % (what, value))
    return value


def _json_number(x):
    """999.0 -> 999 so that the manifest and the file names read naturally."""
    if x == int(x) and abs(x) <= _MAX_INT:
        return int(x)
    return x


def _fsync_dir(path):
    # Makes the rename durable; not possible everywhere (e.g. Windows), and
    # the data is already safe without it, so failures are ignored.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path, data):
    """Write bytes to path through a temporary file and os.replace, so that a
    reader (or a crash) never sees half a file."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(os.path.dirname(path) or ".")


class _SampleWriter:
    """One safetensors file written in place as its layers arrive.

    Every tensor of a sample has the same shape and dtype, so the header (and
    with it each tensor's offset) is known before the first layer is
    recorded: the file is laid out up front and each layer is written at its
    offset as soon as record() is called, in any layer order, so that only one
    layer is held in memory at a time.  The file is written under a temporary
    name and renamed into place only when every layer is there."""

    def __init__(self, path, layers, kinds, shape, st_dtype, itemsize):
        self.path = path
        self.tmp = "%s.tmp.%d" % (path, os.getpid())
        self.kinds = kinds
        nbytes = itemsize
        for n in shape:
            nbytes *= n
        self.nbytes = nbytes
        # Tensors in the order layers.0.q, layers.0.k[, layers.0.v], layers.1.q, ...,
        # contiguous from offset 0; each entry's keys in the order dtype, shape,
        # data_offsets and no whitespace, as `paro synth` writes them.
        header = {}
        offset = 0
        for layer in range(layers):
            for kind in kinds:
                header["layers.%d.%s" % (layer, kind)] = {
                    "dtype": st_dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
                offset += nbytes
        text = json.dumps(header, separators=(",", ":")).encode("ascii")
        text += b" " * (-len(text) % 8)  # the data then starts 8-aligned
        self.data_start = 8 + len(text)
        self.f = open(self.tmp, "wb")
        try:
            self.f.write(struct.pack("<Q", len(text)))
            self.f.write(text)
            self.f.truncate(self.data_start + offset)  # the full size (sparse until written)
        except BaseException:
            self.abort()
            raise

    def write(self, layer, kind, array):
        index = layer * len(self.kinds) + self.kinds.index(kind)
        data = memoryview(np.ascontiguousarray(array)).cast("B")
        assert len(data) == self.nbytes
        self.f.seek(self.data_start + index * self.nbytes)
        self.f.write(data)

    def commit(self):
        try:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
            os.replace(self.tmp, self.path)
        except BaseException:  # e.g. a full disk: leave no temporary file behind
            self.abort()
            raise
        _fsync_dir(os.path.dirname(self.path) or ".")

    def abort(self):
        with contextlib.suppress(OSError):
            self.f.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


class _Sample:
    """The sample a sample() block is recording (or skipping: active False)."""

    def __init__(self, active, file, entry, layers):
        self.active = active
        self.file = file
        self.entry = entry  # its element of the manifest's "samples"
        self.recorded = [False] * layers
        self.writer = None
        self.kinds = None  # ("q", "k") or ("q", "k", "v"), set by the first record()


class Recorder:
    """Collects samples into out_dir and writes manifest.json.

    grid: (F, H, W) of the visual token grid; text_tokens: T; text_position:
    "first" or "last"; layers, heads, head_dim: L, NH, D.  The sequence has
    N = T + F*H*W tokens, visual ones in row-major [F, H, W] order.
    model: free text for the manifest.  dtype: "bf16", "f16" or "f32", the
    type the tensors are stored in (bf16 halves the files against f32 and
    cannot overflow, f16 can).  scale: the softmax scale if not 1/sqrt(D).
    timesteps: record only samples whose timestep is in this set (None: all);
    record_steps: the same for step indices.  steps: the number of denoising
    steps; enables sample(step=...), from which paro then takes the denoising
    progress.  timestep_max: the largest timestep (manifest default 1000).
    save_v: None stores V when record() gets it, False never, True requires
    it (paro eval needs V; calibrate does not).
    batch_index: q, k, v arrive as [batch, heads, N, D]; the recorder stores
    batch element batch_index (default 0) and ignores the others.  Under
    classifier-free guidance diffusers pipelines batch [unconditional,
    conditional]: batch_index=1 records the prompt-conditioned half.

    Use it as a context manager, or call close() at the end: close() checks
    that at least one sample was recorded.  manifest.json is rewritten
    (atomically) after every sample, so an interrupted run leaves a valid
    capture of the samples it finished.  Not thread-safe: record from one
    thread.
    """

    def __init__(self, out_dir, *, grid, text_tokens, layers, heads, head_dim,
                 text_position="first", model="unknown", dtype="bf16", scale=None,
                 timesteps=None, steps=None, record_steps=None, timestep_max=None,
                 save_v=None, batch_index=0):
        if len(grid) != 3:
            raise ValueError("grid must be (F, H, W), got %r" % (grid,))
        self.grid = tuple(_int(g, "grid[%d]" % i, 1) for i, g in enumerate(grid))
        self.text_tokens = _int(text_tokens, "text_tokens")
        if text_position not in ("first", "last"):
            raise ValueError('text_position must be "first" or "last", got %r' % (text_position,))
        self.text_position = text_position
        self.layers = _int(layers, "layers", 1, _MAX_LAYERS)
        self.heads = _int(heads, "heads", 1, _MAX_HEADS)
        self.head_dim = _int(head_dim, "head_dim", 1, _MAX_HEAD_DIM)
        F, H, W = self.grid
        self.tokens = self.text_tokens + F * H * W
        if self.tokens > _MAX_TOKENS:
            raise ValueError("N = T + F*H*W = %d tokens is more than paro's limit of %d"
                             % (self.tokens, _MAX_TOKENS))
        if not isinstance(model, str):
            raise TypeError("model must be a string")
        model.encode("utf-8")  # lone surrogates cannot go into the manifest
        if "\0" in model:
            raise ValueError("model must not contain NUL")  # \u0000 is refused by paro
        self.model = model
        if dtype not in _DTYPES:
            raise ValueError("dtype must be one of %s, got %r" % (", ".join(_DTYPES), dtype))
        self.dtype = dtype
        self._torch_dtype, self._st_dtype = _DTYPES[dtype]
        self._itemsize = torch.tensor([], dtype=self._torch_dtype).element_size()
        if scale is not None:
            scale = _number(scale, "scale")
            if scale <= 0:
                raise ValueError("scale must be > 0, got %r" % scale)
        self.scale = scale
        self.steps = None if steps is None else _int(steps, "steps", 1)
        self.timestep_max = None if timestep_max is None else _number(timestep_max, "timestep_max")
        if self.timestep_max is not None and self.timestep_max <= 0:
            raise ValueError("timestep_max must be > 0")
        self.record_timesteps = (None if timesteps is None else
                                 frozenset(_number(t, "timesteps element") for t in timesteps))
        self.record_steps = (None if record_steps is None else
                             frozenset(_int(s, "record_steps element") for s in record_steps))
        if self.record_steps is not None and self.steps is None:
            raise ValueError("record_steps needs steps")
        if save_v not in (None, True, False):
            raise ValueError("save_v must be None, True or False")
        self.save_v = save_v
        self.batch_index = _int(batch_index, "batch_index")

        self.out_dir = os.fspath(out_dir)
        os.makedirs(self.out_dir, exist_ok=True)
        self.samples = []  # the manifest's "samples", in recording order
        self._files = set()
        self._current = None
        self._closed = False
        self._warned = set()

    # ---- properties ----------------------------------------------------------

    @property
    def effective_scale(self):
        """The softmax scale paro will use: scale, or 1/sqrt(head_dim)."""
        return self.scale if self.scale is not None else 1.0 / math.sqrt(self.head_dim)

    @property
    def active(self):
        """True inside a sample() block that is being recorded: record() is a
        no-op otherwise."""
        return self._current is not None and self._current.active

    @property
    def manifest_path(self):
        return os.path.join(self.out_dir, "manifest.json")

    # ---- samples -------------------------------------------------------------

    @contextlib.contextmanager
    def sample(self, prompt, timestep, step=None):
        """Record one sample: every layer's record() inside the block goes into
        <out_dir>/p{prompt}_t{timestep}.safetensors.  On leaving the block each
        layer 0..L-1 must have been recorded exactly once (RuntimeError
        otherwise, and no file is written).  If the timestep (or step) is not
        among those to record, the block records nothing and writes nothing.
        An exception inside the block discards the sample and propagates.

        prompt: integer id of the prompt (samples of one prompt share it);
        timestep: the diffusion timestep, in [0, timestep_max]; step: the
        denoising step index in [0, steps), only when steps was given."""
        self._begin(prompt, timestep, step)
        ok = False
        try:
            yield self
            ok = True
        finally:
            self._end(ok)

    def _begin(self, prompt, timestep, step):
        if self._closed:
            raise RuntimeError("the recorder is closed")
        if self._current is not None:
            raise RuntimeError("sample() blocks cannot be nested")
        prompt = _int(prompt, "prompt")
        timestep = _number(timestep, "timestep")
        tmax = 1000.0 if self.timestep_max is None else self.timestep_max
        if not 0 <= timestep <= tmax:
            raise ValueError("timestep must be in [0, %g] (timestep_max), got %r" % (tmax, timestep))
        if step is not None:
            if self.steps is None:
                raise ValueError("sample(step=...) needs Recorder(steps=...)")
            step = _int(step, "step", 0, self.steps - 1)
        elif self.record_steps is not None:
            raise ValueError("Recorder(record_steps=...) needs sample(step=...)")
        active = ((self.record_timesteps is None or timestep in self.record_timesteps) and
                  (self.record_steps is None or step in self.record_steps))
        name = "p%d_t%s.safetensors" % (prompt, _json_number(timestep))
        if active:
            if name in self._files:
                raise ValueError("%s was already recorded (same prompt and timestep)" % name)
            if len(self.samples) >= _MAX_SAMPLES:
                raise ValueError("paro reads at most %d samples" % _MAX_SAMPLES)
        entry = {"file": name, "prompt": prompt, "timestep": _json_number(timestep)}
        if step is not None:
            entry["step"] = step
        self._current = _Sample(active, name, entry, self.layers)

    def _end(self, ok):
        cur, self._current = self._current, None
        if not cur.active:
            return
        if not ok:
            if cur.writer is not None:
                cur.writer.abort()
            return
        missing = [i for i, done in enumerate(cur.recorded) if not done]
        if missing:
            if cur.writer is not None:
                cur.writer.abort()
            raise RuntimeError(
                "sample %s: %d of %d layers were not recorded (%s); nothing was written"
                % (cur.file, len(missing), self.layers, _ranges(missing)))
        cur.writer.commit()
        self._files.add(cur.file)
        self.samples.append(cur.entry)
        self._write_manifest()

    # ---- recording -----------------------------------------------------------

    def record(self, layer, q, k, v=None, scale=None):
        """Record layer `layer`'s attention inputs into the current sample.

        q, k, v: [batch, heads, N, head_dim] (or [heads, N, head_dim]), any
        device and float dtype, exactly as they enter softmax(scale q k^T) v:
        after normalisation and rotary embedding.  They are copied (detached,
        to the CPU, in the recorder's dtype) and written out; the caller's
        tensors are not touched.  scale: the softmax scale the caller uses, if
        it passes one; it must agree with the recorder's.  A no-op outside a
        sample() block and in a sample that is not recorded."""
        cur = self._current
        if cur is None or not cur.active:
            return
        layer = _int(layer, "layer", 0, self.layers - 1)
        if cur.recorded[layer]:
            raise RuntimeError("sample %s: layer %d recorded twice" % (cur.file, layer))
        if scale is not None:
            scale = _number(scale, "scale")
            if not math.isclose(scale, self.effective_scale, rel_tol=1e-6):
                raise ValueError(
                    "layer %d uses softmax scale %r but the capture says %r: pass "
                    "Recorder(scale=%r)" % (layer, scale, self.effective_scale, scale))
        keep_v = v is not None and self.save_v is not False
        if self.save_v is True and v is None:
            raise ValueError("layer %d: Recorder(save_v=True) but record() got no v" % layer)
        kinds = ("q", "k", "v") if keep_v else ("q", "k")
        if cur.kinds is not None and kinds != cur.kinds:
            raise ValueError("sample %s: layer %d was recorded %s v, earlier layers %s"
                             % (cur.file, layer, "with" if keep_v else "without",
                                "with" if "v" in cur.kinds else "without"))
        tensors = {"q": q, "k": k, "v": v}
        arrays = [(kind, self._copy(layer, kind, tensors[kind])) for kind in kinds]
        if cur.writer is None:
            cur.kinds = kinds
            cur.writer = _SampleWriter(os.path.join(self.out_dir, cur.file), self.layers, kinds,
                                       (self.heads, self.tokens, self.head_dim),
                                       self._st_dtype, self._itemsize)
        for kind, array in arrays:
            cur.writer.write(layer, kind, array)
        cur.recorded[layer] = True

    def _copy(self, layer, kind, x):
        """x as a numpy array [NH, N, D] of the stored type (bf16 as its int16
        bit pattern, since numpy has no bfloat16), little-endian."""
        what = "layer %d %s" % (layer, kind)
        if not torch.is_tensor(x):
            raise TypeError("%s must be a torch tensor, got %s" % (what, type(x).__name__))
        if not x.is_floating_point():
            raise TypeError("%s must be a float tensor, got %s" % (what, x.dtype))
        if x.dim() == 4:
            if x.shape[0] <= self.batch_index:
                raise ValueError("%s has batch %d but batch_index is %d"
                                 % (what, x.shape[0], self.batch_index))
            x = x[self.batch_index]
        elif x.dim() != 3:
            raise ValueError("%s must be [batch, heads, N, head_dim] or [heads, N, head_dim], "
                             "got shape %s" % (what, tuple(x.shape)))
        want = (self.heads, self.tokens, self.head_dim)
        if tuple(x.shape) != want:
            hint = ""
            if tuple(x.shape) == (self.tokens, self.heads, self.head_dim):
                hint = " (looks like [N, heads, head_dim]: pass x.transpose(1, 2) for a 4-d tensor)"
            raise ValueError("%s has shape %s per batch element, the capture needs [heads, N, "
                             "head_dim] = %s (N = %d text + %d visual tokens)%s"
                             % (what, tuple(x.shape), list(want), self.text_tokens,
                                self.tokens - self.text_tokens, hint))
        # One copy, straight into a fresh CPU tensor of the stored dtype: a new
        # tensor even where x is already a contiguous CPU tensor of that dtype
        # (x.to() would return x itself, and a later in-place change by the
        # caller would then reach the file).
        out = torch.empty(want, dtype=self._torch_dtype)
        with torch.no_grad():
            out.copy_(x.detach())
        finite = torch.isfinite(out)
        if not bool(finite.all()):
            h, n, d = (int(i) for i in (~finite).nonzero()[0])
            hint = ""
            if self.dtype == "f16" and bool(torch.isfinite(x.detach()[h, n, d])):
                hint = "; the value overflows float16: use dtype='bf16' or 'f32'"
            raise ValueError("%s: non-finite value %s at head %d, token %d, dim %d; paro refuses "
                             "non-finite inputs (CAPTURE.md §4)%s"
                             % (what, float(x.detach()[h, n, d]), h, n, d, hint))
        if self._torch_dtype == torch.bfloat16:
            out = out.view(torch.int16)
        array = out.numpy()
        return array.astype(array.dtype.newbyteorder("<"), copy=False)

    # ---- the manifest --------------------------------------------------------

    def manifest(self):
        """The manifest as a dict (keys in CAPTURE.md's order)."""
        m = {"format": "paro-capture", "version": 1, "model": self.model,
             "grid": list(self.grid), "text_tokens": self.text_tokens,
             "text_position": self.text_position, "layers": self.layers,
             "heads": self.heads, "head_dim": self.head_dim}
        if self.scale is not None:
            m["scale"] = self.scale
        if self.steps is not None:
            m["steps"] = self.steps
        if self.timestep_max is not None:
            m["timestep_max"] = _json_number(self.timestep_max)
        m["samples"] = list(self.samples)
        return m

    def _write_manifest(self):
        # One key per line and one sample per line: readable, and diffable.
        m = self.manifest()
        samples = m.pop("samples")
        lines = ["%s: %s" % (json.dumps(k), json.dumps(v)) for k, v in m.items()]
        lines.append('"samples": [\n  ' + ",\n  ".join(json.dumps(s) for s in samples) + "\n ]")
        text = "{\n " + ",\n ".join(lines) + "\n}\n"
        _write_atomic(self.manifest_path, text.encode("utf-8"))

    def close(self):
        """Finish: the manifest is already on disk after every sample, so this
        only checks that there is one (a capture needs at least one sample)."""
        if self._closed:
            return
        if self._current is not None:
            raise RuntimeError("close() inside a sample() block")
        self._closed = True
        if not self.samples:
            raise RuntimeError("no sample was recorded, so no manifest was written (were the "
                               "model calls inside rec.sample() blocks, and their timesteps "
                               "among those to record?)")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            # Do not mask the real error; the samples already finished stay
            # usable (their manifest is on disk).
            self._closed = True


def _ranges(numbers):
    """[0, 1, 2, 5] -> "0-2,5"."""
    out = []
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ",".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in out)


# ---- diffusers-style attention modules ---------------------------------------

def _sdpa_inputs(args, kwargs):
    """query, key, value, attn_mask, is_causal, scale of a call to
    scaled_dot_product_attention(query, key, value, attn_mask=None,
    dropout_p=0.0, is_causal=False, scale=None, ...), positional or not."""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
    got = dict(zip(names, args))
    for name in names:
        if name in kwargs:
            got[name] = kwargs[name]
    return (got.get("query"), got.get("key"), got.get("value"), got.get("attn_mask"),
            got.get("is_causal", False), got.get("scale"))


class _CaptureProcessor:
    """Stands in for an attention module's processor: calls the real one with
    torch.nn.functional.scaled_dot_product_attention patched, so that the q, k,
    v reaching the kernel (after norm and rotary embedding, [batch, heads, N,
    D]) are recorded as this module's layer before the real SDPA runs on the
    very same arguments."""

    def __init__(self, inner, recorder, layer):
        self.inner = inner
        self.recorder = recorder
        self.layer = layer
        # diffusers' Attention.forward passes on only the keyword arguments
        # named in inspect.signature(processor.__call__) (image_rotary_emb,
        # ...) and drops the others with a warning.  `processor.__call__` finds
        # this instance attribute first, so give it the inner signature;
        # calling `processor(...)` still goes through the class's __call__.
        def call(*args, **kwargs):
            return self._call(*args, **kwargs)
        try:
            call.__signature__ = inspect.signature(inner.__call__)
        except (TypeError, ValueError):
            pass
        self.__call__ = call

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):
        # Anything else (e.g. _attention_backend) is the inner processor's.
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def _call(self, *args, **kwargs):
        rec = self.recorder
        if not rec.active:
            return self.inner(*args, **kwargs)
        nnf = torch.nn.functional
        real = getattr(nnf, "scaled_dot_product_attention", None)
        if real is None:
            raise RuntimeError("torch %s has no scaled_dot_product_attention (torch >= 2.0): "
                               "call Recorder.record() from your attention code instead"
                               % torch.__version__)
        calls = []
        layer = self.layer

        def spy(*a, **kw):
            if not calls:
                q, k, v, mask, causal, scale = _sdpa_inputs(a, kw)
                if mask is not None and "mask" not in rec._warned:
                    rec._warned.add("mask")
                    warnings.warn("layer %d calls scaled_dot_product_attention with an attention "
                                  "mask; the capture records Q and K only, and paro calibrates "
                                  "unmasked attention" % layer, stacklevel=2)
                if causal and "causal" not in rec._warned:
                    rec._warned.add("causal")
                    warnings.warn("layer %d uses causal attention; paro calibrates full "
                                  "attention" % layer, stacklevel=2)
                rec.record(layer, q, k, v, scale=scale)
            calls.append(None)
            return real(*a, **kw)

        nnf.scaled_dot_product_attention = spy
        try:
            out = self.inner(*args, **kwargs)
        finally:
            nnf.scaled_dot_product_attention = real
        if not calls:
            raise RuntimeError(
                "layer %d: the attention processor %s did not call "
                "torch.nn.functional.scaled_dot_product_attention, so nothing was recorded (use "
                "diffusers' default native attention backend while capturing, or call "
                "Recorder.record() yourself)" % (layer, type(self.inner).__name__))
        if len(calls) > 1 and "calls" not in rec._warned:
            rec._warned.add("calls")
            warnings.warn("layer %d calls scaled_dot_product_attention %d times; only the first "
                          "call is recorded" % (layer, len(calls)), stacklevel=2)
        return out


def _attention_modules(model_or_modules):
    """The modules with a processor, in named_modules() order for a model, or
    as given for a list."""
    if isinstance(model_or_modules, torch.nn.Module):
        return [m for _, m in model_or_modules.named_modules() if hasattr(m, "processor")]
    modules = list(model_or_modules)
    for i, m in enumerate(modules):
        if not hasattr(m, "processor"):
            raise TypeError("element %d (%s) has no processor attribute" % (i, type(m).__name__))
    return modules


def _set_processor(module, processor):
    if callable(getattr(module, "set_processor", None)):
        module.set_processor(processor)
    else:
        module.processor = processor


def wrap_diffusers(model_or_modules, recorder):
    """Record the attention of diffusers-style modules (those with a
    .processor, set through .set_processor()): the module found i-th in
    model.named_modules() (or given i-th in a list) is layer i, and there must
    be exactly recorder.layers of them.  Outside an active sample the wrapper
    only calls the real processor.  Returns the modules; unwrap() undoes it."""
    modules = _attention_modules(model_or_modules)
    if len(modules) != recorder.layers:
        raise ValueError("found %d attention modules with a processor, but the recorder has "
                         "layers=%d" % (len(modules), recorder.layers))
    for m in modules:
        if isinstance(m.processor, _CaptureProcessor):
            raise ValueError("already wrapped: call unwrap() first")
    for layer, m in enumerate(modules):
        _set_processor(m, _CaptureProcessor(m.processor, recorder, layer))
    return modules


def unwrap(model_or_modules):
    """Put back the processors wrap_diffusers() replaced; returns how many."""
    count = 0
    for m in _attention_modules(model_or_modules):
        if isinstance(m.processor, _CaptureProcessor):
            _set_processor(m, m.processor.inner)
            count += 1
    return count


# ---- one sample per model call ----------------------------------------------

class CallSampler:
    """Opens a sample around every call of `model` (e.g. a pipeline's
    transformer), so that a whole pipeline run can be captured unchanged.

        sampler = CallSampler(pipe.transformer, rec)
        sampler.start(prompt=0)     # before each pipeline call: resets the step count
        pipe(...)
        sampler.remove()

    The timestep is the model call's keyword argument `timestep_arg` (a number
    or a tensor: its element batch_index, or its only element) times
    timestep_scale (1000 for Flux, whose pipeline passes t / 1000).  Calls are
    counted from start(): call c is step c // calls_per_step, and only the
    first call of each step is recorded (calls_per_step=2 where a pipeline
    calls the model twice a step, e.g. Flux with true CFG: conditional first).
    The step goes into the sample when the recorder has steps.  Without
    start() (or after stop()) calls pass through untouched.

    It replaces model.forward by an instance attribute; remove() (or leaving
    a with block) restores it."""

    def __init__(self, model, recorder, timestep_arg="timestep", timestep_scale=1.0,
                 calls_per_step=1):
        self.model = model
        self.recorder = recorder
        self.timestep_arg = timestep_arg
        self.timestep_scale = float(timestep_scale)
        self.calls_per_step = _int(calls_per_step, "calls_per_step", 1)
        self.prompt = None
        self.calls = 0
        # A forward already set on the instance (accelerate's offload hooks do
        # that) must come back on remove(); otherwise the class's is used again.
        self._own = "forward" in model.__dict__
        self._orig = model.forward
        model.forward = self._forward

    def start(self, prompt):
        """The following calls are prompt `prompt`, from step 0."""
        self.prompt = _int(prompt, "prompt")
        self.calls = 0

    def stop(self):
        self.prompt = None

    def remove(self):
        if self.model is None:
            return
        if self._own:
            self.model.forward = self._orig
        else:
            del self.model.forward
        self.model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

    def _timestep(self, t):
        rec = self.recorder
        if t is None:
            raise RuntimeError("CallSampler: the model was called without the keyword argument "
                               "%r; pass timestep_arg=" % self.timestep_arg)
        if torch.is_tensor(t):
            flat = t.detach().reshape(-1)
            t = flat[rec.batch_index if flat.numel() > rec.batch_index else 0]
        t = _number(t, "timestep") * self.timestep_scale
        # A timestep that went through bf16 may round a hair past the ends.
        tmax = 1000.0 if rec.timestep_max is None else rec.timestep_max
        if -1e-3 * tmax <= t < 0:
            t = 0.0
        elif tmax < t <= tmax * (1 + 1e-3):
            t = tmax
        return t

    def _forward(self, *args, **kwargs):
        if self.prompt is None:
            return self._orig(*args, **kwargs)
        call = self.calls
        self.calls += 1
        if call % self.calls_per_step:
            return self._orig(*args, **kwargs)
        t = self._timestep(kwargs.get(self.timestep_arg))
        step = call // self.calls_per_step if self.recorder.steps is not None else None
        with self.recorder.sample(prompt=self.prompt, timestep=t, step=step):
            return self._orig(*args, **kwargs)
