"""What the CLI and the workbench share above runs and sweeps: the background launcher
(:mod:`.background`) and a stored run opened for explain and recommend (:mod:`.explain`)."""
