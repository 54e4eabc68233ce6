# merge: shards calibrated on disjoint layers give, merged, the bytes of one
# run over all layers, whatever the order of the shards; differing settings
# and shared layers are refused (exit 2) with the key or the layer named.
m=$FIX/cap/manifest.json
# the fixture plan's settings
cal() { $PARO -q calibrate -m "$1" --block 16 --density 0.5 -j 1 -o "$2" ${3:+--layers $3} ||
    exit 1; }
cal $m l0.paro 0
cal $m l1.paro 1
$PARO -q merge l1.paro l0.paro -o merged.paro || exit 1
cmp merged.paro $FIX/plan.paro && echo "2 shards: identical to one run"
$PARO -q synth -o cap3 --grid 2x4x4 --text 4 --layers 3 --heads 2 --head-dim 8 --samples 1 \
    --seed 9 --dtype f32 || exit 1
cal cap3/manifest.json all3.paro
cal cap3/manifest.json s0.paro 0
cal cap3/manifest.json s1.paro 1
cal cap3/manifest.json s2.paro 2
$PARO merge s2.paro s0.paro s1.paro -o merged3.paro 2>/dev/null || exit 1
cmp merged3.paro all3.paro && echo "3 shards, scrambled: identical to one run"
$PARO -q calibrate -m $m --block 8 --density 0.5 -j 1 -o b8.paro --layers 1 || exit 1
$PARO -q calibrate -m $m --block 16 --density 0.3 -j 1 -o d3.paro --layers 1 || exit 1
for args in "l0.paro b8.paro" "l0.paro d3.paro" "l0.paro l0.paro" "l0.paro s1.paro" \
        "l0.paro missing.paro"; do
    $PARO merge $args -o out.paro 2>err.txt
    echo "exit $? $(cat err.txt)"
done
test ! -e out.paro && echo "no output written"
$PARO merge l0.paro 2>&1
echo "exit $?"
$PARO -q merge l0.paro -o one.paro && cmp one.paro l0.paro && echo "one plan: itself"
# tile masses travel with their layers: shards made with --tile-mass merge
# into the bytes of one --tile-mass run; mixing them with plain shards is refused
cal cap3/manifest.json tm.paro "0-2 --tile-mass"
cal cap3/manifest.json tm0.paro "0 --tile-mass"
cal cap3/manifest.json tm12.paro "1,2 --tile-mass"
$PARO -q merge tm12.paro tm0.paro -o mergedtm.paro && cmp mergedtm.paro tm.paro &&
    echo "tile masses: identical to one run"
$PARO merge tm0.paro s1.paro -o mixed.paro 2>&1
echo "exit $?"
