# The issue's reference run: grid 5x12x16 + 24 text tokens, 2 layers x 8 heads,
# d = 64, 2 samples.  The chosen order's innermost axis is the planted axis
# for at least 95% of heads, in f32 and in bf16.
set -e
for dtype in f32 bf16; do
    $PARO -q synth -o cap-$dtype --grid 5x12x16 --text 24 --layers 2 --heads 8 \
        --head-dim 64 --samples 2 --seed 21 --dtype $dtype --json > planted-$dtype.json
    $PARO -q calibrate -m cap-$dtype/manifest.json -o $dtype.paro -j 2
    $PARO dump --json $dtype.paro > plan-$dtype.json
    ${PYTHON:-python3} - planted-$dtype.json plan-$dtype.json $dtype <<'PY'
import json, sys
planted = json.load(open(sys.argv[1]))["planted"]
plan = json.load(open(sys.argv[2]))
heads = plan["heads"]
hits = sum(h["order"][-1] == planted[h["layer"]][h["head"]] for h in heads)
assert len(heads) == 16, len(heads)
assert hits * 100 >= 95 * len(heads), (hits, len(heads))
for h in heads:
    assert h["density"] == [0.25], h["density"]
    assert 0.0 < h["recall"][0] <= 1.0
print(sys.argv[3], "ok")
PY
done
