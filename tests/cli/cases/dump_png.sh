# dump --png: one head (mask beside the tile-mass heat map when the plan has
# tile masses) or all heads of a layer; PNG files by their signature and size.
set -e
$PARO dump $FIX/plan.paro --png head.png --layer 1 --head 2 2>warn.txt
$PARO -q dump $FIX/plan.paro --png layer.png --layer 0
$PARO -q dump $FIX/plan.paro --png - --layer 0 | cmp - layer.png
${PYTHON:-python3} - <<'PY'
import struct
for f in ("head.png", "layer.png"):
    b = open(f, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR" and b[-8:-4] == b"IEND"
    print(f, "%d x %d" % struct.unpack(">II", b[16:24]))
PY
# a warning when the heat map cannot be drawn, and only then
has_tm=$(${PYTHON:-python3} -c '
import struct, sys
b = open(sys.argv[1], "rb").read()
n, = struct.unpack_from("<I", b, 24)
print(int(any(struct.unpack_from("<I", b, 64 + 48 * i)[0] == 8 for i in range(n))))' $FIX/plan.paro)
if grep -q "has no tile masses" warn.txt; then warned=1; else warned=0; fi
test $warned != $has_tm && echo "a warning exactly when the plan has no tile masses"
