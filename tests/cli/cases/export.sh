# export: the three formats hold the same arrays under the same names; npz
# (stored) and safetensors are not compressed, so their sizes are exact.
set -e
$PARO -q export $FIX/plan.paro -o p.npz
$PARO -q export $FIX/plan.paro --to safetensors -o p.st
$PARO -q export $FIX/plan.paro -o p.json
$PARO -q export $FIX/plan.paro -o pz.npz --compress
wc -c p.npz p.st p.json | sed 's/^ *//'
${PYTHON:-python3} - <<'PY'
import json, struct, numpy as np
d = np.load("p.npz", allow_pickle=False)
z = np.load("pz.npz", allow_pickle=False)
j = json.load(open("p.json"))
for k in d.files:
    a = d[k]
    assert np.array_equal(z[k], a) and np.array_equal(np.array(j[k], dtype=a.dtype), a), k
    print(k, a.dtype.str, a.shape)
b = open("p.st", "rb").read()
n, = struct.unpack_from("<Q", b)
h = json.loads(b[8:8 + n])
print(h.pop("__metadata__"))
print([(k, v["dtype"], v["shape"]) for k, v in h.items()])
print(d["kv_num_blocks"][0, 1, 2].tolist(), d["kv_indices"][0, 1, 2, 3].tolist())
PY
