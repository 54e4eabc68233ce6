# Writes that fail (a file-size limit standing in for a full disk) exit 1
# with a message, leave no plan and no temporary file; the layers journalled
# before the failure resume into the same plan bytes.
set -e
$PARO -q synth -o cap --grid 2x8x8 --text 8 --layers 2 --heads 4 --head-dim 32 --samples 1 --seed 9
set +e
(ulimit -f 8; $PARO calibrate -m cap/manifest.json -o out.paro --block 16 2>err.txt)
echo "exit $?"
set -e
test ! -e out.paro && echo "no plan"
ls | grep -c tmp || true
sed 's/: File too large.*/: File too large/' err.txt | cut -c1-60
# the finished layers stay in the journal: with room again, --resume writes
# the plan of an uninterrupted run without computing anything
test -s out.paro.journal && echo "journal kept"
$PARO calibrate -m cap/manifest.json -o out.paro --block 16 --resume 2>err.txt
echo "exit $?"
grep -o 'resuming: 2 of 2 layers' err.txt
$PARO -q calibrate -m cap/manifest.json -o ref.paro --block 16
cmp out.paro ref.paro && echo "same bytes"
# a limit the first journal record does not fit in: no journal is left either
rm out.paro
set +e
(ulimit -f 1; $PARO calibrate -m cap/manifest.json -o out.paro --block 16 2>err.txt)
echo "exit $?"
set -e
sed 's/: File too large.*/: File too large/' err.txt | cut -c1-60
ls | grep -E 'out|tmp' || echo "nothing left"
