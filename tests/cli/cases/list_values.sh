# --layers and --samples take lists: items N or A-B, in any order, repeats
# merged; each refusal says which value and why.  --density-sweep takes
# densities in [0, 1].
m=$FIX/cap/manifest.json
$PARO -q calibrate -m $m -o any.paro --block 16 --layers 1,0-1,1 --samples 1-1,0
$PARO dump any.paro --json | python3 -c 'import json, sys
d = json.load(sys.stdin)
print("layers", d["layers"], "samples", [s["index"] for s in d["samples"]])'
for v in "0,2-1" "0,x" "1-" "0,,1" "-1" "0,0-2" "4294967296"; do
    $PARO calibrate -m $m -o bad.paro --layers "$v" 2>err
    echo "exit $? --layers $v: $(cat err)"
done
for v in "0.2,x" "1.5" "0.1,,0.2"; do
    $PARO eval -m $m -p $FIX/plan.paro --density-sweep "$v" 2>err
    echo "exit $? --density-sweep $v: $(cat err)"
done
