# Usage errors exit 2, bad input 3, a missing file 1, --device cuda 4; a
# capture without V is refused with a message saying so.
m=$FIX/cap/manifest.json
p=$FIX/plan.paro
for args in "-p $p" "-m $m" "-m $m -p $p --density-sweep 0.2,x" \
            "-m $m -p $p --density-sweep 1.5" "-m $m -p $p --device tpu" \
            "-m $m -p $p -j 0" "-m $m -p $p --samples 5" "-m $m -p $p extra" \
            "-m $m -p missing.paro" "-m $m -p $m" "-m $m -p $p --device cuda"; do
    CUDA_VISIBLE_DEVICES= $PARO eval $args >/dev/null 2>&1
    echo "$? $args" | sed "s|$FIX|FIX|g"
done
$PARO -q synth -o nov --grid 2x6x8 --text 8 --layers 2 --heads 4 --head-dim 16 --samples 2 \
    --seed 3 --dtype f32 --no-v
$PARO eval -m nov/manifest.json -p $p 2>err
echo "exit $?"
cat err
$PARO -q synth -o other --grid 2x6x9 --text 8 --layers 2 --heads 4 --head-dim 16 --samples 2
$PARO eval -m other/manifest.json -p $p 2>err
echo "exit $?"
cat err
CUDA_VISIBLE_DEVICES= $PARO eval -m $m -p $p --device cuda 2>err
echo "exit $?"
sed 's/ (.*//' err
