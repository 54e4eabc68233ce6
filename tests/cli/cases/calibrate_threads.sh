# Byte-identical plans whatever the thread count, and run to run.
set -e
m=$FIX/cap/manifest.json
$PARO -q calibrate -m $m -o j1.paro -j 1 --block 16 --density 0.5
$PARO -q calibrate -m $m -o j2.paro -j 2 --block 16 --density 0.5
$PARO -q calibrate -m $m -o j3.paro -j 3 --block 16 --density 0.5
cmp j1.paro j2.paro
cmp j1.paro j3.paro
cmp j1.paro $FIX/plan.paro
echo ok
