# A corrupt plan exits 3 naming the file and the byte offset; --verify
# checks a good one.
set -e
cp $FIX/plan.paro good.paro
chmod u+w good.paro
$PARO dump --verify good.paro
${PYTHON:-python3} - <<'PY'
b = bytearray(open("good.paro", "rb").read())
b[300] ^= 0x10
open("flipped.paro", "wb").write(b)
open("short.paro", "wb").write(b[:len(b) // 2])
open("text.paro", "wb").write(b"not a plan at all\n")
PY
for f in flipped short text missing; do
    set +e
    $PARO dump $f.paro 2>err.txt >out.txt
    rc=$?
    set -e
    echo "$rc $(wc -l < err.txt) $(wc -c < out.txt) $(cat err.txt)"
done
