# An interrupted run keeps its finished layers in PLAN.journal; --resume goes
# on from there and writes the same bytes as a run that was never stopped.
# A journal made with other settings is refused.  24 small layers: a run
# lasts long enough (~6 ms a layer) to be stopped after its first layer even
# on a slow, busy machine.
set -e
$PARO -q synth -o cap --grid 2x8x8 --text 8 --layers 24 --heads 4 --head-dim 32 --samples 2 --seed 5
$PARO -q calibrate -m cap/manifest.json -o whole.paro --block 16 -j 1
interrupt() { # extra calibrate flags...; stops the run once a layer is journalled
    $PARO -q calibrate -m cap/manifest.json -o part.paro --block 16 -j 1 "$@" 2>err.txt &
    pid=$!
    while [ "$(wc -c < part.paro.journal 2>/dev/null || echo 0)" -le 24 ]; do
        kill -0 $pid 2>/dev/null || break
        sleep 0.002
    done
    kill -INT $pid 2>/dev/null || true
    set +e
    wait $pid
    echo "exit $?"
    set -e
}
interrupt
test ! -e part.paro
test -s part.paro.journal
grep -q "rerun with --resume" err.txt && echo "message names --resume"
$PARO calibrate -m cap/manifest.json -o part.paro --block 16 -j 1 --resume 2>err.txt
grep -qE "resuming: ([1-9]|1[0-9]|2[0-3]) of 24 layers" err.txt && echo "resumed"
cmp part.paro whole.paro && echo "same bytes"
test ! -e part.paro.journal && echo "journal removed"
# other settings: refused
rm -f part.paro
interrupt --density 0.3
set +e
$PARO calibrate -m cap/manifest.json -o part.paro --block 16 -j 1 --resume 2>err.txt
echo "exit $?"
set -e
grep -q "other inputs or settings" err.txt && echo "refused"
# tile masses are saved in the journal too: a resumed --tile-mass run writes
# the bytes of an uninterrupted one; a journal made without them is refused
rm -f part.paro part.paro.journal
$PARO -q calibrate -m cap/manifest.json -o whole_tm.paro --block 16 -j 1 --tile-mass
interrupt --tile-mass
$PARO -q calibrate -m cap/manifest.json -o part.paro --block 16 -j 1 --tile-mass --resume
cmp part.paro whole_tm.paro && echo "tile masses: same bytes"
rm -f part.paro
interrupt
set +e
$PARO calibrate -m cap/manifest.json -o part.paro --block 16 -j 1 --tile-mass --resume 2>err.txt
echo "exit $?"
set -e
grep -q "other inputs or settings" err.txt && echo "refused"
# --keep-last is in the plan's settings: a journal made without it is refused
rm -f part.paro part.paro.journal
interrupt
set +e
$PARO calibrate -m cap/manifest.json -o part.paro --block 16 -j 1 --keep-last --resume 2>err.txt
echo "exit $?"
set -e
grep -q "other inputs or settings" err.txt && echo "keep-last: refused"
