$PARO frobnicate
