# paro inspect on a valid capture: text and JSON, exit 0; one sample file
# given alone; an .npz (an export) listed with its integer arrays.
set -e
$PARO -q synth -o cap --grid 2x3x4 --text 3 --layers 2 --heads 2 --head-dim 8 --samples 2 --seed 3
$PARO inspect cap/manifest.json
$PARO inspect cap --json --no-stats | head -12
$PARO inspect cap/s001.safetensors --no-stats
$PARO -q calibrate -m cap/manifest.json -o plan.paro --block 8
$PARO -q export plan.paro -o plan.npz
$PARO inspect plan.npz
