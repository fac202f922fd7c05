"""Tooling around kni_core: recipes, command line and terminal UI."""
