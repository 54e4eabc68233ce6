# FIFOs, devices, folders and unreadable files where paro expects a file:
# each exits 1 at once with a message naming the path (never a hang: every
# run is under a 10 s timeout, which would show as exit 124), and nothing is
# written.  Unreadable files are made with chmod 000; run as root, which
# reads them anyway, paro is run as nobody (setpriv) in a folder nobody can
# reach.
set -e
cp -r $FIX/cap cap
chmod -R u+w cap
cp $FIX/plan.paro plan.paro
chmod u+w plan.paro
run() { # label command...: exit status, message, and what the run left behind
    label=$1
    shift
    set +e
    timeout 10 "$@" >out.txt 2>err.txt
    rc=$?
    set -e
    echo "$label: exit $rc: $(head -n 1 err.txt | sed "s|${ur:-@@}|UR|g") ($(wc -l < err.txt) line)"
}
mkfifo fifo
run "manifest is a FIFO" $PARO calibrate -m fifo -o out.paro
run "plan is a FIFO" $PARO dump fifo
run "merge input is a FIFO" $PARO merge fifo -o out.paro
run "manifest is a device" $PARO calibrate -m /dev/null -o out.paro
mkdir -p fifo_sample
sed 's/s000.safetensors/fifo/' cap/manifest.json > fifo_sample/manifest.json
mkfifo fifo_sample/fifo
run "sample file is a FIFO" $PARO calibrate -m fifo_sample/manifest.json -o out.paro
# a folder of .npy files (the bad-input corpus's, whose broken layers.0.k.npy
# is replaced), one of them a FIFO
cp -r $CASES/../../bad/npy/cut_in_data npy
chmod -R u+w npy
rm npy/s000/layers.0.k.npy
mkfifo npy/s000/layers.0.k.npy
run "an .npy file is a FIFO" $PARO calibrate -m npy/manifest.json -o out.paro
run "inspect: an .npy file is a FIFO" $PARO inspect --no-stats npy
grep -m 1 problem out.txt
mkdir folder
run "-o is a folder" $PARO calibrate -m cap/manifest.json -o folder
mkfifo out_fifo
run "-o is a FIFO" $PARO calibrate -m cap/manifest.json -o out_fifo
test -p out_fifo && echo "the FIFO is still a FIFO"
run "merge -o is a folder" $PARO merge plan.paro -o folder
test ! -e out.paro && echo "no out.paro"
test -z "$(ls -A folder)" && echo "nothing in folder"
ls | grep -E 'journal|tmp' || echo "no journal or temporary file"
# unreadable: chmod 000, and for root a user who is not root
ur=$(mktemp -d "${TMPDIR:-/tmp}/paro-unreadable-XXXXXX")
trap 'rm -rf "$ur"' EXIT
cp -r cap $ur/cap
cp plan.paro $ur/plan.paro
cp -r $CASES/../../bad/npy/cut_in_data $ur/npy
cp cap/manifest.json $ur/secret.json
chmod 755 $ur
chmod -R a+rX $ur
chmod 000 $ur/cap/s000.safetensors $ur/plan.paro $ur/secret.json $ur/npy/s000
mkdir $ur/out
chmod 777 $ur/out
if [ "$(id -u)" = 0 ]; then
    as=$(command -v setpriv) || { echo "running as root, and no setpriv to drop it"; exit 1; }
    set -- "$as" --reuid=65534 --regid=65534 --clear-groups
else
    set --
fi
run "unreadable manifest" "$@" $PARO calibrate -m $ur/secret.json -o $ur/out/out.paro
run "unreadable sample file" "$@" $PARO calibrate -m $ur/cap/manifest.json -o $ur/out/out.paro
run "unreadable npy folder" "$@" $PARO calibrate -m $ur/npy/manifest.json -o $ur/out/out.paro
run "unreadable plan" "$@" $PARO dump $ur/plan.paro
test -z "$(ls -A $ur/out)" && echo "nothing written"
