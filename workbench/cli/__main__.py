"""``python -m workbench.cli``: the ``kni`` command."""

from workbench.cli import main

main()
