# The manifest synth writes (bf16 default, HND default, no V with --no-v).
set -e
$PARO -q synth -o cap --grid 2x3x4 --text 5 --text-position last --layers 1 --heads 2 \
    --head-dim 8 --samples 3 --seed 1 --no-v --layout NHD --model tiny
cat cap/manifest.json
