"""Rich renderables that the CLI and the workbench both draw."""
