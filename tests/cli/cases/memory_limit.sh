# A run that would need more host memory than --max-memory allows is refused
# before it starts, with the numbers; nothing is written.
$PARO calibrate -m $FIX/cap/manifest.json -o out.paro --block 16 -j 2 --max-memory 64K
echo "exit $?"
test ! -e out.paro && echo "nothing written"
$PARO calibrate -m $FIX/cap/manifest.json -o out.paro --max-memory lots 2>/dev/null
echo "exit $?"
