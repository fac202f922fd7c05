"""Reads a recipe's ``sweep:`` node into a :class:`~.sweep.SweepSpec`.

Called by the recipe builder, which owns the lines and the errors: every value a sweep can
produce is checked as ``--set`` checks it (the bounds of a range, each listed value), each
mistake recorded at its line, and reading goes on.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Sequence

import yaml

from kni_core.config import SECTIONS, UNHASHED, ConfigError, expected_type
from kni_core.errors import KniError
from kni_core.schema import short_repr

from .seeds import parse_seeds
from .sweep import (
    DISTRIBUTIONS,
    MAX_POINTS,
    PRUNERS,
    SWEEP_KEYS,
    Distribution,
    PruneSpec,
    RandomSpec,
    SweepSpec,
    TpeSpec,
)
from .yaml_nodes import line_of, node_kind, suggest


class SweepReader:
    """Reads a ``sweep:`` node with the recipe builder's helpers; every mistake is recorded
    on the builder, at its line, and reading goes on."""

    def __init__(self, builder: Any):
        self.b = builder
        self.lines: dict[str, int | None] = {}          # "sweep.grid.model.temperature" -> line
        self.value_lines: dict[tuple[str, str], int | None] = {}   # (key, JSON of a grid value) -> line

    def read(self, node: yaml.Node, line: int | None) -> SweepSpec | None:
        b = self.b
        if not isinstance(node, yaml.MappingNode):
            raise b.fail("sweep", "expected a mapping with grid, random, tpe (and optionally prune), got "
                                  f"{node_kind(node, empty=True)}", line)
        parts: dict[str, Any] = {}
        where: dict[str, int | None] = {}
        unknown = False
        for key, key_node, value_node in b.entries(node, "sweep"):
            kline = line_of(key_node)
            try:
                if key not in SWEEP_KEYS:
                    unknown = True
                    raise b.fail(f"sweep.{key}", "unknown key; " + suggest(key, SWEEP_KEYS), kline)
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
                    where_k = f"sweep.random.space.{k}"
                    b.record(b.fail(where_k, f"also swept by sweep.grid (line {self.lines.get('sweep.grid.' + k)}); "
                                             f"sweep a key in one of them", self.lines.get(where_k)))
                    ok = False
        if not ok or any(k in where and parts.get(k) is None for k in ("grid", "random", "tpe")):
            return None                       # (a bad prune: the points are still checked)
        spec = SweepSpec(grid or {}, random, parts.get("tpe"), parts.get("prune"), parts.get("rerun") or ())
        if spec.planned > MAX_POINTS:
            b.record(b.fail("sweep", f"{spec.planned:,} points, more than {MAX_POINTS:,}", line))
            return None
        return spec

    # -- the parts -----------------------------------------------------------------------------
    def read_grid(self, node: yaml.Node, line: int | None) -> dict[str, list] | None:
        b = self.b
        if not isinstance(node, yaml.MappingNode) or not node.value:
            raise b.fail("sweep.grid", "expected a mapping of SECTION.KEY: [values to try], e.g. "
                                       f"model.temperature: [1, 10, 100]; got {node_kind(node, empty=True)}", line)
        out: dict[str, list] = {}
        failed = False
        for key, key_node, value_node in b.entries(node, "sweep.grid"):
            where = f"sweep.grid.{key}"
            kline = line_of(key_node)
            self.lines[where] = kline
            try:
                self.swept_key(key, where, kline)
                if not isinstance(value_node, yaml.SequenceNode):
                    raise b.fail(where, "expected a list of the values to try, e.g. [1, 10, 100]; got "
                                        f"{node_kind(value_node, empty=True)}", kline)
                if not value_node.value:
                    raise b.fail(where, "expected at least one value to try; got an empty list", kline)
                values = []
                seen: dict[str, int | None] = {}
                for i, item in enumerate(value_node.value):
                    iline = line_of(item)
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

    def read_random(self, node: yaml.Node, line: int | None) -> RandomSpec | None:
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

    def read_tpe(self, node: yaml.Node, line: int | None) -> TpeSpec | None:
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

    def read_rerun(self, node: yaml.Node, line: int | None) -> tuple[int, ...] | None:
        """``rerun: {seeds: 1..5}``: the seeds the best point runs after the search."""
        b = self.b
        values = self.options("sweep.rerun", node, line, ("seeds",), "seeds: the seeds the best point runs "
                                                                      "after the search, e.g. {seeds: 1..5}")
        if values is None:
            return None
        if "seeds" not in values:
            b.record(b.fail("sweep.rerun.seeds", "missing; expected the seeds the best point runs, e.g. 1..5", line))
            return None
        spec, sline = values["seeds"]
        try:
            seeds = parse_seeds(", ".join(map(str, spec)) if isinstance(spec, list) else str(spec))
        except ConfigError as e:
            b.record(b.fail("sweep.rerun.seeds", str(e).removeprefix("seeds: "), sline))
            return None
        return tuple(seeds)

    def read_prune(self, node: yaml.Node, line: int | None) -> PruneSpec | None:
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
            b.record(b.fail("sweep.prune.pruner", f"expected one of {', '.join(PRUNERS)}; got {short_repr(pruner)}",
                            pline))
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
    def options(self, where: str, node: yaml.Node, line: int | None, allowed: Sequence[str],
                expected: str) -> dict[str, tuple[Any, int | None]] | None:
        """A mapping of plain options: ``{key: (value, line)}``; ``space`` keeps its node."""
        b = self.b
        if not isinstance(node, yaml.MappingNode):
            raise b.fail(where, f"expected a mapping of {expected}; got {node_kind(node, empty=True)}", line)
        out: dict[str, tuple[Any, int | None]] = {}
        failed = False
        for key, key_node, value_node in b.entries(node, where):
            kline = line_of(key_node)
            if key not in allowed:
                b.record(b.fail(f"{where}.{key}", "unknown key; " + suggest(key, allowed), kline))
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
            b.record(b.fail(where, f"expected an integer >= {lo}; got {short_repr(value)}", line))
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
        b = self.b
        if given is None:
            b.record(b.fail(f"{where}", "missing; expected a mapping of SECTION.KEY: {distribution}, e.g. "
                                        "train.l2: {loguniform: [1.0e-8, 1.0e-4]}", line))
            return None
        node, sline = given
        if not isinstance(node, yaml.MappingNode) or not node.value:
            b.record(b.fail(where, "expected a mapping of SECTION.KEY: {distribution}, e.g. train.l2: "
                                   f"{{loguniform: [1.0e-8, 1.0e-4]}}; got {node_kind(node, empty=True)}", sline))
            return None
        out: dict[str, Distribution] = {}
        failed = False
        for key, key_node, value_node in b.entries(node, where):
            kwhere = f"{where}.{key}"
            kline = line_of(key_node)
            self.lines[kwhere] = kline
            try:
                self.swept_key(key, kwhere, kline)
                out[key] = self.distribution(key, kwhere, value_node, kline)
            except KniError as e:
                b.record(e)
                failed = True
        return None if failed else out

    def distribution(self, key: str, where: str, node: yaml.Node, line: int | None) -> Distribution:
        b = self.b
        expected = ("a distribution: {uniform: [lo, hi]}, {loguniform: [lo, hi]}, {int: [lo, hi]}, "
                    "{logint: [lo, hi]} or {choice: [values]}")
        if not isinstance(node, yaml.MappingNode) or len(node.value) != 1:
            raise b.fail(where, f"expected {expected}; got {node_kind(node, empty=True)}", line)
        (kind_node, value_node), = node.value
        kind = str(kind_node.value) if isinstance(kind_node, yaml.ScalarNode) else "?"
        dline = line_of(kind_node)
        if kind not in DISTRIBUTIONS:
            raise b.fail(where, f"unknown distribution {kind!r}; {suggest(kind, DISTRIBUTIONS)}", dline)
        if not isinstance(value_node, yaml.SequenceNode) or not value_node.value:
            raise b.fail(where, f"{kind}: expected a non-empty list; got {node_kind(value_node, empty=True)}", dline)
        if kind == "choice":
            values, seen = [], set()
            for i, item in enumerate(value_node.value):
                value = self.value(key, where, item, line_of(item), f"choice {i + 1}: ")
                text = json.dumps(value, sort_keys=True)
                if text in seen:
                    raise b.fail(where, f"choice {json.dumps(value)} is listed twice", line_of(item))
                seen.add(text)
                values.append(value)
            return Distribution("choice", choices=tuple(values))
        if len(value_node.value) != 2:
            raise b.fail(where, f"{kind}: expected [lo, hi], two numbers; got {len(value_node.value)} values", dline)
        f = b.sweep_field(key, where, line)
        numeric = _numeric_kind(f, kind)
        if numeric is None:
            raise b.fail(where, f"{kind}: {key} is not a number; list its values with {{choice: [...]}}", dline)
        if numeric == "int" and kind in ("uniform", "loguniform"):
            raise b.fail(where, f"{kind}: {key} takes integers; use {{int: [lo, hi]}} or {{logint: [lo, hi]}}",
                         dline)
        bounds = [self.value(key, where, item, line_of(item), ("lo: ", "hi: ")[i])
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
        if key in UNHASHED:
            raise b.fail(where, f"{key} changes no number of the training (it is no part of a configuration's "
                                "id), so every point would be the same configuration; set it in the recipe", line)
        b.sweep_field(key, where, line)
        self.b.swept[key] = line

    def value(self, key: str, where: str, node: yaml.Node, line: int | None, what: str) -> Any:
        """One value of ``key`` as the recipe would take it, checked and normalised."""
        try:
            return self.b.sweep_value(key, node, line)
        except KniError as e:
            message = getattr(e, "message", str(e))
            raise self.b.fail(where, what + message, getattr(e, "line", None) or line) from None


def _numeric_kind(f: Any, distribution: str) -> str | None:
    if f.type is None:          # an entry of a mapping (dataset.synthetic.users): what the distribution
        return "int" if distribution in ("int", "logint") else "float"     # draws; the config checks it
    types = expected_type(f)
    if types == (int,):
        return "int"
    if types == (int, float):
        return "float"
    return None


def _first_field(section: str) -> str:
    return dataclasses.fields(SECTIONS[section])[0].name
