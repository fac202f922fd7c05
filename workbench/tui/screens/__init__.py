"""The workbench's screens and modal dialogs: a run's detail, its explanation, starting runs, annotating."""
