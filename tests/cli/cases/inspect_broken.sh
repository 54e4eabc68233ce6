# paro inspect lists every problem of a broken capture and exits 3: layers
# the manifest names but the files lack, a missing sample file, shapes that
# do not fit the grid, NaN in Q.  Messages go to stdout (the report), the
# summary line to stderr.
$PARO -q synth -o cap --grid 2x3x4 --text 3 --layers 2 --heads 2 --head-dim 8 --samples 2 --seed 3 --dtype f32
sed -e 's/"layers":\t2/"layers": 3/' -e 's/s001.safetensors/gone.safetensors/' cap/manifest.json > cap/more_layers.json
$PARO inspect cap/more_layers.json --no-stats 2>&1; echo "exit $?"
sed -e 's/\[2, 3, 4\]/[2, 3, 5]/' cap/manifest.json > cap/wrong_grid.json
$PARO inspect cap/wrong_grid.json --no-stats > grid.out 2>&1; echo "exit $?"
grep -v '^  layers' grid.out
# a NaN as the first element of the first tensor in data order (layers.0.q)
hl=$(od -An -tu8 -N8 cap/s000.safetensors | tr -d ' ')
printf '\000\000\300\177' | dd of=cap/s000.safetensors bs=1 seek=$((8 + hl)) conv=notrunc 2>/dev/null
$PARO inspect cap/manifest.json --json > nan.json; echo "exit $?"
grep -A1 '"file"' nan.json | sed 's/^[ \t]*//'
grep '"ok"' nan.json | sed 's/^[ \t]*//'
