# export --to paroattn runs formats/python/paro_paroattn.py with $PARO_PYTHON
# (else python3) and passes its exit status on; the script's report goes to
# stderr, or nowhere with -q.  What needs no torch is checked here, with a
# stand-in interpreter; tests/python/test_paroattn.py loads the real files.
plan=$FIX/plan.paro
run() { # command...: its exit status and stderr
    "$@" 2>err.txt >out.txt
    echo "exit $?, stdout $(wc -c < out.txt) bytes"
    sed "s|$FIX|FIX|g; s|$PWD|.|g" err.txt | sed 's/^/  /'
}
run $PARO export $plan -o x.npz --text-blocks 4
run $PARO export $plan --to paroattn -o d --compress
run $PARO export $plan --to paroattn -o d --text-blocks -1
run $PARO export $plan --to onnx -o d
PARO_PYTHON=$PWD/missing run $PARO export $plan --to paroattn -o d
# the stand-in shows what it was given (the script by name) and exits $CODE
cat > py <<'SH'
#!/bin/sh
flag=$1 script=$(basename "$2")
shift 2
echo "py: $flag $script $*" | tee args.txt
exit ${CODE:-0}
SH
chmod +x py
PARO_PYTHON=$PWD/py run $PARO export $plan --to paroattn -o d
PARO_PYTHON=$PWD/py run $PARO -q export $plan --to paroattn -o d --text-blocks 5
sed "s|$FIX|FIX|g" args.txt
PARO_PYTHON=$PWD/py CODE=2 run $PARO export $plan --to paroattn -o d
PARO_PYTHON=$PWD/py CODE=3 run $PARO export $plan --to paroattn -o d
PARO_PYTHON=$PWD/py CODE=9 run $PARO export $plan --to paroattn -o d
# a damaged plan is refused by paro's own reader, before any interpreter
{ printf 'X'; tail -c +2 $plan; } > bad.paro
PARO_PYTHON=$PWD/py run $PARO export bad.paro --to paroattn -o d
test ! -e d && echo "nothing written"
