"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import time
from typing import Callable

import pytest


def wait_for(predicate: Callable[[], bool], timeout: float, every: float = 0.2) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; its last answer."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def needs_optuna():
    """Optuna is the ``sweep`` extra: skipped without it, except under CI (the dev extra installs it)."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI is set but Optuna (the sweep extra) is not installed")
        pytest.skip("Optuna (pip install kni-workbench[sweep]) is not installed")


#: The model of the tiny recipes: KNI, small enough to train an epoch in about a second.
TINY_MODEL = "hop_n_sample: [1, 4], max_degree: 16"


def tiny_recipe(name: str = "tiny", *, epochs: int = 2, model: str = TINY_MODEL, train: str = "", n_eval: int = 2,
                seeds: str | None = "[1]", device: str = "cpu", description: str | None = None) -> str:
    """A recipe over the tiny synthetic preset. ``model`` and ``train`` are the insides of their
    flow mappings (``train`` adds keys after ``epochs`` and ``patience: 0``)."""
    lines = [f"name: {name}"]
    if description is not None:
        lines.append(f"description: {description}")
    lines += ["dataset: {name: synthetic, min_relation_triples: 1, synthetic: {preset: tiny}}",
              f"model: {{{model}}}",
              f"train: {{epochs: {epochs}, patience: 0{', ' + train if train else ''}}}",
              f"eval: {{n_eval: {n_eval}}}"]
    if seeds is not None:
        lines.append(f"seeds: {seeds}")
    lines.append(f"device: {device}")
    return "\n".join(lines) + "\n"
