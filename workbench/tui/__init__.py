"""``kni-workbench``: the Textual workbench (``workbench.tui.app:main``); docs/workbench.md."""
