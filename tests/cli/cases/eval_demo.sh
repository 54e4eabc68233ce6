# The bundled sample: a plan calibrated on sample 0, evaluated on held-out
# sample 1.  The chosen orders beat capture order at equal density: higher
# recall, lower sparse-output error.  (--device cpu: the same plan bytes on a
# machine with a GPU, where auto would take the CUDA backend.)
set -e
m=$CASES/../../../samples/demo/manifest.json
$PARO -q calibrate -m $m --samples 0 -o p.paro --device cpu
$PARO eval -m $m -p p.paro
