"""``kni-workbench``: the Textual workbench (``workbench.tui.app:main``).

Kept import-light: ``python -m workbench.tui.launch`` (the detached launcher) imports this
package without Textual.
"""
