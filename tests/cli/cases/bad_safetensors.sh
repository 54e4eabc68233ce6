# Broken tensor files exit 3 with one line naming the file and the problem
# (and the byte offset where there is one); the output path is left alone.
cp -r $FIX/cap cap && chmod -R u+w cap
cp cap/s001.safetensors good.safetensors
try() { # python code editing bytes b of the sample file
    ${PYTHON:-python3} - "$1" <<'PY'
import json, struct, sys
b = bytearray(open("good.safetensors", "rb").read())
n = struct.unpack("<Q", b[:8])[0]
header = json.loads(b[8:8 + n])
def set_header(h):
    global b
    raw = json.dumps(h).encode()
    raw += b" " * (-len(raw) % 8)
    b = bytearray(struct.pack("<Q", len(raw)) + raw + b[8 + n:])
exec(sys.argv[1])
open("cap/s001.safetensors", "wb").write(b)
PY
    $PARO calibrate -m cap/manifest.json -o out.paro 2>err.txt
    echo "$? $(wc -l < err.txt) $(cat err.txt)"
    test ! -e out.paro || echo "output written!"
}
try 'b = b[:len(b) - 100]'
try 'b = b[:4]'
try 'b[0:8] = struct.pack("<Q", 1 << 40)'
try 'b[0:8] = struct.pack("<Q", len(b))'
try 'b += b"\0"'
try 'header["layers.0.q"]["dtype"] = "I32"; set_header(header)'
try 'header["layers.0.q"]["dtype"] = "Q4"; set_header(header)'
try 'header["layers.1.k"]["shape"] = [4, 104, 8]; set_header(header)'
try 'header["layers.0.k"]["data_offsets"][1] -= 2; set_header(header)'
try 'header["layers.0.q"]["shape"][0] = -4; set_header(header)'
try 'del header["layers.1.k"]; set_header(header)'
try 'header["layers.1.q"]["extra"] = 1; set_header(header)'
try 'b[8] = ord("[")'
try 'struct.pack_into("<f", b, 8 + n + 40, float("nan"))'
