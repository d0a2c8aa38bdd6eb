"""Sub-commands of the ``pmoracle`` CLI: thin shells over the packages (argument parsing, files, printing)."""
