# --samples picks the calibration samples; the plan records them.
set -e
m=$FIX/cap/manifest.json
$PARO -q calibrate -m $m -o one.paro --samples 1 --block 16
$PARO -q calibrate -m $m -o rnd.paro --samples random:1 --seed 3 --block 16
$PARO -q calibrate -m $m -o rnd2.paro --samples random:1 --seed 3 --block 16
cmp rnd.paro rnd2.paro
for p in one rnd; do
    $PARO dump --json $p.paro | ${PYTHON:-python3} -c '
import json, sys
d = json.load(sys.stdin)
print(sys.argv[1], [(s["index"], s["timestep"], s["bucket"]) for s in d["samples"]], d["seed"])' $p
done
