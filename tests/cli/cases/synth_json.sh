# --json prints the planted axis of every head; nothing else goes to stdout.
$PARO synth -o cap --grid 1x4x5 --text 0 --layers 2 --heads 3 --head-dim 4 --samples 1 --seed 4 --json
