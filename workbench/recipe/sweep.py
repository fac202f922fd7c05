"""A recipe's ``sweep:`` section as a validated spec: its grid, random, TPE and pruning parts,
the points it expands to, and how a point's values apply to a configuration.

Any ``SECTION.KEY`` of the recipe can be swept (written dotted); ``seeds`` are the other axis.
Random draws use numpy's seeded ``default_rng`` (the same seed draws the same points), each
crossed with every grid combination, a repeated point dropped. The section's format is in
docs/sweeps.md; :mod:`.sweep_reader` reads it from YAML, :mod:`workbench.sweeps` runs it.
Optuna is an optional extra: only ``tpe`` and ``prune`` need it, and say which extra to install.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any

from kni_core.config import RunConfig
from kni_core.errors import KniError

#: Keys of the ``sweep:`` section.
SWEEP_KEYS = ("grid", "random", "tpe", "prune", "rerun")
DISTRIBUTIONS = ("uniform", "loguniform", "int", "logint", "choice")
#: Pruners and their options: name -> (default, lowest value); the names and defaults are Optuna's.
PRUNERS: dict[str, dict[str, tuple[Any, int]]] = {
    "median": {"n_startup_trials": (5, 0), "n_warmup_steps": (0, 0), "interval_steps": (1, 1)},
    "successive_halving": {"min_resource": ("auto", 1), "reduction_factor": (4, 2),
                           "min_early_stopping_rate": (0, 0), "bootstrap_count": (0, 0)},
}
#: Most points one sweep may have, and most runs (points x seeds).
MAX_POINTS = 10_000
MAX_RUNS = 100_000
OPTUNA_EXTRA = 'pip install "kni-workbench[sweep]"'


class SweepError(KniError):
    """A sweep that cannot run here (a missing optional extra, an unknown sweep id...)."""


def require_optuna(what: str) -> Any:
    """The ``optuna`` module, or a :class:`SweepError` that says which extra to install."""
    try:
        import optuna
    except ImportError:
        raise SweepError(f"{what} needs Optuna, an optional extra: {OPTUNA_EXTRA}") from None
    return optuna


# --------------------------------------------------------------------------------------------
# the spec


@dataclass(frozen=True)
class Distribution:
    """Where a random or TPE point draws one key's value from."""

    kind: str                                   # one of DISTRIBUTIONS
    low: float = 0.0
    high: float = 0.0
    choices: tuple = ()

    def sample(self, rng: Any) -> Any:
        """One value from numpy Generator ``rng`` (random sweeps)."""
        if self.kind == "choice":
            return copy.deepcopy(self.choices[int(rng.integers(len(self.choices)))])
        if self.kind == "uniform":
            return float(rng.uniform(self.low, self.high))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        if self.kind == "int":
            return int(rng.integers(int(self.low), int(self.high) + 1))
        # logint: uniform in log space over [lo - 0.5, hi + 0.5], rounded: each integer's share of
        # the log scale, both ends included
        x = math.exp(rng.uniform(math.log(self.low - 0.5), math.log(self.high + 0.5)))
        return int(min(max(round(x), self.low), self.high))

    def to_optuna(self) -> Any:
        """The Optuna distribution (choices as their JSON text: Optuna takes only scalars)."""
        optuna = require_optuna("a tpe sweep")
        d = optuna.distributions
        if self.kind == "choice":
            return d.CategoricalDistribution([json.dumps(c) for c in self.choices])
        if self.kind in ("int", "logint"):
            return d.IntDistribution(int(self.low), int(self.high), log=self.kind == "logint")
        return d.FloatDistribution(self.low, self.high, log=self.kind == "loguniform")

    def from_optuna(self, value: Any) -> Any:
        if self.kind == "choice":
            return json.loads(value)
        return int(value) if self.kind in ("int", "logint") else float(value)

    def to_dict(self) -> dict:
        if self.kind == "choice":
            return {"choice": list(self.choices)}
        return {self.kind: [self.low, self.high]}

    @classmethod
    def from_dict(cls, d: dict) -> "Distribution":
        (kind, value), = d.items()
        if kind == "choice":
            return cls(kind, choices=tuple(value))
        return cls(kind, value[0], value[1])

    def describe(self) -> str:
        if self.kind == "choice":
            return "choice of " + ", ".join(json.dumps(c) for c in self.choices)
        return f"{self.kind} [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class RandomSpec:
    n: int
    seed: int
    space: dict[str, Distribution]


@dataclass(frozen=True)
class TpeSpec:
    n: int
    seed: int
    n_startup_trials: int
    space: dict[str, Distribution]


@dataclass(frozen=True)
class PruneSpec:
    pruner: str                                 # one of PRUNERS
    options: dict[str, Any]                     # every option, defaults filled in

    def make(self) -> Any:
        """The Optuna pruner."""
        optuna = require_optuna("sweep.prune")
        klass = {"median": optuna.pruners.MedianPruner,
                 "successive_halving": optuna.pruners.SuccessiveHalvingPruner}[self.pruner]
        return klass(**self.options)

    def describe(self) -> str:
        return f"{self.pruner} (" + ", ".join(f"{k} {v}" for k, v in self.options.items()) + ")"


@dataclass(frozen=True)
class SweepSpec:
    """A validated ``sweep:`` section (values normalised as the recipe's own)."""

    grid: dict[str, list] = field(default_factory=dict)
    random: RandomSpec | None = None
    tpe: TpeSpec | None = None
    prune: PruneSpec | None = None
    #: Seeds the best point (on validation) runs after the search, besides the recipe's: a fixed
    #: tuning budget, then the chosen configuration measured over several seeds.
    rerun: tuple[int, ...] = ()

    @property
    def method(self) -> str:
        if self.tpe is not None:
            return "tpe"
        return "+".join(m for m, on in (("grid", bool(self.grid)), ("random", self.random is not None)) if on)

    @property
    def keys(self) -> list[str]:
        """The swept keys, in the order they are written (grid first)."""
        space = self.tpe.space if self.tpe else (self.random.space if self.random else {})
        return list(self.grid) + [k for k in space if k not in self.grid]

    @property
    def planned(self) -> int:
        """Points before duplicate random draws are dropped (TPE: the points it will ask for)."""
        if self.tpe is not None:
            return self.tpe.n
        n = math.prod(len(v) for v in self.grid.values()) if self.grid else 1
        return n * (self.random.n if self.random else 1)

    @property
    def needs_optuna(self) -> list[str]:
        """What in this sweep needs the ``sweep`` extra (empty: nothing)."""
        return [w for w, on in (("sweep.tpe", self.tpe is not None), ("sweep.prune", self.prune is not None)) if on]

    def points(self) -> list[dict]:
        """Every point of a grid / random sweep, in order, repeats dropped (TPE: none yet)."""
        if self.tpe is not None:
            return []
        combos = [dict(zip(self.grid, values)) for values in itertools.product(*self.grid.values())] \
            if self.grid else [{}]
        draws: list[dict] = [{}]
        if self.random is not None:
            import numpy as np
            rng = np.random.default_rng(self.random.seed)
            draws = [{k: d.sample(rng) for k, d in self.random.space.items()} for _ in range(self.random.n)]
        out, seen = [], set()
        for combo in combos:
            for draw in draws:
                point = {**combo, **draw}
                key = json.dumps(point, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    out.append(point)
        return out

    def to_dict(self) -> dict:
        out: dict[str, Any] = {}
        if self.grid:
            out["grid"] = {k: list(v) for k, v in self.grid.items()}
        if self.random is not None:
            out["random"] = {"n": self.random.n, "seed": self.random.seed,
                             "space": {k: d.to_dict() for k, d in self.random.space.items()}}
        if self.tpe is not None:
            out["tpe"] = {"n": self.tpe.n, "seed": self.tpe.seed, "n_startup_trials": self.tpe.n_startup_trials,
                          "space": {k: d.to_dict() for k, d in self.tpe.space.items()}}
        if self.prune is not None:
            out["prune"] = {"pruner": self.prune.pruner, **self.prune.options}
        if self.rerun:
            out["rerun"] = {"seeds": list(self.rerun)}
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "SweepSpec":
        """The spec stored with a sweep (``to_dict``'s output; trusted: it was validated)."""
        random = tpe = prune = None
        if "random" in d:
            r = d["random"]
            random = RandomSpec(r["n"], r["seed"], {k: Distribution.from_dict(v) for k, v in r["space"].items()})
        if "tpe" in d:
            t = d["tpe"]
            tpe = TpeSpec(t["n"], t["seed"], t["n_startup_trials"],
                          {k: Distribution.from_dict(v) for k, v in t["space"].items()})
        if "prune" in d:
            p = dict(d["prune"])
            prune = PruneSpec(p.pop("pruner"), p)
        rerun = tuple(d["rerun"]["seeds"]) if "rerun" in d else ()
        return cls(dict(d.get("grid", {})), random, tpe, prune, rerun)

    def describe(self, seeds: int) -> str:
        """``grid: 6 points x 2 seeds = 12 runs; pruning median (...)``."""
        if self.tpe is not None:
            text = f"tpe: {self.tpe.n} points x {seeds} seed(s), asked as results arrive"
        else:
            n = len(self.points())
            text = f"{self.method}: {n} point(s) x {seeds} seed(s) = {n * seeds} runs"
        if self.prune is not None:
            text += f"; pruning: {self.prune.describe()}"
        if self.rerun:
            text += (f"; then the best point on validation runs over seeds {', '.join(map(str, self.rerun))} "
                     "(the ones it has not run)")
        return text


def apply_params(cfg: RunConfig, params: dict) -> RunConfig:
    """A copy of ``cfg`` with the point's dotted keys set (not validated); a key may end inside
    a mapping field (``dataset.synthetic.users``)."""
    cfg = copy.deepcopy(cfg)
    for key, value in params.items():
        parts = key.split(".")
        obj: Any = cfg
        for i, part in enumerate(parts[:-1]):
            inner = getattr(obj, part)
            if isinstance(inner, dict):
                setattr(obj, part, set_entry(inner, ".".join(parts[i + 1:]), value))
                break
            obj = inner
        else:
            setattr(obj, parts[-1], copy.deepcopy(value))
    return cfg


def set_entry(mapping: dict, entry: str, value: Any) -> dict:
    """A copy of ``mapping`` with its dotted ``entry`` set to ``value``."""
    out = copy.deepcopy(mapping)
    inner = out
    *parents, last = entry.split(".")
    for part in parents:
        if not isinstance(inner.get(part), dict):
            inner[part] = {}
        inner = inner[part]
    inner[last] = copy.deepcopy(value)
    return out


def params_text(params: dict, width: int | None = None) -> str:
    """``model.temperature=10, train.lr=0.001`` (short numbers; cut to ``width``)."""
    text = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
    if width is not None and len(text) > width:
        text = text[:width - 3] + "..."
    return text


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v)


# --------------------------------------------------------------------------------------------
