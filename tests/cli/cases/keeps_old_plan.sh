# A failed run leaves the previous plan untouched and no temporary files.
set -e
cp $FIX/plan.paro out.paro
chmod u+w out.paro
cp -r $FIX/cap cap && chmod -R u+w cap
head -c 1000 $FIX/cap/s000.safetensors > cap/s000.safetensors
set +e
$PARO -q calibrate -m cap/manifest.json -o out.paro 2>/dev/null
echo "exit $?"
set -e
cmp out.paro $FIX/plan.paro
ls
