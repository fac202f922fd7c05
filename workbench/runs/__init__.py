"""Runs: one run in its own process (:mod:`.child`), the launcher and its executors (local
child processes, Ray tasks), progress, resources and saved models."""
