"""Running sweeps: the driver (:mod:`.driver`) and its Optuna search study (:mod:`.search`)."""
