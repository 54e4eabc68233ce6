# eval answers --help on stdout with exit 0, and 'paro help eval' too.
set -e
$PARO eval --help > eval.txt
$PARO help eval | cmp - eval.txt
cat eval.txt
