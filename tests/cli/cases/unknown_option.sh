$PARO dump --frob plan.paro
