# The paro-eval/v1 document: its keys, per-bucket arrays, and summaries that
# agree with the heads; the warning when no sample is held out.
set -e
m=$FIX/cap/manifest.json
$PARO -q calibrate -m $m -o one.paro --samples 1 --block 16 --timestep-buckets 1
$PARO eval -m $m -p one.paro --json --density-sweep 0.2,0.9 > one.json
$PARO eval -m $m -p $FIX/plan.paro --json > all.json 2> all.err
sed "s|$FIX|FIX|" all.err
${PYTHON:-python3} - one.json all.json <<'PY'
import json, sys
one = json.load(open(sys.argv[1]))
keys = ["schema", "plan", "manifest", "model", "block", "buckets", "held_out",
        "capture_order_masks_from", "basis_samples", "samples", "warnings", "heads",
        "layers", "summary", "sweep"]
assert list(one) == keys, list(one)
assert one["schema"] == "paro-eval/v1" and one["block"] == [16, 16] and one["buckets"] == 1
assert one["held_out"] is True and one["capture_order_masks_from"] == "calibration"
assert one["basis_samples"] == [1] and [s["index"] for s in one["samples"]] == [0]
assert one["warnings"] == []
head_keys = ["layer", "head", "order", "density", "density_capture_order", "recall",
             "recall_capture_order", "density_mean", "density_capture_order_mean",
             "recall_mean", "recall_capture_order_mean", "recall_worst",
             "recall_worst_capture_order", "out_rel_l2", "out_cosine",
             "out_rel_l2_capture_order", "out_cosine_capture_order", "int8_rel_l2",
             "int4_rel_l2", "int8_rel_l2_capture_order", "int4_rel_l2_capture_order"]
assert len(one["heads"]) == 8
for i, h in enumerate(one["heads"]):
    assert list(h) == head_keys, list(h)
    assert (h["layer"], h["head"]) == (i // 4, i % 4)
    assert all(len(h[k]) == 1 for k in head_keys[3:7])
    assert h["recall"][0] == h["recall_mean"] and h["recall_worst"] == h["recall_mean"]
    assert h["int8_rel_l2"] < h["int4_rel_l2"]
    if h["order"] == "FHW":
        assert h["recall"] == h["recall_capture_order"]
summary_keys = ["heads", "density", "density_capture_order", "recall",
                "recall_capture_order", "recall_worst", "recall_worst_capture_order",
                "out_rel_l2", "out_cosine", "out_rel_l2_capture_order",
                "out_cosine_capture_order", "int8_rel_l2", "int4_rel_l2",
                "int8_rel_l2_capture_order", "int4_rel_l2_capture_order"]
s = one["summary"]
assert list(s) == summary_keys and s["heads"] == 8
mean = lambda k: sum(h[k] for h in one["heads"]) / 8
for k in summary_keys[1:]:
    want = min(h[k] for h in one["heads"]) if "worst" in k else mean(k + "_mean" if k in
        ("density", "density_capture_order", "recall", "recall_capture_order") else k)
    assert abs(s[k] - want) <= 1e-12, (k, s[k], want)
assert [l["layer"] for l in one["layers"]] == [0, 1]
assert list(one["layers"][0]) == ["layer"] + summary_keys
assert [w["target"] for w in one["sweep"]] == [0.2, 0.9]
assert list(one["sweep"][0]) == ["target", "density", "density_capture_order", "recall",
    "recall_capture_order", "out_rel_l2", "out_rel_l2_capture_order"]
assert one["sweep"][1]["recall"] > one["sweep"][0]["recall"]

every = json.load(open(sys.argv[2]))
assert every["held_out"] is False and len(every["samples"]) == 2
assert len(every["warnings"]) == 1 and "sweep" not in every
print("ok")
PY
