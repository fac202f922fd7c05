"""Sweeps: a recipe's ``sweep:`` section, its points, and the process that runs them.

A sweep varies recipe keys; each *point* (one value per swept key) is a configuration of its
own (its own config hash, so its own comparison group), each point runs once per seed, and
every run of the sweep carries the sweep's id and its point (``runs.sweep_id``,
``runs.sweep_point``, ``runs.sweep_params``; the ``sweeps`` table holds the sweep itself)::

    sweep:
      grid:                                   # every combination of the listed values
        model.hop_n_sample: [[1, 4], [1, 8]]
        model.temperature: [1, 10, 100]
      random:                                 # n seeded draws, crossed with the grid
        n: 20
        seed: 0
        space:
          train.l2: {loguniform: [1.0e-8, 1.0e-4]}
          model.temperature: {choice: [1, 10, 100]}
      tpe:                                    # instead of grid / random: Optuna's TPE sampler
        n: 20                                 # points, asked and told one wave at a time
        seed: 0
        n_startup_trials: 5                   # random points before TPE models the results
        space: {train.lr: {loguniform: [1.0e-4, 1.0e-2]}}
      prune:                                  # optional: stop hopeless runs after an epoch
        pruner: median                        # or successive_halving
        n_startup_trials: 4                   # (Optuna's own option names and defaults)
        n_warmup_steps: 2

Any ``SECTION.KEY`` of the recipe can be swept (written dotted); ``seeds`` are the other axis.
Distributions: ``uniform: [lo, hi]``, ``loguniform: [lo, hi]`` (lo > 0), ``int: [lo, hi]`` and
``logint: [lo, hi]`` (integers, both ends included) and ``choice: [v1, v2, ...]``. Every value a
sweep can produce is checked as ``--set`` checks it (the bounds of a range, each listed value),
and the points of a grid or a random sweep are checked whole (rules between keys), each
mistake reported at its line like the rest of the recipe.

Grid and random points are known before anything runs: their rows are queued at once and run
through :class:`workbench.runner.Launcher` (``--jobs`` at a time). Random draws use numpy's
seeded ``default_rng`` (the same seed draws the same points); each draw is crossed with every
grid combination, and a draw that repeats an earlier point is dropped. A TPE sweep asks
Optuna's :class:`~optuna.samplers.TPESampler` (ask-and-tell) for ``ceil(jobs / seeds)``
points at a time, runs them, and tells each point the mean over its seeds of the validation
AUC at its validation-selected epoch (``runs.best_valid_auc``), read from the store; a point
with a pruned seed is told *pruned* (with its mean per-epoch validation AUC), one whose runs
failed *failed*. The TPE study and the pruner's live in the run database
(:mod:`workbench.study`), so every run process and every machine sharing the database sees them.

Optuna is an optional extra (``pip install "kni-workbench[sweep]"``): grid and random sweeps
need nothing more; ``tpe`` and ``prune`` say which extra to install when it is missing.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from kni_core.config import SECTIONS, RunConfig
from kni_core.errors import KniError

if TYPE_CHECKING:                              # no import cycle: recipe.py imports this module
    import yaml

    from .recipe import Recipe
    from .store import Run, Store

log = logging.getLogger(__name__)

__all__ = ["SweepSpec", "RandomSpec", "TpeSpec", "PruneSpec", "Distribution", "SweepError", "Pruned",
           "SWEEP_KEYS", "DISTRIBUTIONS", "PRUNERS", "MAX_POINTS", "MAX_RUNS", "OPTUNA_EXTRA", "require_optuna",
           "apply_params", "params_text", "SweepDriver", "Point"]

#: Keys of the ``sweep:`` section.
SWEEP_KEYS = ("grid", "random", "tpe", "prune")
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


class Pruned(KniError):
    """Raised in a run process when the sweep's pruner stops the run after an epoch."""


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
        return cls(dict(d.get("grid", {})), random, tpe, prune)

    def describe(self, seeds: int) -> str:
        """``grid: 6 points x 2 seeds = 12 runs; pruning median (...)``."""
        if self.tpe is not None:
            text = f"tpe: {self.tpe.n} points x {seeds} seed(s), asked as results arrive"
        else:
            n = len(self.points())
            text = f"{self.method}: {n} point(s) x {seeds} seed(s) = {n * seeds} runs"
        if self.prune is not None:
            text += f"; pruning: {self.prune.describe()}"
        return text


def apply_params(cfg: RunConfig, params: dict) -> RunConfig:
    """A copy of ``cfg`` with the point's dotted keys set (not validated)."""
    cfg = copy.deepcopy(cfg)
    for key, value in params.items():
        parts = key.split(".")
        obj: Any = cfg
        for part in parts[:-1]:
            obj = getattr(obj, part)
        setattr(obj, parts[-1], copy.deepcopy(value))
    return cfg


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
# reading the section (called by workbench.recipe's builder, which owns lines and errors)


class SweepReader:
    """Reads a ``sweep:`` node with the recipe builder's helpers; every mistake is recorded
    on the builder, at its line, and reading goes on."""

    def __init__(self, builder: Any):
        self.b = builder
        self.lines: dict[str, int | None] = {}          # "sweep.grid.model.temperature" -> line
        self.value_lines: dict[tuple[str, str], int | None] = {}   # (key, JSON of a grid value) -> line

    def read(self, node: "yaml.Node", line: int | None) -> SweepSpec | None:
        import yaml
        b = self.b
        if not isinstance(node, yaml.MappingNode):
            raise b.fail("sweep", "expected a mapping with grid, random, tpe (and optionally prune), got "
                                  f"{_kind(node)}", line)
        parts: dict[str, Any] = {}
        where: dict[str, int | None] = {}
        unknown = False
        for key, key_node, value_node in b.entries(node, "sweep"):
            kline = _line(key_node)
            try:
                if key not in SWEEP_KEYS:
                    unknown = True
                    raise b.fail(f"sweep.{key}", "unknown key; " + _suggest(key, SWEEP_KEYS), kline)
                where[key] = kline
                parts[key] = getattr(self, f"read_{key}")(value_node, kline)
            except KniError as e:
                b.record(e)
        ok = True
        if "tpe" in where and ("grid" in where or "random" in where):
            other = "grid" if "grid" in where else "random"
            b.record(b.fail("sweep.tpe", f"tpe chooses the points itself; it cannot be combined with {other} "
                                         f"(line {where[other]})", where["tpe"]))
            ok = False
        if not any(k in where for k in ("grid", "random", "tpe")) and not unknown:
            b.record(b.fail("sweep", "expected grid, random or tpe: the points to run", line))
            ok = False
        grid, random = parts.get("grid"), parts.get("random")
        if grid and random:
            for k in random.space:
                if k in grid:
                    b.record(b.fail(f"sweep.random.space.{k}", f"also swept by sweep.grid (line "
                                                               f"{self.lines.get('sweep.grid.' + k)}); sweep a key "
                                                               f"in one of them", self.lines.get(f"sweep.random.space.{k}")))
                    ok = False
        if not ok or any(k in where and parts.get(k) is None for k in ("grid", "random", "tpe")):
            return None                       # (a bad prune: the points are still checked)
        spec = SweepSpec(grid or {}, random, parts.get("tpe"), parts.get("prune"))
        if spec.planned > MAX_POINTS:
            b.record(b.fail("sweep", f"{spec.planned:,} points, more than {MAX_POINTS:,}", line))
            return None
        return spec

    # -- the parts -----------------------------------------------------------------------------
    def read_grid(self, node: "yaml.Node", line: int | None) -> dict[str, list] | None:
        import yaml
        b = self.b
        if not isinstance(node, yaml.MappingNode) or not node.value:
            raise b.fail("sweep.grid", "expected a mapping of SECTION.KEY: [values to try], e.g. "
                                       f"model.temperature: [1, 10, 100]; got {_kind(node)}", line)
        out: dict[str, list] = {}
        failed = False
        for key, key_node, value_node in b.entries(node, "sweep.grid"):
            where = f"sweep.grid.{key}"
            kline = _line(key_node)
            self.lines[where] = kline
            try:
                self.swept_key(key, where, kline)
                if not isinstance(value_node, yaml.SequenceNode):
                    raise b.fail(where, "expected a list of the values to try, e.g. [1, 10, 100]; got "
                                        f"{_kind(value_node)}", kline)
                if not value_node.value:
                    raise b.fail(where, "expected at least one value to try; got an empty list", kline)
                values = []
                seen: dict[str, int | None] = {}
                for i, item in enumerate(value_node.value):
                    iline = _line(item)
                    value = self.value(key, where, item, iline, f"value {i + 1} of the list: ")
                    text = json.dumps(value, sort_keys=True)
                    if text in seen:
                        raise b.fail(where, f"{json.dumps(value)} is listed twice (first on line {seen[text]})", iline)
                    seen[text] = iline
                    self.value_lines[(key, text)] = iline
                    values.append(value)
                out[key] = values
            except KniError as e:
                b.record(e)
                failed = True
        return None if failed else out

    def read_random(self, node: "yaml.Node", line: int | None) -> RandomSpec | None:
        values = self.options("sweep.random", node, line, ("n", "seed", "space"),
                              "n (points), seed and space (key: distribution)")
        if values is None:
            return None
        n = self.count("sweep.random.n", values.get("n"), required=True, line=line)
        seed = self.count("sweep.random.seed", values.get("seed", (0, None)), lo=0)
        space = self.space("sweep.random.space", values.get("space"), line)
        if n is None or seed is None or space is None:
            return None
        return RandomSpec(n, seed, space)

    def read_tpe(self, node: "yaml.Node", line: int | None) -> TpeSpec | None:
        values = self.options("sweep.tpe", node, line, ("n", "seed", "n_startup_trials", "space"),
                              "n (points), seed, n_startup_trials and space (key: distribution)")
        if values is None:
            return None
        n = self.count("sweep.tpe.n", values.get("n"), required=True, line=line)
        seed = self.count("sweep.tpe.seed", values.get("seed", (0, None)), lo=0)
        startup = self.count("sweep.tpe.n_startup_trials", values.get("n_startup_trials", (10, None)), lo=0)
        space = self.space("sweep.tpe.space", values.get("space"), line)
        if n is None or seed is None or startup is None or space is None:
            return None
        return TpeSpec(n, seed, startup, space)

    def read_prune(self, node: "yaml.Node", line: int | None) -> PruneSpec | None:
        b = self.b
        allowed = ("pruner",) + tuple(dict.fromkeys(k for opts in PRUNERS.values() for k in opts))
        values = self.options("sweep.prune", node, line, allowed, "pruner (median or successive_halving) and its "
                                                                  "options")
        if values is None:
            return None
        if "pruner" not in values:
            b.record(b.fail("sweep.prune.pruner", "missing; expected median or successive_halving", line))
            return None
        pruner, pline = values.pop("pruner")
        if pruner not in PRUNERS:
            b.record(b.fail("sweep.prune.pruner", f"expected one of {', '.join(PRUNERS)}; got {pruner!r}", pline))
            return None
        options = {}
        failed = False
        for k, (value, kline) in values.items():
            if k not in PRUNERS[pruner]:
                b.record(b.fail(f"sweep.prune.{k}", f"not an option of the {pruner} pruner; it takes "
                                                    f"{', '.join(PRUNERS[pruner])}", kline))
                failed = True
                continue
            default, lo = PRUNERS[pruner][k]
            if k == "min_resource" and value == "auto":
                options[k] = value
                continue
            got = self.count(f"sweep.prune.{k}", (value, kline), lo=lo)
            if got is None:
                failed = True
            options[k] = got
        if failed:
            return None
        full = {k: options.get(k, default) for k, (default, _) in PRUNERS[pruner].items()}
        if pruner == "successive_halving" and full["bootstrap_count"] > 0 and full["min_resource"] == "auto":
            b.record(b.fail("sweep.prune.bootstrap_count", "needs min_resource as a number of epochs, not auto",
                            values.get("bootstrap_count", (None, line))[1]))
            return None
        return PruneSpec(pruner, full)

    # -- helpers -------------------------------------------------------------------------------
    def options(self, where: str, node: "yaml.Node", line: int | None, allowed: Sequence[str],
                expected: str) -> dict[str, tuple[Any, int | None]] | None:
        """A mapping of plain options: ``{key: (value, line)}``; ``space`` keeps its node."""
        import yaml
        b = self.b
        if not isinstance(node, yaml.MappingNode):
            raise b.fail(where, f"expected a mapping of {expected}; got {_kind(node)}", line)
        out: dict[str, tuple[Any, int | None]] = {}
        failed = False
        for key, key_node, value_node in b.entries(node, where):
            kline = _line(key_node)
            if key not in allowed:
                b.record(b.fail(f"{where}.{key}", "unknown key; " + _suggest(key, allowed), kline))
                failed = True
                continue
            if key == "space":
                out[key] = (value_node, kline)
                continue
            try:
                out[key] = (b.construct(f"{where}.{key}", value_node, kline, None), kline)
            except KniError as e:
                b.record(e)
                failed = True
        return None if failed else out

    def count(self, where: str, given: tuple[Any, int | None] | None, *, lo: int = 1,
              required: bool = False, line: int | None = None) -> int | None:
        b = self.b
        if given is None:
            if required:                       # named at the line of the section that lacks it
                b.record(b.fail(where, f"missing; expected an integer >= {lo}", line))
            return None
        value, line = given
        if isinstance(value, bool) or not isinstance(value, int):
            b.record(b.fail(where, f"expected an integer >= {lo}; got {value!r}", line))
            return None
        if value < lo:
            b.record(b.fail(where, f"expected an integer >= {lo}; got {value}", line))
            return None
        if where.endswith(".n") and value > MAX_POINTS:
            b.record(b.fail(where, f"expected at most {MAX_POINTS:,} points; got {value:,}", line))
            return None
        if where.endswith(".seed") and value > 2**32 - 1:
            b.record(b.fail(where, f"expected a seed below 2^32; got {value}", line))
            return None
        return value

    def space(self, where: str, given: tuple[Any, int | None] | None, line: int | None
              ) -> dict[str, Distribution] | None:
        import yaml
        b = self.b
        if given is None:
            b.record(b.fail(f"{where}", "missing; expected a mapping of SECTION.KEY: {distribution}, e.g. "
                                        "train.l2: {loguniform: [1.0e-8, 1.0e-4]}", line))
            return None
        node, sline = given
        if not isinstance(node, yaml.MappingNode) or not node.value:
            b.record(b.fail(where, "expected a mapping of SECTION.KEY: {distribution}, e.g. train.l2: "
                                   f"{{loguniform: [1.0e-8, 1.0e-4]}}; got {_kind(node)}", sline))
            return None
        out: dict[str, Distribution] = {}
        failed = False
        for key, key_node, value_node in b.entries(node, where):
            kwhere = f"{where}.{key}"
            kline = _line(key_node)
            self.lines[kwhere] = kline
            try:
                self.swept_key(key, kwhere, kline)
                out[key] = self.distribution(key, kwhere, value_node, kline)
            except KniError as e:
                b.record(e)
                failed = True
        return None if failed else out

    def distribution(self, key: str, where: str, node: "yaml.Node", line: int | None) -> Distribution:
        import yaml
        b = self.b
        expected = ("a distribution: {uniform: [lo, hi]}, {loguniform: [lo, hi]}, {int: [lo, hi]}, "
                    "{logint: [lo, hi]} or {choice: [values]}")
        if not isinstance(node, yaml.MappingNode) or len(node.value) != 1:
            raise b.fail(where, f"expected {expected}; got {_kind(node)}", line)
        (kind_node, value_node), = node.value
        kind = str(kind_node.value) if isinstance(kind_node, yaml.ScalarNode) else "?"
        dline = _line(kind_node)
        if kind not in DISTRIBUTIONS:
            raise b.fail(where, f"unknown distribution {kind!r}; {_suggest(kind, DISTRIBUTIONS)}", dline)
        if not isinstance(value_node, yaml.SequenceNode) or not value_node.value:
            raise b.fail(where, f"{kind}: expected a non-empty list; got {_kind(value_node)}", dline)
        if kind == "choice":
            values, seen = [], set()
            for i, item in enumerate(value_node.value):
                value = self.value(key, where, item, _line(item), f"choice {i + 1}: ")
                text = json.dumps(value, sort_keys=True)
                if text in seen:
                    raise b.fail(where, f"choice {json.dumps(value)} is listed twice", _line(item))
                seen.add(text)
                values.append(value)
            return Distribution("choice", choices=tuple(values))
        if len(value_node.value) != 2:
            raise b.fail(where, f"{kind}: expected [lo, hi], two numbers; got {len(value_node.value)} values", dline)
        f = b.sweep_field(key, where, line)
        numeric = _numeric_kind(f)
        if numeric is None:
            raise b.fail(where, f"{kind}: {key} is not a number; list its values with {{choice: [...]}}", dline)
        if numeric == "int" and kind in ("uniform", "loguniform"):
            raise b.fail(where, f"{kind}: {key} takes integers; use {{int: [lo, hi]}} or {{logint: [lo, hi]}}",
                         dline)
        bounds = [self.value(key, where, item, _line(item), ("lo: ", "hi: ")[i])
                  for i, item in enumerate(value_node.value)]
        lo, hi = bounds
        if kind in ("int", "logint") and not all(isinstance(x, int) or float(x).is_integer() for x in bounds):
            raise b.fail(where, f"{kind}: expected integer bounds; got [{lo}, {hi}]", dline)
        if not lo < hi:
            raise b.fail(where, f"{kind}: expected lo < hi; got [{lo}, {hi}]", dline)
        if kind in ("loguniform", "logint") and lo <= 0:
            raise b.fail(where, f"{kind}: expected lo > 0 (a log scale); got {lo}", dline)
        if kind in ("int", "logint"):
            return Distribution(kind, int(lo), int(hi))
        return Distribution(kind, float(lo), float(hi))

    def swept_key(self, key: str, where: str, line: int | None) -> None:
        b = self.b
        if "." not in key:
            if key == "seeds":
                raise b.fail(where, "the seeds are the sweep's other axis: every point runs each of the recipe's "
                                    "seeds (seeds: or --seeds)", line)
            if key in SECTIONS:
                raise b.fail(where, f"expected SECTION.KEY, written dotted (e.g. {key}.{_first_field(key)})", line)
            raise b.fail(where, f"expected SECTION.KEY (e.g. model.temperature); {key!r} cannot be swept", line)
        if key in self.b.swept:
            raise b.fail(where, f"swept twice (first on line {self.b.swept[key]})", line)
        b.sweep_field(key, where, line)
        self.b.swept[key] = line

    def value(self, key: str, where: str, node: "yaml.Node", line: int | None, what: str) -> Any:
        """One value of ``key`` as the recipe would take it, checked and normalised."""
        try:
            return self.b.sweep_value(key, node, line)
        except KniError as e:
            message = getattr(e, "message", str(e))
            raise self.b.fail(where, what + message, getattr(e, "line", None) or line) from None


def _numeric_kind(f: Any) -> str | None:
    from kni_core.config import expected_type
    types = expected_type(f)
    if types == (int,):
        return "int"
    if types == (int, float):
        return "float"
    return None


def _first_field(section: str) -> str:
    import dataclasses
    return dataclasses.fields(SECTIONS[section])[0].name


def _line(node: Any) -> int | None:
    return node.start_mark.line + 1 if node is not None and getattr(node, "start_mark", None) is not None else None


def _kind(node: Any) -> str:
    import yaml
    if isinstance(node, yaml.MappingNode):
        return "an empty mapping" if not node.value else "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "an empty list" if not node.value else "a list"
    return f"a single value ({node.value})" if node.value not in ("", "~", "null") else "nothing"


def _suggest(key: str, allowed: Sequence[str]) -> str:
    import difflib
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f"did you mean '{close[0]}'?" if close else "expected one of: " + ", ".join(allowed)


# --------------------------------------------------------------------------------------------
# running a sweep


@dataclass
class Point:
    """One point of a running sweep: its number (from 1), values and runs."""

    number: int
    params: dict
    configs: list[RunConfig]
    run_ids: list[int] = field(default_factory=list)
    trial: Any = None                           # the TPE trial it answers


#: ``launch(run_ids, configs) -> (final statuses, stop requested)``: runs queued rows to their end.
LaunchFn = Callable[[list[int], list[RunConfig]], "tuple[dict[int, str], bool]"]


class SweepDriver:
    """Runs a sweep recipe: the sweep row, the queued runs, the launches, and for TPE the
    asking and telling. ``launch`` executes queued runs (``kni run`` and the workbench's
    launcher pass their :class:`~workbench.runner.Launcher` path, so ``--jobs``, GPUs and the
    executor apply as for any recipe); ``on_queued(sweep_id, run_ids)`` hears of each batch of
    queued rows (the workbench's launcher reports the first); ``prepare`` prepares one
    configuration's data (once per distinct preprocessing); ``executor`` names what runs them
    (recorded on each row)."""

    def __init__(self, store: "Store", recipe: "Recipe", launch: LaunchFn, *, jobs: int = 1,
                 prov: tuple[str | None, str | None] | None = None,
                 on_queued: Callable[[int, list[int]], None] | None = None,
                 prepare: Callable[[RunConfig], Any] | None = None, executor: str = "local"):
        if recipe.sweep is None:
            raise SweepError(f"{recipe.name}: not a sweep (no sweep: section)")
        self.store, self.recipe, self.spec = store, recipe, recipe.sweep
        self.launch_fn, self.jobs, self.prov = launch, max(1, jobs), prov
        self.on_queued, self.prepare_fn = on_queued, prepare
        self.executor = executor                # recorded on each run's row
        self.sweep_id: int | None = None
        self.points: list[Point] = []
        self.statuses: dict[int, str] = {}
        self.stopped = False
        self._prepared: set[str] = set()
        self._search: Any = None
        self.told: dict[int, str] = {}          # point number -> what TPE was told

    # -- setup ---------------------------------------------------------------------------
    def check(self) -> None:
        """Refuse early what cannot run here (a missing extra), before anything is written."""
        for what in self.spec.needs_optuna:
            require_optuna(what)

    def _configs(self, params: dict) -> list[RunConfig]:
        return [self.recipe.config_for_point(params, seed) for seed in self.recipe.seeds]

    def prepare(self, cfg: RunConfig) -> Any:
        """Prepare ``cfg``'s data unless a point with the same preprocessing was prepared."""
        if self.prepare_fn is None:
            return None
        from kni_core.data.prepare import preprocessing_settings
        key = json.dumps({"dataset": cfg.to_dict()["dataset"], "settings": preprocessing_settings(cfg)},
                         sort_keys=True, default=str)
        if key in self._prepared:
            return None
        result = self.prepare_fn(cfg)
        self._prepared.add(key)
        return result

    def start(self) -> int:
        """Check, prepare the data of the first point, write the sweep and queue its first
        runs; returns the sweep id. Nothing is written when a check or the data fails (the
        other points' data is prepared before their runs start, once per preprocessing)."""
        self.check()
        planned = self.spec.planned
        if self.spec.tpe is None:
            self.points = [Point(i + 1, p, self._configs(p)) for i, p in enumerate(self.spec.points())]
            planned = len(self.points)
            self.prepare(self.points[0].configs[0])
        else:
            self.prepare(self.recipe.configs()[0])
        if planned * len(self.recipe.seeds) > MAX_RUNS:
            raise SweepError(f"{self.recipe.name}: {planned:,} points x {len(self.recipe.seeds)} seeds is more "
                             f"than {MAX_RUNS:,} runs")
        self.sweep_id = self.store.create_sweep(
            name=self.recipe.name, recipe_text=self.recipe.text, recipe_path=self.recipe.path,
            method=self.spec.method, spec=self.spec.to_dict(), seeds=self.recipe.seeds, planned=planned,
            prune=self.spec.prune.pruner if self.spec.prune else None)
        if self.spec.needs_optuna:
            from .study import create_studies
            create_studies(self.store, self.sweep_id, self.spec)
        if self.spec.tpe is None:
            self._queue(self.points)
        else:
            self._ask_wave()
        return self.sweep_id

    def _queue(self, points: list[Point]) -> list[int]:
        from .runner import new_run
        ids = []
        for p in points:
            for cfg in p.configs:
                new = new_run(self.recipe.name, self.recipe.text, cfg, self.recipe.path, self.prov)
                new = _with_sweep(new, self.sweep_id, p.number, p.params)
                p.run_ids.append(self.store.create_run(new, executor=self.executor))
            ids += p.run_ids
        if self.on_queued is not None and ids:
            self.on_queued(self.sweep_id, ids)
        return ids

    # -- TPE -------------------------------------------------------------------------------
    def wave_size(self) -> int:
        """Points asked at once: enough runs to keep ``jobs`` busy."""
        return max(1, math.ceil(self.jobs / max(1, len(self.recipe.seeds))))

    def _ask_wave(self) -> list[Point]:
        from .study import search_study
        assert self.spec.tpe is not None and self.sweep_id is not None
        if self._search is None:
            self._search = search_study(self.store, self.sweep_id, self.spec.tpe)
        space = self.spec.tpe.space
        dists = {k: d.to_optuna() for k, d in space.items()}
        wave = []
        while len(self.points) < self.spec.tpe.n and len(wave) < self.wave_size():
            trial = self._search.ask(dists)
            params = {k: space[k].from_optuna(trial.params[k]) for k in space}
            number = len(self.points) + 1
            try:
                configs = self._configs(params)
            except KniError as e:             # a combination the recipe refuses: told failed
                log.warning("sweep %s point %d (%s) is not a valid configuration: %s", self.sweep_id, number,
                            params_text(params), e)
                self._search.tell(trial, state=_state("FAIL"))
                self.points.append(Point(number, params, [], trial=trial))
                self.told[number] = "fail"
                continue
            p = Point(number, params, configs, trial=trial)
            self.points.append(p)
            wave.append(p)
        self._queue(wave)
        return wave

    def _tell(self, points: list[Point]) -> None:
        runs = {r.id: r for r in self.store.runs(ids=[i for p in points for i in p.run_ids])}
        epochs = self.store.epochs_of([i for p in points for i in p.run_ids])
        for p in points:
            mine = [runs[i] for i in p.run_ids if i in runs]
            statuses = {r.status for r in mine}
            values = [r.best_valid_auc for r in mine if r.best_valid_auc is not None]
            from .store import COMPLETED, PRUNED
            if mine and statuses == {COMPLETED} and len(values) == len(mine):
                self._search.tell(p.trial, sum(values) / len(values))
                self.told[p.number] = "complete"
            elif mine and statuses <= {COMPLETED, PRUNED} and PRUNED in statuses:
                for epoch, value in _mean_curve([epochs.get(r.id, []) for r in mine]):
                    p.trial.report(value, epoch - 1)          # Optuna counts steps from 0
                self._search.tell(p.trial, state=_state("PRUNED"))
                self.told[p.number] = "pruned"
            else:
                self._search.tell(p.trial, state=_state("FAIL"))
                self.told[p.number] = "fail"

    # -- running ----------------------------------------------------------------------------
    def run(self) -> dict[int, str]:
        """Run the queued points to their end (TPE: wave after wave); returns every run's status."""
        assert self.sweep_id is not None, "start() first"
        try:
            if self.spec.tpe is None:
                self._launch([p for p in self.points])
            else:
                wave = [p for p in self.points if p.run_ids and p.number not in self.told]
                while wave:
                    self._launch(wave)
                    self._tell(wave)
                    if self.stopped:
                        break
                    wave = self._ask_wave()
        finally:
            try:
                self.store.finish_sweep(self.sweep_id)
            except KniError as e:
                log.warning("could not record the end of sweep %s: %s", self.sweep_id, e)
        return self.statuses

    def _launch(self, points: list[Point]) -> None:
        ids = [i for p in points for i in p.run_ids]
        configs = [c for p in points for c in p.configs]
        from .store import QUEUED
        for p in points:                       # once per preprocessing: parallel runs share the cache
            try:
                self.prepare(p.configs[0])
            except KniError as e:              # each run of the point will record it
                log.warning("sweep %s point %d: preparing its data failed: %s", self.sweep_id, p.number, e)
            try:
                self.store.touch(ids, statuses=(QUEUED,))     # queued rows stay alive meanwhile
            except KniError as e:              # a locked database: the launcher touches them next
                log.warning("sweep %s: %s", self.sweep_id, e)
        statuses, stop = self.launch_fn(ids, configs)
        self.statuses.update(statuses)
        self.stopped = self.stopped or bool(stop)

    @property
    def run_ids(self) -> list[int]:
        return [i for p in self.points for i in p.run_ids]


def _with_sweep(new: Any, sweep_id: int | None, number: int, params: dict) -> Any:
    import dataclasses
    return dataclasses.replace(new, sweep_id=sweep_id, sweep_point=number,
                               sweep_params=json.dumps(params, sort_keys=False))


def _state(name: str) -> Any:
    return getattr(require_optuna("a tpe sweep").trial.TrialState, name)


def _mean_curve(runs_epochs: list[list[Any]]) -> list[tuple[int, float]]:
    """(epoch, mean valid AUC) over the epochs every run has."""
    if not runs_epochs or not all(runs_epochs):
        return []
    steps = set.intersection(*({e.epoch for e in rows if e.valid_auc is not None} for rows in runs_epochs))
    out = []
    for step in sorted(steps):
        vals = [e.valid_auc for rows in runs_epochs for e in rows if e.epoch == step]
        out.append((step, sum(vals) / len(vals)))
    return out


def sweep_of(store: "Store", run: "Run") -> SweepSpec | None:
    """The spec of ``run``'s sweep (None outside a sweep)."""
    if run.sweep_id is None:
        return None
    return SweepSpec.from_dict(store.get_sweep(run.sweep_id).spec_dict)
