# Writes that fail (a file-size limit standing in for a full disk) exit 1
# with a message, leave no plan and no temporary file.
set -e
$PARO -q synth -o cap --grid 2x8x8 --text 8 --layers 2 --heads 4 --head-dim 32 --samples 1 --seed 9
set +e
(ulimit -f 8; $PARO calibrate -m cap/manifest.json -o out.paro --block 16 2>err.txt)
echo "exit $?"
set -e
test ! -e out.paro && echo "no plan"
ls | grep -c tmp || true
sed 's/: File too large.*/: File too large/' err.txt | cut -c1-60
