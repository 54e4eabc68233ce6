#!/bin/sh
# `paro calibrate --device cuda` against `--device cpu` on the bundled sample
# and a synth capture with d = 64: the same order for every head that is not
# a near-tie (relative margin of the CPU's best combined score < 1e-3), and
# densities and recalls within 1e-3.  Exits 77 (skip) without a CUDA device.
set -eu
paro=$(cd "$(dirname "${PARO:-./paro}")" && pwd)/$(basename "${PARO:-./paro}")
python=${PYTHON:-python3}
root=$(cd "$(dirname "$0")/../.." && pwd)
if ! "$paro" version -v | grep -q '^cuda device 0'; then
    echo "SKIP: no CUDA device"
    exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/paro-cuda-XXXXXX")
trap 'rm -rf "$work"' EXIT
"$paro" -q synth -o "$work/cap" --grid 5x12x16 --text 24 --layers 2 --heads 8 --head-dim 64 \
    --samples 2 --seed 7
# five layers: the driver scores a layer while the next two are in flight,
# its sums lent by the GPU backend, and cycles through three sets of stats
"$paro" -q synth -o "$work/cap4" --grid 3x8x16 --text 16 --layers 5 --heads 4 --head-dim 64 \
    --samples 2 --seed 3
for manifest in "$root/samples/demo/manifest.json" "$work/cap/manifest.json" \
                "$work/cap4/manifest.json"; do
    for dev in cpu cuda; do
        "$paro" -q calibrate -m "$manifest" -o "$work/$dev.paro" --device $dev
        "$paro" dump --json "$work/$dev.paro" > "$work/$dev.json"
    done
    "$python" - "$work/cpu.json" "$work/cuda.json" "$manifest" <<'PY'
import json, sys
cpu, gpu = (json.load(open(p)) for p in sys.argv[1:3])
assert cpu["backend"] == "cpu" and gpu["backend"] == "cuda", (cpu["backend"], gpu["backend"])
same = ties = 0
for a, b in zip(cpu["heads"], gpu["heads"]):
    combined = sorted((s["combined"] for s in a["scores"].values()), reverse=True)
    # equivalent orders repeat a score: the runner-up is the next distinct one
    distinct = sorted(set(combined), reverse=True)
    margin = (distinct[0] - distinct[1]) / distinct[0] if len(distinct) > 1 else 1.0
    if margin < 1e-3:
        ties += 1
        continue
    assert a["order"] == b["order"], (a["layer"], a["head"], a["order"], b["order"], margin)
    same += 1
    for x, y in zip(a["density"] + a["recall"], b["density"] + b["recall"]):
        assert abs(x - y) <= 1e-3, (a["layer"], a["head"], x, y)
print(f"{sys.argv[3]}: {same} heads agree, {ties} near-ties")
PY
done
# --gpus: lanes sharing out the layers write the bytes of one GPU, with tile
# masses (on one GPU, 0,0 runs two lanes on it; with more, each its own)
"$paro" -q calibrate -m "$work/cap4/manifest.json" -o "$work/one.paro" --device cuda --tile-mass
for gpus in 0,0 0,0,0 all; do
    "$paro" -q calibrate -m "$work/cap4/manifest.json" -o "$work/lanes.paro" --gpus $gpus \
        --tile-mass
    cmp "$work/one.paro" "$work/lanes.paro"
    echo "--gpus $gpus: the same plan as one GPU"
done

# paro eval --device cuda against --device cpu on held-out samples: every
# per-head number and every sweep point within 1e-3 relative (+1e-5)
"$paro" -q calibrate -m "$work/cap/manifest.json" -o "$work/held.paro" --device cpu --samples 0
for dev in cpu cuda; do
    "$paro" eval -m "$work/cap/manifest.json" -p "$work/held.paro" --device $dev --json \
        --density-sweep 0.1,0.3,0.5 > "$work/eval-$dev.json"
done
"$python" - "$work/eval-cpu.json" "$work/eval-cuda.json" <<'PY'
import json, math, sys
cpu, gpu = (json.load(open(p)) for p in sys.argv[1:3])
worst = 0.0
def close(what, a, b):
    global worst
    if a is None or b is None:
        assert a is None and b is None, (what, a, b)
        return
    err = abs(a - b)
    assert err <= 1e-3 * abs(a) + 1e-5, (what, a, b)
    if abs(a) > 1e-4:
        worst = max(worst, err / abs(a))
for x, y in zip(cpu["heads"], gpu["heads"]):
    for key, a in x.items():
        if isinstance(a, float):
            close((x["layer"], x["head"], key), a, y[key])
        elif isinstance(a, list):
            for i, (u, v) in enumerate(zip(a, y[key])):
                close((x["layer"], x["head"], key, i), u, v)
for x, y in zip(cpu["sweep"], gpu["sweep"]):
    for key, a in x.items():
        close(("sweep", key), a, y[key])
print(f"eval: {len(cpu['heads'])} heads and {len(cpu['sweep'])} sweep points agree "
      f"(worst relative difference {worst:.2e})")
PY
