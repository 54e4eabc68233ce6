# Timestep buckets: masks per bucket; an empty bucket is a usage error that
# names it; --dense-until makes early buckets dense.
m=$FIX/cap/manifest.json
$PARO -q calibrate -m $m -o b2.paro --block 16 --timestep-buckets 2 --dense-until 0.5 || exit 1
$PARO dump --json b2.paro | ${PYTHON:-python3} -c '
import json, sys
d = json.load(sys.stdin)
print(d["buckets"], [s["bucket"] for s in d["samples"]])
for h in d["heads"][:2]:
    print(h["layer"], h["head"], h["density"], h["recall"][0])'
$PARO -q calibrate -m $m -o b3.paro --block 16 --timestep-buckets 3
echo "exit $?"
test ! -e b3.paro
