# --gpus: malformed lists and --device cpu are usage errors (exit 2) on any
# machine, before a device is looked for.  (Runs on GPUs: tests/cuda/.)
m=$FIX/cap/manifest.json
for arg in x 1-0 0,,1 -1 0-70 "0 1"; do
    $PARO calibrate -m $m -o p.paro --gpus "$arg" 2>err.txt
    echo "exit $? $(head -1 err.txt)"
done
$PARO calibrate -m $m -o p.paro --gpus 0 --device cpu 2>err.txt
echo "exit $? $(head -1 err.txt)"
test ! -e p.paro && echo "no plan written"
