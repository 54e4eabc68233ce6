# Byte-identical results whatever the thread count, per head (-v), with
# timestep buckets and a density sweep, as text and as JSON.
set -e
$PARO -q synth -o cap --grid 2x4x6 --text 4 --layers 1 --heads 3 --head-dim 16 --samples 4 --seed 5
$PARO -q calibrate -m cap/manifest.json -o p.paro --samples 0,2 --timestep-buckets 2 \
    --block 8 --density 0.5
for j in 1 2 3; do
    $PARO -v eval -m cap/manifest.json -p p.paro --density-sweep 0.3,0.6 -j $j > text$j.txt
    $PARO eval -m cap/manifest.json -p p.paro --density-sweep 0.3,0.6 -j $j --json > json$j.txt
done
cmp text1.txt text2.txt
cmp text1.txt text3.txt
cmp json1.txt json2.txt
cmp json1.txt json3.txt
cat text1.txt
