set -e
$PARO version > v.txt
$PARO --version | cmp - v.txt
grep -q '^paro [0-9][0-9.]*$' v.txt
grep -q '^plan format 1\.2 (paro-plan/v1)$' v.txt
grep -q '^cuda: \(yes (sm_[0-9a]*)\|no\)$' v.txt
grep -q '^zlib [0-9.]*, cJSON [0-9.]*$' v.txt
echo ok
