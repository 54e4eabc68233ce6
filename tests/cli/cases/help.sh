$PARO --help
