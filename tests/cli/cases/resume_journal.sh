# SIGTERM stops a run like Ctrl-C does, with exit 143: the finished layers
# are in the journal, there is no plan and no temporary file.  The journal is
# checksummed: a record cut short (a kill while it was being appended) or
# damaged is recomputed, and the resumed plan still has the bytes of a run
# that was never stopped.  A journal made from other input files (the digest
# takes each sample's size and modification time) is refused, and so is a
# file that is not a journal.
set -e
$PARO -q synth -o cap --grid 2x8x8 --text 8 --layers 24 --heads 4 --head-dim 32 --samples 2 --seed 5
$PARO -q calibrate -m cap/manifest.json -o whole.paro --block 16 -j 1
interrupt() { # signal: stops the run once three layers are journalled (one, the first time)
    $PARO -q calibrate -m cap/manifest.json -o part.paro --block 16 -j 1 2>err.txt &
    pid=$!
    # 24 header bytes, then one record per layer
    while [ "$(wc -c < part.paro.journal 2>/dev/null || echo 0)" -le $((24 + 2 * rec)) ]; do
        kill -0 $pid 2>/dev/null || break
        sleep 0.002
    done
    kill -$1 $pid 2>/dev/null || true
    set +e
    wait $pid
    echo "exit $?"
    set -e
}
resume() { # what --resume says and does
    set +e
    $PARO calibrate -m cap/manifest.json -o part.paro --block 16 -j 1 --resume 2>err.txt
    echo "exit $?"
    set -e
}
rec=0
interrupt TERM
test ! -e part.paro && echo "no plan"
ls | grep tmp || echo "no temporary file"
grep -q "rerun with --resume" err.txt && echo "message names --resume"
# a record is u32 length, u32 CRC-32, then that many bytes
rec=$(( $(od -An -tu4 -j24 -N4 part.paro.journal | tr -d ' ') + 8 ))
resume
grep -qE "resuming: ([1-9]|1[0-9]|2[0-3]) of 24 layers" err.txt && echo "resumed"
cmp part.paro whole.paro && echo "same bytes"
# a record cut short by a kill in the middle of an append
interrupt INT
records=$(( ($(wc -c < part.paro.journal) - 24) / rec ))
head -c $(( $(wc -c < part.paro.journal) - 5 )) part.paro.journal > cut && mv cut part.paro.journal
resume
grep -q "resuming: $((records - 1)) of 24 layers" err.txt && echo "the cut record is recomputed"
cmp part.paro whole.paro && echo "cut record: same bytes"
# a damaged byte in the second record: it and what follows are recomputed
rm -f part.paro
interrupt INT
printf '\377' | dd of=part.paro.journal bs=1 seek=$((24 + rec + 20)) conv=notrunc 2>/dev/null
resume
grep -o "resuming: [0-9]* of 24 layers" err.txt
cmp part.paro whole.paro && echo "damaged record: same bytes"
# other input files: a sample rewritten (another size or modification time)
rm -f part.paro
interrupt INT
$PARO -q synth -o other --grid 2x8x8 --text 8 --layers 24 --heads 4 --head-dim 32 --samples 2 --seed 6
cp other/s001.safetensors cap/s001.safetensors
touch -d '2001-02-03 04:05:06' cap/s001.safetensors
resume
grep -q "other inputs or settings" err.txt && echo "refused"
test ! -e part.paro && echo "no plan"
test -s part.paro.journal && echo "the journal is kept"
# not a journal at all
printf 'not a journal, but long enough to have a header' > part.paro.journal
resume
sed 's/^paro: error: //' err.txt
