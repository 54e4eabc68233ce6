# Usage errors exit 2 and write nothing.
m=$FIX/cap/manifest.json
for args in "-o out.paro" "-m $m" "-m $m -o out.paro --density 0.3 --recall 0.9" \
            "-m $m -o out.paro --density 1.5" "-m $m -o out.paro --layers 7" \
            "-m $m -o out.paro --block 0" "-m $m -o out.paro --block 16x" \
            "-m $m -o out.paro --device tpu" "-m $m -o out.paro -j 0" \
            "-m $m -o out.paro extra" "-m $m -o out.paro --samples 5" \
            "-m $m -o out.paro --samples random:0"; do
    $PARO calibrate $args 2>/dev/null
    echo "$? $args" | sed "s|$FIX|FIX|"
done
test ! -e out.paro && echo "nothing written"
