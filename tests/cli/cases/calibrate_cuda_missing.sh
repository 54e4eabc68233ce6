# No GPU here (or a build without CUDA): --device cuda exits 4, writes nothing.
CUDA_VISIBLE_DEVICES= $PARO calibrate -m $FIX/cap/manifest.json -o out.paro --device cuda
rc=$?
test ! -e out.paro || exit 99
exit $rc
