$PARO dump -v $FIX/plan.paro | sed "s|$FIX|FIX|"
