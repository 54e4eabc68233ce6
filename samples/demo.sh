#!/bin/sh
# `make demo`: regenerate the bundled sample with `paro synth` and check it is
# byte-identical to samples/demo, calibrate it, and show the plan.
set -eu
paro=${1:-./paro}
out=build/demo
rm -rf "$out"
mkdir -p "$out"

# The recipe of samples/demo (keep in sync with samples/README.md).
set -- --grid 4x12x16 --text 8 --layers 2 --heads 6 --head-dim 32 --samples 2 \
       --dtype bf16 --seed 1 --model paro-synth-demo

echo "\$ paro synth -o $out/capture $*"
"$paro" synth -o "$out/capture" "$@" --json > "$out/planted.json"
for f in samples/demo/manifest.json samples/demo/*.safetensors; do
    if ! cmp -s "$f" "$out/capture/$(basename "$f")"; then
        echo "demo: $f differs from what paro synth makes now; regenerate samples/demo" >&2
        exit 1
    fi
done
echo "  same bytes as samples/demo: the bundled sample is reproducible"
echo
echo "\$ paro calibrate -m samples/demo/manifest.json -o $out/demo.paro --tile-mass"
"$paro" calibrate -m samples/demo/manifest.json -o "$out/demo.paro" --tile-mass
echo
echo "\$ paro dump $out/demo.paro"
"$paro" dump "$out/demo.paro"
echo
echo "planted axes (paro synth --json) vs the chosen orders' innermost axis:"
"$paro" dump --json "$out/demo.paro" > "$out/plan.json"
${PYTHON:-python3} - "$out/planted.json" "$out/plan.json" <<'PY'
import json, sys
planted = json.load(open(sys.argv[1]))["planted"]
plan = json.load(open(sys.argv[2]))
hits = sum(h["order"][-1] == planted[h["layer"]][h["head"]] for h in plan["heads"])
print(f"  {hits} of {len(plan['heads'])} heads recovered their planted axis")
PY
echo
echo "\$ paro dump $out/demo.paro --png $out/layer0.png --layer 0"
"$paro" dump "$out/demo.paro" --png "$out/layer0.png" --layer 0
echo "\$ paro dump $out/demo.paro --png $out/head0.png --layer 0 --head 0"
"$paro" dump "$out/demo.paro" --png "$out/head0.png" --layer 0 --head 0
echo "  pictures of the masks: $out/layer0.png (all heads), $out/head0.png (mask and tile masses)"
