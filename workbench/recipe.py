"""YAML recipes: one file names a dataset, the model / training / evaluation settings and seeds.

``load_recipe`` turns a file into a validated :class:`Recipe`. Every mistake is reported as a
:class:`RecipeError` that names the file, the 1-based line and the dotted key at fault, e.g.::

    recipes/bc.yaml:12: model.temprature: unknown key; did you mean 'temperature'?

All the mistakes of a recipe are reported at once, one such line each, in file order (then the
command-line overrides): the error's ``errors`` lists them, its own attributes are the first's.
Only an unreadable file (invalid YAML, not a mapping) stops at its first problem. A rule that
spans fields (``dataset.split`` sums to 1...) is only checked when the fields it reads are valid,
so one mistake is never reported twice.

The file is read with PyYAML's node API (``yaml.compose``) rather than ``yaml.safe_load`` so that
line numbers survive; values are then constructed with the safe constructor and checked against
the schema in :mod:`kni_core.config` (``check_value`` for each field, ``RunConfig.validate`` for
the rules that span fields).

Command-line overrides (``--set SECTION.KEY=VALUE``, ``--seeds``, ``--device``) go through the same
checks; their errors name the override instead of a line.

The keys of ``model`` are those of the model ``model.name`` names (:data:`kni_core.config.MODEL_CONFIGS`;
``kni`` when it is absent), checked once the name is final (an override may change it), so a key
of another model is reported at its own line. ``eval.topk`` is a nested section whose keys are
written under it or set as ``--set eval.topk.KEY=VALUE``.

A ``sweep:`` section (:mod:`workbench.sweep`) varies keys over points; its values are checked
with the same rules, each at its own line, and every point of a grid or random sweep is checked
whole. ``--set`` applies to every point; setting a key the sweep varies is a mistake.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from kni_core.config import (MAX_SEED, MODEL_CONFIGS, SECTIONS, RunConfig, check_value, expected_type,
                             model_config_class, section_class, subsection)
from kni_core.errors import ConfigError

from .sweep import SweepReader, SweepSpec, apply_params, params_text

__all__ = ["Recipe", "RecipeError", "find_recipes", "load_recipe", "parse_recipe", "parse_seeds",
           "TOP_KEYS", "MAX_SEEDS"]

#: Keys allowed at the top level of a recipe, in the order they are usually written.
TOP_KEYS: tuple[str, ...] = ("name", "description", "dataset", "model", "train", "eval", "seeds", "device",
                             "executor", "sweep")
#: Top-level keys that hold a single value (as opposed to a section).
_SCALAR_KEYS = ("name", "description", "seeds", "device", "executor")
#: Values of the top-level ``executor`` key (where the runs execute; not part of the config hash).
EXECUTORS = ("local", "ray")
#: Upper bound on the number of seeds of one recipe (guards against ``1..100000000``).
MAX_SEEDS = 10_000

_NULL_TAG = "tag:yaml.org,2002:null"
# YAML 1.1 (PyYAML) reads ``1e-5`` (no dot) as a string; such plain scalars are accepted as numbers
# for float fields.
_EXP_FLOAT = re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$")
_SEED_INT = re.compile(r"^-?[0-9]+$")
_SEED_RANGE = re.compile(r"^(-?[0-9]+)\s*\.\.\s*(-?[0-9]+)$")
_ERROR_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*): (.*)$", re.S)
_SEEDS_EXPECTED = "expected a list of non-negative integers or a range such as '1..5'"
#: Every key some model declares (a key of another model than the recipe's is a clear mistake).
_MODEL_KEYS: dict[str, list[str]] = {}
for _name, _klass in MODEL_CONFIGS.items():
    for _f in dataclasses.fields(_klass):
        _MODEL_KEYS.setdefault(_f.name, []).append(_name)


def _fields(klass: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(klass)}


def _other_model_key(key: str, model: str) -> str:
    owners = ", ".join(_MODEL_KEYS[key])
    keys = ", ".join(f.name for f in dataclasses.fields(model_config_class(model)))
    return f"not a key of model '{model}' (a key of {owners}); model '{model}' takes {keys}"


class RecipeError(ConfigError):
    """An invalid recipe or override.

    ``path`` is the recipe file (or ``None``), ``line`` the 1-based line (or ``None``), ``key`` the
    dotted key at fault (or ``None``), ``origin`` the command-line override that caused the error
    (or ``None``) and ``message`` the bare explanation. ``str(e)`` is ``PATH:LINE: KEY: message``,
    or ``ORIGIN: message`` for an override. A recipe with several mistakes raises one
    RecipeError whose ``errors`` holds one RecipeError per mistake (in file order) and whose
    other attributes are those of the first; ``str(e)`` then has one line per mistake.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None,
                 key: str | None = None, origin: str | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.key = key
        self.origin = origin
        parts: list[str] = []
        if origin is not None:
            parts.append(origin)
        else:
            if self.path is not None:
                parts.append(self.path + (f":{line}" if line is not None else ""))
            elif line is not None:
                parts.append(f"line {line}")
            if key:
                parts.append(key)
        parts.append(message)
        super().__init__(": ".join(parts))

    @classmethod
    def many(cls, errors: list["RecipeError"]) -> "RecipeError":  # type: ignore[override]
        """One error for several mistakes: the first's attributes, every mistake in ``errors``."""
        if len(errors) == 1:
            return errors[0]
        first = errors[0]
        combined = cls(first.message, path=first.path, line=first.line, key=first.key, origin=first.origin)
        combined.args = ("\n".join(str(e) for e in errors),)
        combined.errors = list(errors)
        return combined


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
    #: Where its runs execute: ``local`` child processes or ``ray`` tasks (workbench.executors).
    executor: str = "local"

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


# --------------------------------------------------------------------------------------------
# seeds


def parse_seeds(spec: str) -> list[int]:
    """Read a seed list such as ``1,2,3``, ``1..5`` (inclusive) or ``1..3, 7``.

    Whitespace is ignored and duplicates are dropped, keeping the first occurrence.
    """
    if not isinstance(spec, str):
        raise ConfigError(f"seeds: {_SEEDS_EXPECTED}, got {type(spec).__name__} ({spec!r})")
    example = "e.g. '1,2,3', '1..5' or '1..3,7'"
    if not spec.strip():
        raise ConfigError(f"seeds: no seeds given; expected {example}")
    out: list[int] = []
    seen: set[int] = set()
    for raw in spec.split(","):
        part = raw.strip()
        if not part:
            raise ConfigError(f"seeds: empty item in {spec!r}; expected {example}")
        m = _SEED_RANGE.match(part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo < 0 or hi < 0:
                raise ConfigError(f"seeds: negative seed in {part!r}; seeds are non-negative integers")
            if hi < lo:
                raise ConfigError(f"seeds: reversed range {part!r}; write it as '{hi}..{lo}'")
            if hi > MAX_SEED:
                raise ConfigError(f"seeds: seed {hi} is above the largest seed {MAX_SEED}")
            if hi - lo + 1 > MAX_SEEDS:
                raise ConfigError(f"seeds: range {part!r} has {hi - lo + 1} seeds, more than {MAX_SEEDS}")
            values: Iterable[int] = range(lo, hi + 1)
        elif _SEED_INT.match(part):
            value = int(part)
            if value < 0:
                raise ConfigError(f"seeds: negative seed {value}; seeds are non-negative integers")
            if value > MAX_SEED:
                raise ConfigError(f"seeds: seed {value} is above the largest seed {MAX_SEED}")
            values = (value,)
        else:
            raise ConfigError(f"seeds: cannot read {part!r}; expected integers and inclusive ranges, "
                              f"{example}")
        for v in values:
            if v not in seen:
                seen.add(v)
                out.append(v)
        if len(out) > MAX_SEEDS:
            raise ConfigError(f"seeds: more than {MAX_SEEDS} seeds")
    return out


# --------------------------------------------------------------------------------------------
# loading


def find_recipes(folder: str | Path) -> list[Path]:
    """The ``*.yaml`` / ``*.yml`` files directly in ``folder``, sorted by name (dot-files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RecipeError("not a folder", path=folder)
    return sorted((p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in (".yaml", ".yml")),
                  key=lambda p: p.name)


def load_recipe(path: str | Path, overrides: Iterable[str] = (), seeds: str | list[int] | None = None,
                device: str | None = None) -> Recipe:
    """Read and validate the recipe at ``path``; see :func:`parse_recipe` for the arguments."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RecipeError("no such file", path=path) from None
    except IsADirectoryError:
        raise RecipeError("is a folder, expected a recipe file", path=path) from None
    except UnicodeDecodeError as e:
        raise RecipeError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=path) from None
    except OSError as e:
        raise RecipeError(f"cannot read: {e.strerror or e}", path=path) from None
    return parse_recipe(text, str(path), overrides=overrides, seeds=seeds, device=device)


def parse_recipe(text: str, path: str = "<string>", overrides: Iterable[str] = (),
                 seeds: str | list[int] | None = None, device: str | None = None) -> Recipe:
    """Validate recipe ``text`` (read from ``path``, used in messages).

    ``overrides`` are ``SECTION.KEY=VALUE`` strings (or ``name=``/``description=``/``seeds=``/
    ``device=``) applied in order after the file; ``seeds`` (a spec for :func:`parse_seeds` or a
    list) and ``device`` replace the file's values. Raises :class:`RecipeError`.
    """
    builder = _Builder(path)
    builder.read_text(text)
    if isinstance(overrides, str):
        overrides = [overrides]
    for item in overrides:
        builder.apply_override(item)
    if seeds is not None:
        builder.set_seeds_argument(seeds)
    if device is not None:
        builder.set_scalar("device", device, origin=f"--device {device}")
    return builder.build(text)


# --------------------------------------------------------------------------------------------
# implementation


def _line(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None and node.start_mark is not None else None


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"a single value ({node.value})"


def _strip_key(message: str, key: str) -> str:
    prefix = key + ": "
    return message[len(prefix):] if message.startswith(prefix) else message


def _suggest(key: str, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return "expected one of: " + ", ".join(allowed)


def _yaml_error_text(e: yaml.YAMLError) -> tuple[int | None, str]:
    """(1-based line, explanation) of a PyYAML exception."""
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "invalid YAML"
        if e.context and e.problem:
            if e.context.startswith("while"):
                problem = f"{problem} ({e.context}"
                if e.context_mark is not None and e.context_mark is not e.problem_mark:
                    problem += f" on line {e.context_mark.line + 1}"
                problem += ")"
            else:
                problem = f"{e.context}, {problem}"
        return (mark.line + 1 if mark is not None else None), problem
    if isinstance(e, yaml.reader.ReaderError):
        return None, f"{e.reason} (character {e.character!r} at position {e.position})"
    return None, str(e)


class _Builder:
    """Collects the values of one recipe with where each came from (a line or an override),
    and every mistake found on the way."""

    def __init__(self, path: str):
        self.path = path
        self.values: dict[str, Any] = {}
        # key ("model.kg", "model", "seeds", "dataset.synthetic.users") -> (line, origin)
        self.where: dict[str, tuple[int | None, str | None]] = {}
        self.errors: list[RecipeError] = []
        # model keys as constructed, with their nodes: checked again once model.name is final
        self.model_raw: dict[str, tuple[Any, yaml.Node | None]] = {}
        self.constructor = yaml.SafeLoader("")
        self.sweep: SweepSpec | None = None
        self.sweep_reader: SweepReader | None = None
        self.swept: dict[str, int | None] = {}            # swept key -> line
        self.overridden: dict[str, str] = {}              # key set by --set -> the override

    @property
    def model_name(self) -> str:
        name = self.values.get("model.name", "kni")
        return name if name in MODEL_CONFIGS else "kni"

    def field_of(self, key: str) -> dataclasses.Field | None:
        """The schema field of a dotted key (``model.dim``, ``eval.topk.users``), or None."""
        parts = key.split(".")
        klass: type | None = section_class(parts[0], self.model_name)
        f = None
        for i, part in enumerate(parts[1:]):
            if klass is None:
                return None
            f = _fields(klass).get(part)
            if f is None:
                return None
            klass = subsection(f) if i < len(parts) - 2 else None
        return f

    # -- errors ---------------------------------------------------------------------------
    def fail(self, key: str | None, message: str, line: int | None = None,
             origin: str | None = None) -> RecipeError:
        return RecipeError(message, path=self.path, line=line, key=key, origin=origin)

    def record(self, error: RecipeError) -> None:
        self.errors.append(error)

    def clear(self, key: str) -> None:
        """A later value (an override) replaces ``key``: its earlier mistakes no longer count."""
        self.errors = [e for e in self.errors if not _covers(key, e.key)]

    def has_error(self, key: str | None) -> bool:
        """Whether ``key``, a key inside it or the section holding it already has a mistake."""
        if key is None:
            return bool(self.errors)
        return any(e.key is not None and (_covers(key, e.key) or _covers(e.key, key)) for e in self.errors)

    # -- the file ---------------------------------------------------------------------------
    def read_text(self, text: str) -> None:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as e:
            line, problem = _yaml_error_text(e)
            raise self.fail(None, f"invalid YAML: {problem}", line) from None
        if root is None:
            raise self.fail(None, "the recipe is empty; expected a mapping with keys such as "
                                  "name, dataset, model, train, eval, seeds, device")
        if not isinstance(root, yaml.MappingNode):
            raise self.fail(None, f"expected a mapping of {', '.join(TOP_KEYS)} at the top level, "
                                  f"got {_node_kind(root)}", _line(root))
        for key, key_node, value_node in self.entries(root, None):
            line = _line(key_node)
            try:
                if key not in TOP_KEYS:
                    raise self.fail(key, f"unknown key; {_suggest(key, TOP_KEYS)}", line)
                if key in SECTIONS:
                    self.read_section(key, value_node, line)
                elif key == "sweep":
                    self.where[key] = (line, None)
                    self.sweep_reader = SweepReader(self)
                    self.sweep = self.sweep_reader.read(value_node, line)
                else:
                    self.set_node(key, value_node, line=line)
            except RecipeError as e:
                self.record(e)

    def entries(self, node: yaml.MappingNode, prefix: str | None, strict: bool = False):
        """(key, key node, value node) of a mapping. Duplicated and non-scalar keys are mistakes:
        recorded and skipped, or raised with ``strict``."""
        seen: dict[str, int | None] = {}
        for key_node, value_node in node.value:
            error = None
            if not isinstance(key_node, yaml.ScalarNode):
                where = prefix or "recipe"
                error = self.fail(prefix, f"keys must be plain names, got {_node_kind(key_node)} "
                                          f"as a key of {where}", _line(key_node))
            else:
                key = str(key_node.value)
                dotted = f"{prefix}.{key}" if prefix else key
                if key in seen:
                    first = seen[key]
                    error = self.fail(dotted, "duplicate key" + (f" (first given on line {first})" if first else ""),
                                      _line(key_node))
            if error is not None:
                if strict:
                    raise error
                self.record(error)
                continue
            seen[key] = _line(key_node)
            yield key, key_node, value_node

    def read_section(self, section: str, node: yaml.Node, line: int | None, klass: type | None = None) -> None:
        """A section (or, with ``klass``, a nested one such as ``eval.topk``) of the file."""
        self.where[section] = (line, None)
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
            return  # ``model:`` with nothing under it: all defaults
        if section == "model" and isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:     # the name first: it decides the other keys
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == "name":
                    try:
                        self.set_node("model.name", value_node, line=_line(key_node))
                    except RecipeError as e:
                        self.record(e)
        if klass is None:
            klass = section_class(section, self.model_name)
        fields = _fields(klass)
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(section, f"expected a mapping of {section} settings "
                                     f"({', '.join(fields)}), got {_node_kind(node)}", line)
        for key, key_node, value_node in self.entries(node, section):
            dotted = f"{section}.{key}"
            if dotted == "model.name":
                continue
            try:
                if key not in fields:
                    if section == "model" and key in _MODEL_KEYS:
                        raise self.fail(dotted, _other_model_key(key, self.model_name), _line(key_node))
                    raise self.fail(dotted, f"unknown key; {_suggest(key, fields)}", _line(key_node))
                sub = subsection(fields[key])
                if sub is not None:
                    self.read_section(dotted, value_node, _line(key_node), sub)
                else:
                    self.set_node(dotted, value_node, line=_line(key_node))
            except RecipeError as e:
                self.record(e)

    # -- one value ---------------------------------------------------------------------------
    def construct(self, key: str, node: yaml.Node | None, line: int | None, origin: str | None) -> Any:
        if node is None:
            return None
        self.check_duplicates(key, node, origin, set())
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            err_line, problem = _yaml_error_text(e)
            raise self.fail(key, f"invalid value: {problem}", err_line or line, origin) from None

    def check_duplicates(self, key: str, node: yaml.Node, origin: str | None, visited: set[int]) -> None:
        """Refuse duplicated keys inside a value; note where each nested key is written."""
        if id(node) in visited:
            return
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for sub, key_node, value_node in self.entries_or_fail(node, key, origin):
                self.where[f"{key}.{sub}"] = (_line(key_node) if origin is None else None, origin)
                self.check_duplicates(f"{key}.{sub}", value_node, origin, visited)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                self.check_duplicates(key, item, origin, visited)

    def entries_or_fail(self, node: yaml.MappingNode, key: str, origin: str | None):
        try:
            yield from self.entries(node, key, strict=True)
        except RecipeError as e:
            if origin is None:
                raise
            raise self.fail(e.key, e.message, None, origin) from None

    def set_node(self, key: str, node: yaml.Node | None, line: int | None = None,
                 origin: str | None = None) -> None:
        value = self.construct(key, node, line, origin)
        if key == "seeds":
            self.values[key] = self.check_seeds(value, node, line, origin)
            self.where[key] = (line, origin)
            return
        if "." in key:
            if key.startswith("model.") and key != "model.name":
                self.model_raw[key] = (value, node)
            f = self.field_of(key)
            if f is None:               # a key of another model: checked when the name is final
                self.values[key] = value
                self.where[key] = (line, origin)
                return
            value = self.coerce(f, value, node)
            self.check_field(key, f, value, node, line, origin)
            value = self.normalise(f, value)
        else:
            self.check_top(key, value, line, origin)
        self.values[key] = value
        self.where[key] = (line, origin)

    # -- sweep values (workbench.sweep.SweepReader) --------------------------------------------
    def sweep_field(self, key: str, where: str, line: int | None) -> dataclasses.Field:
        """The schema field of a swept ``SECTION.KEY``; a mistake names ``where``."""
        section = key.split(".", 1)[0]
        if section not in SECTIONS or "." not in key:
            raise self.fail(where, f"unknown section '{section}'; {_suggest(section, SECTIONS)}", line)
        if key == "model.name":
            raise self.fail(where, "model.name cannot be swept (each model has its own keys); "
                                   "write one recipe per model", line)
        f = self.field_of(key)
        if f is None or subsection(f) is not None:
            parent, name = key.rsplit(".", 1)
            holder = section_class(section, self.model_name) if parent == section else \
                (subsection(self.field_of(parent)) if self.field_of(parent) is not None else None)
            fields = list(_fields(holder)) if holder is not None else []
            raise self.fail(where, f"{key} is not a recipe key; {_suggest(name, fields)}", line)
        return f

    def sweep_value(self, key: str, node: yaml.Node, line: int | None) -> Any:
        """A value of swept ``key`` checked and normalised as the recipe's own value would be."""
        f = self.sweep_field(key, key, line)
        value = self.construct(f"sweep.{key}", node, line, None)
        value = self.coerce(f, value, node)
        self.check_field(key, f, value, node, line, None)
        return self.normalise(f, value)

    def check_points(self, base: RunConfig) -> None:
        """Every grid / random point whole (the rules between keys), each mistake at the line
        of the swept value behind it."""
        assert self.sweep is not None and self.sweep_reader is not None
        reader = self.sweep_reader
        method = "grid" if self.sweep.grid else "random"
        seen: set[tuple[str | None, str]] = set()
        for params in self.sweep.points():
            for problem in apply_params(base, params).problems():
                message = str(problem)
                m = _ERROR_KEY.match(message)
                key = m.group(1) if m else None
                if m:
                    message = m.group(2)
                swept = next((k for k in params if key is not None and _covers(k, key)), None)
                if swept is not None and swept in self.sweep.grid:
                    where = f"sweep.grid.{swept}"
                    line = reader.value_lines.get((swept, json.dumps(params[swept], sort_keys=True)))
                elif swept is not None:
                    where = f"sweep.random.space.{swept}"
                    line = reader.lines.get(where)
                    message = f"a drawn point ({params_text(params, 60)}): {message}"
                else:
                    where, line = f"sweep.{method}", self.where.get("sweep", (None, None))[0]
                    message = f"point {params_text(params, 60)}: {key + ': ' if key else ''}{message}"
                if (where, message) not in seen:
                    seen.add((where, message))
                    self.record(self.fail(where, message, line))

    def set_scalar(self, key: str, value: Any, origin: str) -> None:
        try:
            self.check_top(key, value, None, origin)
        except RecipeError as e:
            self.clear(key)
            self.record(e)
            return
        self.clear(key)
        self.values[key] = value
        self.where[key] = (None, origin)

    @staticmethod
    def coerce(f: dataclasses.Field, value: Any, node: yaml.Node | None) -> Any:
        """``1e-5`` written plainly (a string in YAML 1.1) is a number where a number is expected."""
        if (expected_type(f) == (int, float) and isinstance(value, str)
                and isinstance(node, yaml.ScalarNode) and node.style is None
                and _EXP_FLOAT.match(value)):
            return float(value)
        return value

    @staticmethod
    def normalise(f: dataclasses.Field, value: Any) -> Any:
        """Checked integers of float fields become floats.

        ``temperature: 10`` and ``temperature: 10.0`` then give the same config hash.
        """
        if expected_type(f) == (int, float) and isinstance(value, int) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:  # beyond float range: kept as the integer it is
                return value
        return value

    def check_field(self, key: str, f: dataclasses.Field, value: Any, node: yaml.Node | None,
                    line: int | None, origin: str | None) -> None:
        try:
            check_value(key, f, value)
        except ConfigError as e:
            raise self.fail(key, _strip_key(str(e), key), line, origin) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(key, f"expected a finite number, got {value}", line, origin)
        if isinstance(value, list):
            for i, item in enumerate(value):
                item_line = line
                if origin is None and isinstance(node, yaml.SequenceNode) and i < len(node.value):
                    item_line = _line(node.value[i])
                if isinstance(item, bool):
                    raise self.fail(key, f"expected numbers in the list, got a boolean ({item}) "
                                         f"at position {i + 1}", item_line, origin)
                if isinstance(item, float) and not math.isfinite(item):
                    raise self.fail(key, f"expected finite numbers in the list, got {item} "
                                         f"at position {i + 1}", item_line, origin)

    def check_top(self, key: str, value: Any, line: int | None, origin: str | None) -> None:
        if key == "description":
            if value is not None and not isinstance(value, str):
                raise self.fail(key, f"expected a string, got {type(value).__name__} ({value!r})", line, origin)
            return
        if key == "executor":
            if value not in EXECUTORS:
                raise self.fail(key, f"expected one of {', '.join(EXECUTORS)}, got {value!r}", line, origin)
            return
        f = next(f for f in dataclasses.fields(RunConfig) if f.name == key)
        try:
            check_value(key, f, value)
        except ConfigError as e:
            raise self.fail(key, _strip_key(str(e), key), line, origin) from None
        if key == "name" and not value.strip():
            raise self.fail(key, "expected a non-empty name", line, origin)

    def check_seeds(self, value: Any, node: yaml.Node | None, line: int | None,
                    origin: str | None) -> list[int]:
        if isinstance(value, str):
            try:
                return parse_seeds(value)
            except ConfigError as e:
                raise self.fail("seeds", _strip_key(str(e), "seeds"), line, origin) from None
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
            node = None
        if not isinstance(value, list):
            got = "a boolean" if isinstance(value, bool) else type(value).__name__
            raise self.fail("seeds", f"{_SEEDS_EXPECTED}, got {got} ({value!r})", line, origin)
        if not value:
            raise self.fail("seeds", "expected at least one seed", line, origin)
        out: list[int] = []
        for i, item in enumerate(value):
            item_line = line
            if origin is None and isinstance(node, yaml.SequenceNode) and i < len(node.value):
                item_line = _line(node.value[i])
            if isinstance(item, bool) or not isinstance(item, int):
                raise self.fail("seeds", f"expected non-negative integers, got {item!r} at position {i + 1}",
                                item_line, origin)
            if item < 0:
                raise self.fail("seeds", f"expected non-negative integers, got {item} at position {i + 1}",
                                item_line, origin)
            if item > MAX_SEED:
                raise self.fail("seeds", f"expected seeds up to {MAX_SEED}, got {item} at position {i + 1}",
                                item_line, origin)
            if item not in out:
                out.append(item)
        if len(out) > MAX_SEEDS:
            raise self.fail("seeds", f"more than {MAX_SEEDS} seeds", line, origin)
        return out

    # -- the command line ------------------------------------------------------------------
    def apply_override(self, text: Any) -> None:
        """Apply one ``--set``; its mistake is recorded, a valid value replaces the file's mistake."""
        origin = f"--set {text}"
        try:
            key = self.override(text, origin)
        except RecipeError as e:
            if e.key is not None:
                self.clear(e.key)
            self.record(e)
            return
        self.clear(key)
        self.overridden[key] = origin

    def override(self, text: Any, origin: str) -> str:
        expected = "expected SECTION.KEY=VALUE (e.g. model.kg=false)"
        if not isinstance(text, str) or "=" not in text:
            raise self.fail(None, expected, origin=origin)
        key, _, value_text = text.partition("=")
        key = key.strip()
        if key == "sweep" or key.startswith("sweep."):
            raise self.fail(key, "the sweep section cannot be set from the command line; edit the recipe "
                                 "(--set applies to every point of a sweep)", origin=origin)
        if "." not in key:
            if key in SECTIONS:
                raise self.fail(key, f"{expected}; '{key}' is a section, set one of its keys", origin=origin)
            if key not in _SCALAR_KEYS:
                hint = difflib.get_close_matches(key, _SCALAR_KEYS, n=1)
                extra = f"; did you mean '{hint[0]}'?" if hint else f", or one of {', '.join(_SCALAR_KEYS)}=VALUE"
                raise self.fail(key or None, expected + extra, origin=origin)
        else:
            section, name = key.split(".", 1)
            if section not in SECTIONS:
                raise self.fail(key, f"unknown section '{section}'; {_suggest(section, SECTIONS)}",
                                origin=origin)
            if section == "model" and name in _MODEL_KEYS:
                pass                    # checked against the model once model.name is final
            elif self.field_of(key) is None:
                parent = key.rsplit(".", 1)[0]
                klass = section_class(section, self.model_name) if parent == section else \
                    (subsection(self.field_of(parent)) if self.field_of(parent) is not None else None)
                if klass is None:
                    raise self.fail(key, f"unknown key; no section '{parent}'", origin=origin)
                fields = list(_fields(klass))
                raise self.fail(key, f"unknown key; {_suggest(key.rsplit('.', 1)[1], fields)}", origin=origin)
            elif subsection(self.field_of(key)) is not None:
                raise self.fail(key, f"{expected}; '{key}' is a section, set one of its keys", origin=origin)
        try:
            node = yaml.compose(value_text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as e:
            _line_no, problem = _yaml_error_text(e)
            raise self.fail(key, f"invalid YAML value: {problem}", origin=origin) from None
        self.set_node(key, node, origin=origin)
        return key

    def set_seeds_argument(self, seeds: str | list[int]) -> None:
        if isinstance(seeds, (list, tuple)):
            origin = "--seeds " + ",".join(map(str, seeds))
            value: Any = list(seeds)
        else:
            origin = f"--seeds {seeds}"
            value = seeds
        self.clear("seeds")
        try:
            self.values["seeds"] = self.check_seeds(value, None, None, origin)
        except RecipeError as e:
            self.record(e)
            return
        self.where["seeds"] = (None, origin)

    # -- the result -------------------------------------------------------------------------
    def check_model_keys(self) -> None:
        """Every ``model.*`` key against the final model's dataclass (at its line or override)."""
        klass = model_config_class(self.model_name)
        fields = _fields(klass)
        for key, (value, node) in self.model_raw.items():
            if self.has_error(key):
                continue                        # reported where it was read
            line, origin = self.where.get(key, (None, None))
            name = key.split(".", 1)[1]
            try:
                if name not in fields:
                    raise self.fail(key, _other_model_key(name, self.model_name), line, origin)
                f = fields[name]
                value = self.coerce(f, value, node)
                self.check_field(key, f, value, node if origin is None else None, line, origin)
                self.values[key] = self.normalise(f, value)
            except RecipeError as e:
                self.values.pop(key, None)
                self.record(e)

    def section_value(self, prefix: str, klass: type) -> Any:
        kwargs = {}
        for f in dataclasses.fields(klass):
            key = f"{prefix}.{f.name}"
            sub = subsection(f)
            if sub is not None:
                kwargs[f.name] = self.section_value(key, sub)
            elif key in self.values:
                kwargs[f.name] = self.values[key]
        return klass(**kwargs)

    def locate(self, key: str) -> tuple[int | None, str | None]:
        """Where ``key`` (or, failing that, the nearest key or section holding it) was given."""
        parts = key.split(".")
        for n in range(len(parts), 0, -1):
            prefix = ".".join(parts[:n])
            if prefix in self.where:
                return self.where[prefix]
        return None, None

    def default_name(self) -> str:
        if self.path and not self.path.startswith("<"):
            stem = Path(self.path).stem
            if stem:
                return stem
        return "run"

    def build(self, text: str) -> Recipe:
        name = self.values.get("name", self.default_name())
        seeds = self.values.get("seeds", [1])
        device = self.values.get("device", "auto")
        self.check_model_keys()
        sections = {}
        for section in SECTIONS:
            sections[section] = self.section_value(section, section_class(section, self.model_name))
        base = RunConfig(name=name, seed=seeds[0], device=device, **copy.deepcopy(sections))
        for problem in base.problems():         # the checks that span fields, on the valid values
            message = str(problem)
            m = _ERROR_KEY.match(message)
            key = m.group(1) if m else None
            if m:
                message = m.group(2)
            if self.has_error(key):
                continue                        # already reported at the field itself
            line, origin = self.locate(key) if key else (None, None)
            self.record(self.fail(key, message, line, origin))
        for key, origin in self.overridden.items():
            if key in self.swept:
                self.record(self.fail(key, f"the recipe's sweep varies {key} (line {self.swept[key]}); "
                                           f"--set cannot fix it too: drop one of them", origin=origin))
        if self.sweep is not None and all(_covers("sweep.prune", e.key) for e in self.errors):
            self.check_points(base)
        if self.errors:
            order = sorted(range(len(self.errors)), key=lambda i: (
                self.errors[i].origin is not None, self.errors[i].line is None, self.errors[i].line or 0, i))
            raise RecipeError.many([self.errors[i] for i in order])
        return Recipe(name=name, path=None if self.path.startswith("<") else self.path, text=text,
                      description=self.values.get("description"), seeds=list(seeds), device=device,
                      base=base, sweep=self.sweep, executor=self.values.get("executor", "local"))


def _covers(outer: str, inner: str | None) -> bool:
    """Whether dotted key ``inner`` is ``outer`` or lies inside it (``model`` covers ``model.kg``)."""
    return inner is not None and (inner == outer or inner.startswith(outer + "."))
