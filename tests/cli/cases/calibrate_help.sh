$PARO calibrate --help
