# --keep-last: every mask keeps its last block row and column (which the
# PAROAttention runtime computes whatever the mask says); they count in the
# density, which never falls below the plan's without them; the plan says so
# (version 1.2, target.keep_last), is the same bytes for 1 and 4 threads, and
# eval measures the masks as stored.
set -e
m=$FIX/cap/manifest.json
$PARO -q calibrate -m $m -o plain.paro --block 16 --density 0.7 -j 1
$PARO -q calibrate -m $m -o k1.paro --block 16 --density 0.7 --keep-last -j 1
$PARO -q calibrate -m $m -o k4.paro --block 16 --density 0.7 --keep-last -j 4
cmp k1.paro k4.paro && echo "same bytes for 1 and 4 threads"
$PARO dump k1.paro | sed -n '1p;6p'
$PARO dump plain.paro | sed -n '1p;6p'
$PARO dump --json-full k1.paro > k.json
$PARO dump --json-full plain.paro > p.json
$PARO eval -m $m -p k1.paro --json > e.json 2>/dev/null
${PYTHON:-python3} - <<'PY'
import json
k, p, e = (json.load(open(f)) for f in ("k.json", "p.json", "e.json"))
print(k["target"], p["target"])
for hk, hp, he in zip(k["heads"], p["heads"], e["heads"]):
    where = (hk["layer"], hk["head"])
    assert hk["order"] == hp["order"], where
    for b, mask in enumerate(hk["masks"]):
        assert all(mask[-1]) and all(row[-1] for row in mask), where
        share = sum(map(sum, mask)) / (len(mask) * len(mask[0]))
        assert hk["density"][b] == share, where
        assert hk["density"][b] >= hp["density"][b], where
        assert abs(he["density"][b] - share) < 1e-12, where
print("last row and column kept in all", len(k["heads"]), "heads; density as stored")
PY
