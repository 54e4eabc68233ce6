# The same options and seed give the same bytes; another seed does not.
set -e
$PARO -q synth -o a --grid 2x3x4 --text 2 --layers 2 --heads 2 --head-dim 8 --samples 2 --seed 9
$PARO -q synth -o b --grid 2x3x4 --text 2 --layers 2 --heads 2 --head-dim 8 --samples 2 --seed 9
# Heads on threads: the same bytes for any count (3 threads, 5 heads).
$PARO -q synth -o j1 --grid 2x3x4 --text 2 --layers 2 --heads 5 --head-dim 8 --samples 2 --seed 9 -j 1
$PARO -q synth -o j3 --grid 2x3x4 --text 2 --layers 2 --heads 5 --head-dim 8 --samples 2 --seed 9 -j 3
for f in j1/*; do cmp $f j3/$(basename $f); done
if $PARO -q synth -o j0 --seed 9 -j 0 2>err.txt; then exit 1; fi
grep -q -- "--threads" err.txt
$PARO -q synth -o c --grid 2x3x4 --text 2 --layers 2 --heads 2 --head-dim 8 --samples 2 --seed 10
ls a
for f in a/*; do cmp $f b/$(basename $f); done
! cmp -s a/s000.safetensors c/s000.safetensors
# An existing capture is not overwritten without --force.
if $PARO -q synth -o a --seed 9 2>err.txt; then exit 1; fi
grep -q "already holds a capture" err.txt
$PARO -q synth -o a --grid 2x3x4 --text 2 --layers 2 --heads 2 --head-dim 8 --samples 2 --seed 9 --force
echo ok
