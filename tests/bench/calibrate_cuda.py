#!/usr/bin/env python3
"""Benchmark of `paro calibrate --device cuda` on the reference layer of
DESIGN.md (48 heads, grid 13x30x45 + 226 text tokens, d = 64, bf16, blocks
64), against yardsticks measured in the same run on the same GPU:

1. flash_fwd_ms: PyTorch scaled_dot_product_attention forward of the layer
   with the flash backend; and cudnn_fwd_ms, the same with the cuDNN
   backend (NVIDIA's fused attention, the fastest forward torch has on
   Hopper; null where torch lacks it), as the state of the art's
   rate over the map: each forward takes one exponential per element, as
   each of paro's sweeps does;
2. naive_torch_ms: what a user would write instead: per head the fp32
   softmax map, then for each of the six orders the permuted map cut into
   tiles, summed and maxed; and naive_torch_permute_qk_ms, the other natural
   way: per head and order, permute Q and K and compute the map again;
3. paro_kernel_ms: paro's kernels on the same Q/K (CUDA events, median),
   the default design (the first order with the row statistics in one
   sweep, then one sweep per other order); paro_command_ms: `paro calibrate
   --device cuda` from the files, whole; and the other designs on the same
   Q/K, to compare (kernels.h, paro_cuda_design): paro_kernel_row_pass_ms
   (row statistics, then one sweep per order) and paro_kernel_pairs_ms (row
   statistics, then one sweep per pair of orders sharing an innermost axis,
   kernels/pair_pass.cu);
4. peak_extra_gpu_bytes: device memory paro's backend holds for the layer;
5. optionally (--disk-layers L): a capture of L layer-samples calibrated from
   disk, against the read time of its files and L kernel times: the whole
   command's efficiency (the floor, the slower of reading and the kernels,
   over the command's time), and the steady state's, which leaves out what
   a run pays once (start-up, the first read, the last scoring): the time
   of L layers less that of one, against L - 1 layer floors.  Those files
   are in the page cache, as they are right after a capture; where the page
   cache can be dropped (root), the same from a cold cache too ("cold"),
   where reading the disk is the floor.

Run from the repository root on the GPU machine after `make bench`:
    python3 tests/bench/calibrate_cuda.py --commit $(git rev-parse HEAD) \
        --out tests/bench/results/calibrate-cuda.json
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

GRID = (13, 30, 45)
TEXT = 226
HEADS = 48
HEAD_DIM = 64
BLOCK = 64
ORDERS = ["FHW", "FWH", "HFW", "HWF", "WFH", "WHF"]


def run(cmd, **kw):
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, **kw)


def cuda_ms(fn, warmup=3, repeat=10):
    """Median milliseconds of fn() timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def load_layer(path, layer=0):
    """Q, K, V of one layer of a safetensors sample file, [heads, N, d] bf16."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    out = []
    for kind in "qkv":
        t = header[f"layers.{layer}.{kind}"]
        begin, end = t["data_offsets"]
        raw = bytearray(data[8 + n + begin : 8 + n + end])
        assert t["dtype"] == "BF16"
        x = torch.frombuffer(raw, dtype=torch.bfloat16).reshape(t["shape"])
        out.append(x)
    return out


def permutation(order, grid, text):
    """Capture index at each permuted position (text first), PLAN.md's rule."""
    sizes = dict(zip("FHW", grid))
    strides = {"F": grid[1] * grid[2], "H": grid[2], "W": 1}
    a, b, c = order
    idx = (
        torch.arange(sizes[a]).view(-1, 1, 1) * strides[a]
        + torch.arange(sizes[b]).view(1, -1, 1) * strides[b]
        + torch.arange(sizes[c]).view(1, 1, -1) * strides[c]
    ).reshape(-1) + text
    return torch.cat([torch.arange(text), idx])


def naive_calibration(q, k, scale, perms, block):
    """Per head: fp32 map, softmax, then each order's tile sums and maxes."""
    n = q.shape[1]
    nb = (n + block - 1) // block
    pad = nb * block - n
    out = []
    for h in range(q.shape[0]):
        s = (q[h].float() @ k[h].float().T) * scale
        p = torch.softmax(s, dim=-1)
        del s
        for perm in perms:
            pp = p[perm][:, perm]
            pp = F.pad(pp, (0, pad, 0, pad))
            tiles = pp.view(nb, block, nb, block)
            out.append((tiles.sum(dim=(1, 3)), tiles.amax(dim=(1, 3))))
            del pp, tiles
    return out


def naive_calibration_qk(q, k, scale, perms, block):
    """Per head and order: permute Q and K instead of the map, then the fp32
    map, softmax, tile sums and maxes (recomputes the map six times)."""
    n = q.shape[1]
    nb = (n + block - 1) // block
    pad = nb * block - n
    out = []
    for h in range(q.shape[0]):
        for perm in perms:
            s = (q[h][perm].float() @ k[h][perm].float().T) * scale
            p = F.pad(torch.softmax(s, dim=-1), (0, pad, 0, pad))
            del s
            tiles = p.view(nb, block, nb, block)
            out.append((tiles.sum(dim=(1, 3)), tiles.amax(dim=(1, 3))))
            del p, tiles
    return out


def drop_page_cache():
    """Empties the page cache (root only); whether it could."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paro", default="./paro")
    ap.add_argument("--bench", default="build/tests/bench_cuda")
    ap.add_argument("--work", default="/tmp/paro-bench")
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--out", default=None)
    ap.add_argument("--naive-heads", type=int, default=HEADS,
                    help="heads timed for the naive calibration (scaled to 48)")
    ap.add_argument("--disk-layers", type=int, default=0)
    args = ap.parse_args()

    os.makedirs(args.work, exist_ok=True)
    ref = os.path.join(args.work, "ref")
    grid = "x".join(map(str, GRID))
    if not os.path.exists(os.path.join(ref, "manifest.json")):
        run([args.paro, "-q", "synth", "-o", ref, "--grid", grid, "--text", str(TEXT),
             "--layers", "1", "--heads", str(HEADS), "--head-dim", str(HEAD_DIM),
             "--samples", "1", "--dtype", "bf16", "--seed", "1"])
    q, k, v = (x.cuda().contiguous() for x in load_layer(os.path.join(ref, "s000.safetensors")))
    n = q.shape[1]
    scale = HEAD_DIM ** -0.5
    result = {
        "gpu": torch.cuda.get_device_name(0),
        "commit": args.commit,
        "command": " ".join(sys.argv),
        "shape": {"heads": HEADS, "grid": list(GRID), "text_tokens": TEXT, "tokens": n,
                  "head_dim": HEAD_DIM, "dtype": "bf16", "block": BLOCK},
        "torch": torch.__version__,
        # paro's build: version, plan format and the CUDA architecture it was built for
        "paro_build": subprocess.run([args.paro, "version"], check=True, capture_output=True,
                                     text=True).stdout.splitlines(),
    }

    # 1. flash forward of the layer
    from torch.nn.attention import SDPBackend, sdpa_kernel
    qb, kb, vb = (x.unsqueeze(0) for x in (q, k, v))
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        result["flash_fwd_ms"] = cuda_ms(lambda: F.scaled_dot_product_attention(qb, kb, vb), 5, 20)
    try:
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            result["cudnn_fwd_ms"] = cuda_ms(lambda: F.scaled_dot_product_attention(qb, kb, vb), 5, 20)
    except RuntimeError as e:  # no cuDNN attention in this torch or on this GPU
        print(f"cudnn forward: {e}", file=sys.stderr)
        result["cudnn_fwd_ms"] = None
    # elements of the map (heads x tokens^2) per millisecond, to compare rates
    result["map_elements"] = HEADS * n * n

    # 2. naive PyTorch calibration
    perms = [permutation(o, GRID, TEXT).cuda() for o in ORDERS]
    heads = min(args.naive_heads, HEADS)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    ms = cuda_ms(lambda: naive_calibration(q[:heads], k[:heads], scale, perms, BLOCK), 1, 3)
    result["naive_torch_ms"] = ms * HEADS / heads
    result["naive_torch_heads_timed"] = heads
    result["naive_torch_peak_extra_bytes"] = torch.cuda.max_memory_allocated() - base
    ms = cuda_ms(lambda: naive_calibration_qk(q[:heads], k[:heads], scale, perms, BLOCK), 1, 3)
    result["naive_torch_permute_qk_ms"] = ms * HEADS / heads

    # 3. paro: kernels alone, and the whole command from the files
    manifest = os.path.join(ref, "manifest.json")
    def bench_kernels(design):
        return json.loads(subprocess.run([args.bench, manifest, "0", "20", str(BLOCK), str(design)],
                                         check=True, capture_output=True, text=True).stdout)
    bench = bench_kernels(0)
    result["paro_kernel_ms"] = bench["kernel_ms_median"]
    result["paro_kernel_ms_min"] = bench["kernel_ms_min"]
    result["peak_extra_gpu_bytes"] = bench["device_bytes"]
    result["device"] = bench["device"]
    for design, key in ((1, "row_pass"), (2, "pairs")):
        older = bench_kernels(design)
        result[f"paro_kernel_{key}_ms"] = older["kernel_ms_median"]
        result[f"{key}_extra_gpu_bytes"] = older["device_bytes"]
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        run([args.paro, "-q", "calibrate", "--device", "cuda", "-m", manifest,
             "-o", os.path.join(args.work, "ref.paro")])
        times.append((time.perf_counter() - t0) * 1000)
    result["paro_command_ms"] = statistics.median(times)

    result["ratio_kernel_to_flash"] = result["paro_kernel_ms"] / result["flash_fwd_ms"]
    if result["cudnn_fwd_ms"]:
        result["ratio_kernel_to_cudnn"] = result["paro_kernel_ms"] / result["cudnn_fwd_ms"]
    result["speedup_vs_naive"] = result["naive_torch_ms"] / result["paro_kernel_ms"]
    result["speedup_vs_naive_permute_qk"] = result["naive_torch_permute_qk_ms"] / result["paro_kernel_ms"]

    # 5. many layer-samples from disk
    if args.disk_layers:
        big = os.path.join(args.work, "disk")
        if not os.path.exists(os.path.join(big, "manifest.json")):
            run([args.paro, "-q", "synth", "-o", big, "--grid", grid, "--text", str(TEXT),
                 "--layers", str(args.disk_layers), "--heads", str(HEADS), "--head-dim",
                 str(HEAD_DIM), "--samples", "1", "--dtype", "bf16", "--seed", "2", "--no-v"])
        files = [os.path.join(big, f) for f in sorted(os.listdir(big))]
        def read_files():
            t0 = time.perf_counter()
            nbytes = 0
            for path in files:
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 24):
                        nbytes += len(chunk)
            return nbytes, time.perf_counter() - t0
        nbytes, read_s = read_files()
        def calibrate_s(*extra):
            t0 = time.perf_counter()
            run([args.paro, "-q", "calibrate", "--device", "cuda", "-m",
                 os.path.join(big, "manifest.json"), "-o", os.path.join(args.work, "disk.paro"),
                 *extra])
            return time.perf_counter() - t0
        command_s = statistics.median(calibrate_s() for _ in range(3))
        one_layer_s = statistics.median(calibrate_s("--layers", "0") for _ in range(3))
        kernel_s = args.disk_layers * result["paro_kernel_ms"] / 1000
        floor = max(read_s, kernel_s)
        steady_floor = floor * (args.disk_layers - 1) / args.disk_layers
        result["disk"] = {"layer_samples": args.disk_layers, "bytes": nbytes,
                          "read_s": read_s, "read_gbps": nbytes / read_s / 1e9,
                          "kernel_s": kernel_s, "command_s": command_s,
                          "one_layer_command_s": one_layer_s,
                          "efficiency": floor / command_s,
                          "steady_state_efficiency": steady_floor / (command_s - one_layer_s)}
        verbose = subprocess.run([args.paro, "-vv", "calibrate", "--device", "cuda", "-m",
                                  os.path.join(big, "manifest.json"), "-o",
                                  os.path.join(args.work, "disk-v.paro")],
                                 check=True, capture_output=True, text=True)
        result["disk"]["time_split"] = [line for line in verbose.stderr.splitlines()
                                        if line.startswith("paro: time:")]
        if drop_page_cache():
            _, cold_read_s = read_files()
            drop_page_cache()
            cold_command_s = calibrate_s()
            cold_floor = max(cold_read_s, kernel_s)
            result["disk"]["cold"] = {"read_s": cold_read_s,
                                      "read_gbps": nbytes / cold_read_s / 1e9,
                                      "command_s": cold_command_s,
                                      "efficiency": cold_floor / cold_command_s}

    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
