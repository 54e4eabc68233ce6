# The JSON document: schema first, the metadata, then one entry per head.
set -e
$PARO dump --json $FIX/plan.paro > plan.json
${PYTHON:-python3} - plan.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
keys = list(d)
assert keys[0] == "schema" and d["schema"] == "paro-plan/v1", keys[:2]
assert keys[-1] == "heads"
assert d["grid"] == [2, 6, 8] and d["text_tokens"] == 8 and d["tokens"] == 104
assert d["block"] == [16, 16] and d["blocks"] == [7, 7]
assert d["layers"] == [0, 1] and d["num_heads"] == 4
assert [o["name"] for o in d["orders"]] == ["FHW", "FWH", "HFW", "HWF", "WFH", "WHF"]
assert d["target"] == {"mode": "density", "value": 0.5, "keep_text": True}
assert len(d["heads"]) == 8
for i, h in enumerate(d["heads"]):
    assert (h["layer"], h["head"]) == (i // 4, i % 4)
    assert set(h["scores"]) == set(o["name"] for o in d["orders"])
    best = max(h["scores"][o]["combined"] for o in h["scores"])
    assert h["scores"][h["order"]]["combined"] == best
    assert len(h["density"]) == 1 and len(h["recall"]) == 1
print("ok")
PY
