"""Builds a :class:`~.recipe.Recipe` from YAML text and command-line overrides, collecting
every mistake with where it was made (a line of the file, or an override).

Values are constructed with PyYAML's safe constructor and checked against the schema of
:mod:`kni_core.config` (``check_value`` for each field, ``RunConfig.problems`` for the rules
that span fields, only once the fields they read are valid, so no mistake is reported twice).
The keys of ``model`` are those of the model ``model.name`` names, checked once the name is
final (an override may change it).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import re
from pathlib import Path
from typing import Any

import yaml

from kni_core.config import (
    DEFAULT_MODEL,
    MAX_SEED,
    MODEL_CONFIGS,
    SECTIONS,
    RunConfig,
    check_value,
    expected_type,
    model_config_class,
    section_class,
    subsection,
)
from kni_core.errors import ConfigError
from kni_core.schema import short_repr

from .errors import RecipeError
from .recipe import EXECUTORS, Recipe
from .seeds import MAX_SEEDS, SEEDS_EXPECTED, parse_seeds
from .sweep import SweepSpec, apply_params, params_text, set_entry
from .sweep_reader import SweepReader
from .yaml_nodes import (
    NULL_TAG,
    covers,
    cut,
    line_of,
    node_kind,
    strip_key,
    suggest,
    too_big,
    yaml_error_text,
)

#: Keys allowed at the top level of a recipe, in the order they are usually written.
TOP_KEYS: tuple[str, ...] = ("name", "description", "dataset", "model", "train", "eval", "seeds", "device",
                             "executor", "sweep")
#: Top-level keys that hold a single value (as opposed to a section).
_SCALAR_KEYS = ("name", "description", "seeds", "device", "executor")
# YAML 1.1 (PyYAML) reads ``1e-5`` (no dot) as a string; such plain scalars are accepted as numbers
# for float fields.
_EXP_FLOAT = re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$")
_ERROR_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*): (.*)$", re.S)
#: Every key some model declares (a key of another model than the recipe's is a clear mistake).
_MODEL_KEYS: dict[str, list[str]] = {}
for _name, _klass in MODEL_CONFIGS.items():
    for _f in dataclasses.fields(_klass):
        _MODEL_KEYS.setdefault(_f.name, []).append(_name)


def _fields(klass: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(klass)}


def _is_mapping(f: dataclasses.Field) -> bool:
    return f.default_factory is dict or f.type in (dict, "dict")


def _other_model_key(key: str, model: str) -> str:
    owners = ", ".join(_MODEL_KEYS[key])
    keys = ", ".join(f.name for f in dataclasses.fields(model_config_class(model)))
    return f"not a key of model '{model}' (a key of {owners}); model '{model}' takes {keys}"



class Builder:
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
        self.seed_warning: str | None = None              # seeds given twice (they run once)

    @property
    def model_name(self) -> str:
        name = self.values.get("model.name", DEFAULT_MODEL)
        return name if name in MODEL_CONFIGS else DEFAULT_MODEL

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

    def mapping_key(self, key: str) -> tuple[str, str] | None:
        """``(field, entry)`` of a key inside a mapping-valued field (``dataset.synthetic.users``:
        the generator's parameters), whose entries the config checks rather than the schema."""
        parts = key.split(".")
        for n in range(2, len(parts)):
            f = self.field_of(".".join(parts[:n]))
            if f is None:
                return None
            if _is_mapping(f):
                return ".".join(parts[:n]), ".".join(parts[n:])
        return None

    # -- errors ---------------------------------------------------------------------------
    def fail(self, key: str | None, message: str, line: int | None = None,
             origin: str | None = None) -> RecipeError:
        return RecipeError(message, path=self.path, line=line, key=key, origin=origin)

    def record(self, error: RecipeError) -> None:
        self.errors.append(error)

    def clear(self, key: str) -> None:
        """A later value (an override) replaces ``key``: its earlier mistakes no longer count. An
        unknown key of the file stays a mistake: no value makes its name right (a top-level
        ``train.epochs: 30`` is spelt as ``--set train.epochs=1``'s key, but is not that key)."""
        self.errors = [e for e in self.errors if not covers(key, e.key) or e.message.startswith("unknown key")]

    def has_error(self, key: str | None) -> bool:
        """Whether ``key``, a key inside it or the section holding it already has a mistake."""
        if key is None:
            return bool(self.errors)
        return any(e.key is not None and (covers(key, e.key) or covers(e.key, key)) for e in self.errors)

    # -- the file ---------------------------------------------------------------------------
    def read_text(self, text: str) -> None:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as e:
            line, problem = yaml_error_text(e)
            raise self.fail(None, f"invalid YAML: {problem}", line) from None
        if root is None:
            raise self.fail(None, "the recipe is empty; expected a mapping with keys such as "
                                  "name, dataset, model, train, eval, seeds, device")
        if not isinstance(root, yaml.MappingNode):
            raise self.fail(None, f"expected a mapping of {', '.join(TOP_KEYS)} at the top level, "
                                  f"got {node_kind(root)}", line_of(root))
        for key, key_node, value_node in self.entries(root, None):
            line = line_of(key_node)
            try:
                problem = too_big(value_node)
                if problem:
                    raise self.fail(key, problem, line)
                if key not in TOP_KEYS:
                    raise self.fail(key, f"unknown key; {suggest(key, TOP_KEYS)}", line)
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
                error = self.fail(prefix, f"keys must be plain names, got {node_kind(key_node)} "
                                          f"as a key of {where}", line_of(key_node))
            else:
                key = str(key_node.value)
                dotted = f"{prefix}.{key}" if prefix else key
                if key in seen:
                    first = seen[key]
                    error = self.fail(dotted, "duplicate key" + (f" (first given on line {first})" if first else ""),
                                      line_of(key_node))
            if error is not None:
                if strict:
                    raise error
                self.record(error)
                continue
            seen[key] = line_of(key_node)
            yield key, key_node, value_node

    def read_section(self, section: str, node: yaml.Node, line: int | None, klass: type | None = None) -> None:
        """A section (or, with ``klass``, a nested one such as ``eval.topk``) of the file."""
        self.where[section] = (line, None)
        if isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG:
            return  # ``model:`` with nothing under it: all defaults
        if section == "model" and isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:     # the name first: it decides the other keys
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == "name":
                    try:
                        self.set_node("model.name", value_node, line=line_of(key_node))
                    except RecipeError as e:
                        self.record(e)
        if klass is None:
            klass = section_class(section, self.model_name)
        fields = _fields(klass)
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(section, f"expected a mapping of {section} settings "
                                     f"({', '.join(fields)}), got {node_kind(node)}", line)
        for key, key_node, value_node in self.entries(node, section):
            dotted = f"{section}.{key}"
            if dotted == "model.name":
                continue
            try:
                if key not in fields:
                    if section == "model" and key in _MODEL_KEYS:
                        raise self.fail(dotted, _other_model_key(key, self.model_name), line_of(key_node))
                    raise self.fail(dotted, f"unknown key; {suggest(key, fields)}", line_of(key_node))
                sub = subsection(fields[key])
                if sub is not None:
                    self.read_section(dotted, value_node, line_of(key_node), sub)
                else:
                    self.set_node(dotted, value_node, line=line_of(key_node))
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
            err_line, problem = yaml_error_text(e)
            raise self.fail(key, f"invalid value: {problem}", err_line or line, origin) from None

    def check_duplicates(self, key: str, node: yaml.Node, origin: str | None, visited: set[int]) -> None:
        """Refuse duplicated keys inside a value; note where each nested key is written."""
        if id(node) in visited:
            return
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for sub, key_node, value_node in self.entries_or_fail(node, key, origin):
                self.where[f"{key}.{sub}"] = (line_of(key_node) if origin is None else None, origin)
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

    # -- sweep values (.sweep_reader.SweepReader) --------------------------------------------
    def sweep_field(self, key: str, where: str, line: int | None) -> dataclasses.Field:
        """The schema field of a swept ``SECTION.KEY``; a mistake names ``where``."""
        section = key.split(".", 1)[0]
        if section not in SECTIONS or "." not in key:
            raise self.fail(where, f"unknown section '{section}'; {suggest(section, SECTIONS)}", line)
        if key == "model.name":
            raise self.fail(where, "model.name cannot be swept (each model has its own keys); "
                                   "write one recipe per model", line)
        f = self.field_of(key)
        if f is None and self.mapping_key(key) is not None:
            return dataclasses.field(default=None)      # an entry: the config checks it, as in the file
        if f is None or subsection(f) is not None:
            parent, name = key.rsplit(".", 1)
            holder = section_class(section, self.model_name) if parent == section else \
                (subsection(self.field_of(parent)) if self.field_of(parent) is not None else None)
            fields = list(_fields(holder)) if holder is not None else []
            raise self.fail(where, f"{key} is not a recipe key; {suggest(name, fields)}", line)
        return f

    def sweep_value(self, key: str, node: yaml.Node, line: int | None) -> Any:
        """A value of swept ``key`` checked and normalised as the recipe's own value would be."""
        f = self.sweep_field(key, key, line)
        value = self.construct(f"sweep.{key}", node, line, None)
        if self.mapping_key(key) is not None:
            return value
        value = self.coerce(f, value, node)
        self.check_field(key, f, value, node, line, None)
        return self.normalise(f, value)

    def check_points(self, base: RunConfig) -> None:
        """Every grid / random point whole (the rules between keys), and each choice of a TPE
        space in the base configuration, each mistake at the line of the swept value behind it."""
        assert self.sweep is not None and self.sweep_reader is not None
        reader = self.sweep_reader
        method = "grid" if self.sweep.grid else "tpe" if self.sweep.tpe else "random"
        seen: set[tuple[str | None, str]] = set()
        tpe = self.sweep.tpe
        # TPE asks its points as it goes: each listed choice is checked in the base configuration
        # (a value that breaks a rule alone would otherwise spend a trial of the budget, failed)
        choices = [{k: c} for k, d in tpe.space.items() if d.kind == "choice" for c in d.choices] if tpe else []
        for params in self.sweep.points() or choices:
            for problem in apply_params(base, params).problems():
                message = str(problem)
                m = _ERROR_KEY.match(message)
                key = m.group(1) if m else None
                if m:
                    message = m.group(2)
                swept = next((k for k in params if key is not None and covers(k, key)), None)
                if tpe is not None and swept is None and key is not None and any(covers(k, key) for k in tpe.space):
                    continue                  # the rule binds another key TPE draws too: a draw may satisfy it
                if swept is not None and swept in self.sweep.grid:
                    where = f"sweep.grid.{swept}"
                    line = reader.value_lines.get((swept, json.dumps(params[swept], sort_keys=True)))
                elif swept is not None and tpe is not None:
                    where = f"sweep.tpe.space.{swept}"
                    line = reader.lines.get(where)
                    message = f"choice {json.dumps(params[swept])}: {message}"
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
            raise self.fail(key, strip_key(str(e), key), line, origin) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(key, f"expected a finite number, got {value}", line, origin)
        if isinstance(value, list):
            for i, item in enumerate(value):
                item_line = line
                if origin is None and isinstance(node, yaml.SequenceNode) and i < len(node.value):
                    item_line = line_of(node.value[i])
                if isinstance(item, bool):
                    raise self.fail(key, f"expected numbers in the list, got a boolean ({item}) "
                                         f"at position {i + 1}", item_line, origin)
                if isinstance(item, float) and not math.isfinite(item):
                    raise self.fail(key, f"expected finite numbers in the list, got {item} "
                                         f"at position {i + 1}", item_line, origin)

    def check_top(self, key: str, value: Any, line: int | None, origin: str | None) -> None:
        if key == "description":
            if value is not None and not isinstance(value, str):
                raise self.fail(key, f"expected a string, got {type(value).__name__} ({short_repr(value)})",
                                line, origin)
            return
        if key == "executor":
            if value not in EXECUTORS:
                raise self.fail(key, f"expected one of {', '.join(EXECUTORS)}, got {short_repr(value)}", line, origin)
            return
        f = next(f for f in dataclasses.fields(RunConfig) if f.name == key)
        try:
            check_value(key, f, value)
        except ConfigError as e:
            raise self.fail(key, strip_key(str(e), key), line, origin) from None
        if key == "name" and not value.strip():
            raise self.fail(key, "expected a non-empty name", line, origin)
        if key == "name" and not value.isprintable():
            raise self.fail(key, f"expected one line of printable characters (a name shown in every listing); "
                                 f"got {short_repr(value)}", line, origin)

    def check_seeds(self, value: Any, node: yaml.Node | None, line: int | None,
                    origin: str | None) -> list[int]:
        repeated: list[int] = []
        if isinstance(value, str):
            try:
                seeds = parse_seeds(value, repeated)
            except ConfigError as e:
                raise self.fail("seeds", strip_key(str(e), "seeds"), line, origin) from None
            self.note_repeats(repeated, line, origin)
            return seeds
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
            node = None
        if not isinstance(value, list):
            got = "a boolean" if isinstance(value, bool) else type(value).__name__
            raise self.fail("seeds", f"{SEEDS_EXPECTED}, got {got} ({short_repr(value)})", line, origin)
        if not value:
            raise self.fail("seeds", "expected at least one seed", line, origin)
        out: list[int] = []
        for i, item in enumerate(value):
            item_line = line
            if origin is None and isinstance(node, yaml.SequenceNode) and i < len(node.value):
                item_line = line_of(node.value[i])
            if isinstance(item, bool) or not isinstance(item, int):
                raise self.fail("seeds", f"expected non-negative integers, got {short_repr(item)} at position {i + 1}",
                                item_line, origin)
            if item < 0:
                raise self.fail("seeds", f"expected non-negative integers, got {item} at position {i + 1}",
                                item_line, origin)
            if item > MAX_SEED:
                raise self.fail("seeds", f"expected seeds up to {MAX_SEED}, got {item} at position {i + 1}",
                                item_line, origin)
            if item not in out:
                out.append(item)
            else:
                repeated.append(item)
        if len(out) > MAX_SEEDS:
            raise self.fail("seeds", f"more than {MAX_SEEDS} seeds", line, origin)
        self.note_repeats(repeated, line, origin)
        return out

    def note_repeats(self, repeated: list[int], line: int | None, origin: str | None) -> None:
        """A seed given twice runs once: say so (a warning, not a mistake). The seeds given last
        (--seeds after the file) are the ones that count, so only their warning is kept."""
        self.seed_warning = None
        if repeated:
            where = origin or (f"{self.path}:{line}" if line else self.path)
            seeds = ", ".join(map(str, dict.fromkeys(repeated)))
            self.seed_warning = f"{where}: seeds: {seeds} given more than once; each seed runs once"

    # -- the command line ------------------------------------------------------------------
    def apply_override(self, text: Any) -> None:
        """Apply one ``--set``; its mistake is recorded, a valid value replaces the file's mistake."""
        origin = f"--set {cut(text, 200) if isinstance(text, str) else text}"
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
                raise self.fail(key, f"unknown section '{section}'; {suggest(section, SECTIONS)}",
                                origin=origin)
            if section == "model" and name in _MODEL_KEYS:
                pass                    # checked against the model once model.name is final
            elif self.mapping_key(key) is not None:
                pass                    # an entry of a mapping field: merged below
            elif self.field_of(key) is None:
                parent = key.rsplit(".", 1)[0]
                klass = section_class(section, self.model_name) if parent == section else \
                    (subsection(self.field_of(parent)) if self.field_of(parent) is not None else None)
                if klass is None:
                    raise self.fail(key, f"unknown key; no section '{parent}'", origin=origin)
                fields = list(_fields(klass))
                raise self.fail(key, f"unknown key; {suggest(key.rsplit('.', 1)[1], fields)}", origin=origin)
            elif subsection(self.field_of(key)) is not None:
                raise self.fail(key, f"{expected}; '{key}' is a section, set one of its keys", origin=origin)
        try:
            node = yaml.compose(value_text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as e:
            _line_no, problem = yaml_error_text(e)
            raise self.fail(key, f"invalid YAML value: {problem}", origin=origin) from None
        problem = too_big(node) if node is not None else None
        if problem:
            raise self.fail(key, f"the value {problem}", origin=origin)
        if "." in key and self.mapping_key(key) is not None:
            return self.set_entry(key, node, origin)
        self.set_node(key, node, origin=origin)
        return key

    def set_entry(self, key: str, node: yaml.Node | None, origin: str) -> str:
        """``--set dataset.synthetic.users=500``: one entry of a mapping field, merged into it."""
        field_key, entry = self.mapping_key(key)
        mapping = self.values.get(field_key)
        if not isinstance(mapping, dict):
            mapping = copy.deepcopy(self.field_of(field_key).default_factory())
        self.values[field_key] = set_entry(mapping, entry, self.construct(key, node, None, origin))
        self.where[key] = (None, origin)
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
        if self.sweep is not None and all(covers("sweep.prune", e.key) for e in self.errors):
            self.check_points(base)
        if self.errors:
            order = sorted(range(len(self.errors)), key=lambda i: (
                self.errors[i].origin is not None, self.errors[i].line is None, self.errors[i].line or 0, i))
            raise RecipeError.many([self.errors[i] for i in order])
        return Recipe(name=name, path=None if self.path.startswith("<") else self.path, text=text,
                      description=self.values.get("description"), seeds=list(seeds), device=device,
                      base=base, sweep=self.sweep, executor=self.values.get("executor", "local"),
                      warnings=(self.seed_warning,) if self.seed_warning else ())
