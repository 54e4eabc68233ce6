# Broken manifests exit 3 with one line naming the file and the problem, and
# leave the output path alone.
cp -r $FIX/cap cap && chmod -R u+w cap
try() { # python-expression-editing-the-manifest-dict
    ${PYTHON:-python3} - "$1" <<'PY'
import json, sys
m = json.load(open("cap/manifest.json"))
exec(sys.argv[1])
open("cap/bad.json", "w").write(json.dumps(m) if not isinstance(m, str) else m)
PY
    $PARO calibrate -m cap/bad.json -o out.paro 2>err.txt
    echo "$? $(wc -l < err.txt) $(cat err.txt)"
    test ! -e out.paro || echo "output written!"
}
try 'del m["grid"]'
try 'm["grid"] = [2, 6]'
try 'm["grid"] = [2, 0, 8]'
try 'm["Grid"] = m.pop("grid")'
try 'm["colour"] = "blue"'
try 'm["version"] = 2'
try 'm["format"] = "paro-plan"'
try 'm["text_position"] = "middle"'
try 'm["layout"] = "NDH"'
try 'm["heads"] = 4.5'
try 'm["samples"] = []'
try 'm["samples"][1]["timestep"] = 1200'
try 'm["samples"][0]["file"] = "/etc/passwd"'
try 'm["samples"][0]["file"] = "../cap/s000.safetensors"'
try 'm["samples"][0]["step"] = 3'
try 'm["tensor_names"] = {"q": "layers.q"}'
try 'm = json.dumps(m)[:-1]'
try 'm = json.dumps(m) + " x"'
try 'm = json.dumps(m).replace("\"grid\"", "\"grid\": [1,1,1], \"grid\"", 1)'
# Valid JSON but the tensors do not match it.
try 'm["heads"] = 8'
try 'm["grid"] = [2, 6, 9]'
try 'm["head_dim"] = 32'
try 'm["layout"] = "NHD"'
try 'm["tensor_names"] = {"q": "blocks.{layer}.q"}'
try 'm["layers"] = 3'
try 'm["samples"][1]["file"] = "missing.safetensors"'
