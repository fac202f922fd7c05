"""A validated recipe: a dataset, the model / training / evaluation settings and seeds."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from kni_core.config import RunConfig

from .sweep import SweepSpec, apply_params

#: Where a recipe's runs execute (the top-level ``executor`` key; not part of the config hash).
EXECUTORS = ("local", "ray")


@dataclass
class Recipe:
    """A validated recipe: ``base`` is the run configuration of the first seed."""

    name: str
    path: str | None
    text: str
    description: str | None
    seeds: list[int]
    device: str
    base: RunConfig
    #: The ``sweep:`` section (None: a plain recipe, one configuration).
    sweep: SweepSpec | None = None
    #: Where its runs execute: ``local`` child processes or ``ray`` tasks (workbench.runs).
    executor: str = "local"
    #: What reading it did that its author should know (repeated seeds dropped), one line each.
    warnings: tuple[str, ...] = ()

    def config_for_point(self, params: dict, seed: int) -> RunConfig:
        """The configuration of one sweep point (``{dotted key: value}``) for ``seed``."""
        cfg = apply_params(self.base, params)
        cfg.seed = seed
        return cfg.validate()

    def config_for(self, seed: int) -> RunConfig:
        """A copy of ``base`` with ``seed`` (any non-negative integer, not only one of ``seeds``)."""
        cfg = copy.deepcopy(self.base)
        cfg.seed = seed
        return cfg.validate()

    def configs(self) -> list[RunConfig]:
        """One run configuration per seed, in order."""
        return [self.config_for(s) for s in self.seeds]

    def to_dict(self) -> dict:
        return {"name": self.name, "path": self.path, "description": self.description,
                "seeds": list(self.seeds), "device": self.device, "executor": self.executor,
                "config_hash": self.base.config_hash(), "config": self.base.to_dict(),
                "text": self.text, "sweep": self.sweep.to_dict() if self.sweep is not None else None}

