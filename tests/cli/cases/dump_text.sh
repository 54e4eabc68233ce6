$PARO dump $FIX/plan.paro | sed "s|$FIX|FIX|"
