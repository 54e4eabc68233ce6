"""Benchmark: dense attention (SDPA) against paro plans run through
FlexAttention, on one layer of a capture, on a CUDA GPU.

    python3 samples/runtime/bench.py --capture ref/manifest.json \\
        --plans ref_d20.paro ref_d30.paro ref_d50.paro --sample 1 --out bench.json

For each plan: the median time (CUDA events, after warm-up, torch.compile'd
flex_attention) of the kernel on inputs already in the heads' orders and of
the whole module (permute q, k, v; attend; un-permute), the speedup over
dense SDPA, and the output error against a dense fp32 reference (relative L2
and cosine), plus dense FlexAttention (every tile) to separate the kernel's
own speed from the sparsity.  Results go to stdout and, as JSON, to --out,
with the GPU name, the versions and the git commit.  samples/runtime/README.md
says how to make the capture and the plans.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import paro_runtime as pr  # noqa: E402


def git_commit():
    root = os.path.join(HERE, "..", "..")
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], check=True,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain",
                                "--untracked-files=no"], check=True, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True).stdout.strip() != ""
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", None


def time_ms(torch, fn, warmup, iters):
    """Median milliseconds of fn over iters runs, each between two CUDA
    events on the current stream, after warmup runs; the runs are queued
    back to back and synchronised once, so host overhead hides behind the
    GPU work as it would in a model."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(iters)]
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in events)


def errors(out, ref):
    """Relative L2 and cosine of out against ref over the whole
    [batch, heads, N, d] output (sums in fp64)."""
    o, r = out.double().flatten(), ref.double().flatten()
    rel = (o - r).norm() / r.norm()
    cos = (o @ r) / (o.norm() * r.norm())
    return float(rel), float(cos)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--capture", required=True, help="the capture's manifest.json (with V)")
    ap.add_argument("--plans", nargs="+", required=True, help="plans calibrated with --block 128")
    ap.add_argument("--layer", type=int, default=0, help="model layer id [default: 0]")
    ap.add_argument("--sample", type=int, default=0, help="capture sample [default: 0]")
    ap.add_argument("--warmup", type=int, default=10, help="untimed runs first [default: 10]")
    ap.add_argument("--iters", type=int, default=50, help="timed runs [default: 50]")
    ap.add_argument("--out", required=True, help="where to write the results as JSON")
    args = ap.parse_args()

    ok, why = pr.flex_attention_available()
    if not ok:
        sys.exit("bench.py: needs FlexAttention on a CUDA GPU: " + why)
    import torch
    from torch.nn.attention.flex_attention import BlockMask
    F = torch.nn.functional

    (q, k, v), manifest = pr.read_capture_layer(args.capture, args.sample, args.layer)
    heads, n, d = q.shape
    scale = float(manifest.get("scale", 1.0 / d ** 0.5))
    to_gpu = lambda x: torch.from_numpy(x)[None].to("cuda", torch.bfloat16)
    q, k, v = to_gpu(q), to_gpu(k), to_gpu(v)

    # The reference: dense attention in fp32, a head at a time so that even
    # SDPA's math fallback (one N x N map) fits.
    ref = torch.cat([F.scaled_dot_product_attention(q[:, h:h + 1].float(), k[:, h:h + 1].float(),
                                                    v[:, h:h + 1].float(), scale=scale)
                     for h in range(heads)], dim=1)
    dense = lambda: F.scaled_dot_product_attention(q, k, v, scale=scale)
    dense_out = dense()
    dense_ms = time_ms(torch, dense, args.warmup, args.iters)
    dense_rel, dense_cos = errors(dense_out, ref)

    # FlexAttention with every tile: the kernel's dense speed.
    nb = -(-n // pr.FLEX_BLOCK)
    arrays = [torch.as_tensor(a, device="cuda")
              for a in pr.block_mask_inputs(np.ones((heads, nb, nb), bool), n)]
    full_mask = BlockMask.from_kv_blocks(*arrays, BLOCK_SIZE=pr.FLEX_BLOCK,
                                         mask_mod=lambda b, h, qi, ki: ki < n,
                                         seq_lengths=(n, n))
    flex = pr._flex()
    flex_dense = lambda: flex(q, k, v, block_mask=full_mask, scale=scale)
    flex_dense_ms = time_ms(torch, flex_dense, args.warmup, args.iters)

    commit, dirty = git_commit()
    result = {
        "schema": "paro-runtime-bench/v1",
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "commit": commit,
        "dirty": dirty,
        "capture": args.capture,
        "layer": args.layer,
        "sample": args.sample,
        "shape": {"batch": 1, "heads": heads, "tokens": n, "head_dim": d,
                  "dtype": "bfloat16", "grid": manifest["grid"],
                  "text_tokens": manifest["text_tokens"]},
        "warmup": args.warmup,
        "iters": args.iters,
        "dense_sdpa_ms": dense_ms,
        "dense_sdpa_rel_l2": dense_rel,
        "dense_sdpa_cosine": dense_cos,
        "dense_flex_ms": flex_dense_ms,
        "plans": [],
    }
    print("%s, torch %s, commit %s%s" % (result["gpu"], torch.__version__, commit[:12],
                                          " (dirty)" if dirty else ""))
    print("layer %d sample %d: %d heads x %d tokens x %d, bf16" % (args.layer, args.sample,
                                                                    heads, n, d))
    print("dense SDPA      %8.3f ms   rel_l2 %.2e (bf16 against the fp32 reference)"
          % (dense_ms, dense_rel))
    print("dense flex      %8.3f ms" % flex_dense_ms)
    print("plan                 density  kernel ms  module ms  speedup  (kernel)  ideal"
          "    rel_l2   cosine")

    progress = 1.0 - manifest["samples"][args.sample]["timestep"] / manifest.get("timestep_max",
                                                                                1000.0)
    if "steps" in manifest and "step" in manifest["samples"][args.sample]:
        progress = manifest["samples"][args.sample]["step"] / manifest["steps"]
    for path in args.plans:
        plan = pr.load_plan(path)
        if (plan["tokens"], plan["num_heads"], plan["head_dim"]) != (n, heads, d):
            sys.exit("bench.py: %s is for %d tokens, %d heads of %d; the capture has %d, %d, %d"
                     % (path, plan["tokens"], plan["num_heads"], plan["head_dim"], n, heads, d))
        bucket = pr.bucket_of(progress, plan["buckets"]["count"])
        attn = pr.PlanAttention(plan, args.layer)
        qp, kp, vp = (pr.permute_tokens(x, attn.perm) for x in (q, k, v))
        kernel_ms = time_ms(torch, lambda: attn.permuted(qp, kp, vp, bucket), args.warmup,
                            args.iters)
        module_ms = time_ms(torch, lambda: attn(q, k, v, bucket), args.warmup, args.iters)
        rel, cos = errors(attn(q, k, v, bucket), ref)
        density = attn.density[bucket]
        entry = {"plan": path, "target": plan["target"], "bucket": bucket, "density": density,
                 "ideal_speedup": 1.0 / density, "kernel_ms": kernel_ms, "module_ms": module_ms,
                 "speedup": dense_ms / module_ms, "speedup_kernel": dense_ms / kernel_ms,
                 "speedup_vs_dense_flex": flex_dense_ms / kernel_ms,
                 "rel_l2": rel, "cosine": cos}
        result["plans"].append(entry)
        print("%-20s %7.3f  %9.3f  %9.3f  %6.2fx   (%5.2fx)  %5.2fx  %.2e  %.5f"
              % (os.path.basename(path)[:20], density, kernel_ms, module_ms, entry["speedup"],
                 entry["speedup_kernel"], entry["ideal_speedup"], rel, cos))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print("wrote " + args.out)


if __name__ == "__main__":
    main()
