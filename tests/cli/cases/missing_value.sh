$PARO calibrate -m
