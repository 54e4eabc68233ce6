$PARO export --help
