"""``python -m kernos.cli``: the same as the ``kernos`` command."""

from kernos.cli import main

main()
