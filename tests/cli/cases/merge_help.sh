$PARO merge --help
