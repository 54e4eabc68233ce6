# eval --density-sweep --png: a PNG of recall and error against density
# (calib/eval_picture.c; tests/check_eval.c checks its pixels), the same
# bytes every time and on stdout; --png needs a sweep.
set -e
m=$CASES/../../../samples/demo/manifest.json
$PARO -q calibrate -m $m --samples 0 -o p.paro --device cpu
$PARO eval -m $m -p p.paro --density-sweep 0.1,0.3,0.5 --png sweep.png > text.txt
grep -q "density sweep" text.txt && echo "the text report is printed too"
$PARO eval -m $m -p p.paro --density-sweep 0.5,0.1,0.3 --png - | cmp - sweep.png &&
    echo "same picture on stdout, densities in any order"
${PYTHON:-python3} - <<'PY'
import struct
b = open("sweep.png", "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR" and b[-8:-4] == b"IEND"
print("sweep.png %d x %d" % struct.unpack(">II", b[16:24]))
PY
set +e
$PARO eval -m $m -p p.paro --png x.png 2>&1
echo "exit $?"
test ! -e x.png && echo "nothing written"
