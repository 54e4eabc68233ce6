# A result that cannot be written is a failure (git's rule).
$PARO dump $FIX/plan.paro > /dev/full
