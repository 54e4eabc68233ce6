# Every command answers --help on stdout with exit 0, and 'paro help CMD' too.
set -e
for c in calibrate dump synth version; do
    $PARO $c --help > $c.txt
    grep -q "^usage: paro $c" $c.txt
    $PARO help $c | cmp - $c.txt
done
echo ok
