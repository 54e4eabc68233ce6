# dump --json-full: --json plus each head's masks, per bucket nq rows of nk 0/1.
set -e
$PARO dump --json $FIX/plan.paro > plan.json
$PARO dump --json-full $FIX/plan.paro > full.json
${PYTHON:-python3} - <<'PY'
import json
d, f = json.load(open("plan.json")), json.load(open("full.json"))
nq, nk = f["blocks"]
for h, g in zip(f["heads"], d["heads"]):
    m = h.pop("masks")
    assert len(m) == len(h["density"]) and all(len(r) == nk for b in m for r in b)
    assert [sum(map(sum, b)) / (nq * nk) for b in m] == h["density"]
    assert set(x for b in m for r in b for x in r) <= {0, 1}
assert f == d
print("ok", len(f["heads"]), "heads")
PY
