# The same values in HND and NHD layout give the same plan bytes.
set -e
common="--grid 2x5x6 --text 4 --layers 2 --heads 3 --head-dim 16 --samples 2 --seed 5 --dtype f16"
$PARO -q synth -o hnd $common --layout HND
$PARO -q synth -o nhd $common --layout NHD
! cmp -s hnd/s000.safetensors nhd/s000.safetensors
$PARO -q calibrate -m hnd/manifest.json -o hnd.paro --block 8
$PARO -q calibrate -m nhd/manifest.json -o nhd.paro --block 8
cmp hnd.paro nhd.paro
echo ok
