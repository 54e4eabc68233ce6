# SIGKILL at 100 random moments of a run that overwrites a plan: the output
# path always holds the previous plan, unchanged, or the new one, whole; never
# a partial file.  (Temporary files a kill leaves beside it are ignored.)
set -e
$PARO -q synth -o cap --grid 2x8x8 --text 8 --layers 4 --heads 4 --head-dim 32 --samples 2 --seed 9
$PARO -q calibrate -m cap/manifest.json -o old.paro --block 16 --density 0.5
$PARO -q calibrate -m cap/manifest.json -o new.paro --block 16
start=$(date +%s%N)
$PARO -q calibrate -m cap/manifest.json -o probe.paro --block 16
span=$(( ($(date +%s%N) - start) / 1000000 ))   # ms one run takes
old=0 new=0 trial=0
while [ $trial -lt 100 ]; do
    cp old.paro out.paro
    delay=$(awk -v seed=$trial -v span=$span 'BEGIN { srand(seed); printf "%.3f", rand() * span * 1.2 / 1000 }')
    $PARO -q calibrate -m cap/manifest.json -o out.paro --block 16 2>/dev/null &
    pid=$!
    sleep "$delay"
    kill -KILL $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    if cmp -s out.paro old.paro; then
        old=$((old + 1))
    elif cmp -s out.paro new.paro; then
        new=$((new + 1))
    else
        echo "trial $trial (kill after $delay s): out.paro is neither plan"
        exit 1
    fi
    $PARO dump --verify out.paro >/dev/null
    trial=$((trial + 1))
done
echo "100 kills: previous or whole new plan every time"
[ $old -gt 0 ] && echo "some runs were killed before the rename"
