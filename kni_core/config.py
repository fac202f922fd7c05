"""Typed configuration of one run.

Every field carries its constraint in ``metadata`` (:mod:`kni_core.schema`) so that one schema
serves the library (``validate()``), the YAML recipes (line-accurate errors in
``workbench.recipe``) and the help texts. Defaults are the paper's Book-Crossing settings.

The ``model`` section depends on ``model.name``: each model declares its hyperparameters in
its own file (``kni_core.models``; KNI's :class:`ModelConfig` is the default, so recipes
written before the baselines existed stay valid). Model files import torch only to build a
model, so reading and validating a config never imports torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from . import models
from .errors import ConfigError
from .schema import MAX_N_EVAL, MAX_SEED, check_value, expected_type, field_named as _field, setting as _f  # noqa: F401  (re-exported)
from .synthetic_spec import spec_from_params


@dataclass
class DatasetConfig:
    name: str | None = _f(None, "registry name (bc, lastfm, ml-1m, ab, ml-20m, synthetic)")
    path: str | None = _f(None, "folder with the data, in any supported format (overrides the registry's location)")
    format: str = _f("auto", "file format of `path`",
                     choices=("auto", "ripplenet", "kni-pkl", "recbole", "ripplenet-raw"))
    split: list = _f([0.6, 0.2, 0.2], "train / valid / test fractions")
    split_seed: int = _f(555, "seed of the split and of the adjacency table (shared by all run seeds)", lo=0,
                         hi=MAX_SEED)
    split_method: str = _f("ripplenet", "how rows are drawn: 'ripplenet' reproduces the original code's split "
                           "exactly (numpy's legacy RandomState: validation drawn first, then test from the "
                           "rest); 'permutation' is one shuffle with numpy's Generator",
                           choices=("ripplenet", "permutation"))
    min_relation_triples: int = _f(100, "relations with fewer triples are dropped", lo=0)
    rating_threshold: float = _f(4.0, "explicit ratings >= this are positive (RecBole / raw inputs)")
    synthetic: dict = _f({}, "generator parameters when name is 'synthetic' (see kni data info synthetic)")


#: The models, in listing order (``kni_core.models`` finds them).
MODEL_NAMES: tuple[str, ...] = models.REGISTRY.names
#: The model of a config without ``model.name`` (KNI: configs stored before there were others).
DEFAULT_MODEL: str = models.REGISTRY.default
#: ``model.name`` -> the dataclass of its hyperparameters.
MODEL_CONFIGS: dict[str, type] = {name: m.config_class for name, m in models.REGISTRY.models.items()}
#: KNI's hyperparameters (the class name predates the other models).
ModelConfig = MODEL_CONFIGS[DEFAULT_MODEL]


def model_config_class(name: Any) -> type:
    """The hyperparameter dataclass of ``model.name`` (ConfigError for an unknown name)."""
    return models.get(name).config_class


def __getattr__(name: str) -> type:
    # Every model's settings class by its own name (``from kni_core.config import MFConfig``).
    for model in models.REGISTRY.models.values():
        if model.config_class.__name__ == name:
            return model.config_class
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class TrainConfig:
    epochs: int = _f(100, "maximum number of epochs", lo=1)
    batch_size: int = _f(1024, "examples per step", lo=1)
    lr: float = _f(1e-3, "Adam learning rate", lo=0.0, lo_open=True)
    adam_eps: float = _f(1e-8, "Adam epsilon", lo=0.0, lo_open=True)
    l2: float = _f(1e-5, "L2 weight on the embedding table, aggregator and attention weights", lo=0.0)
    patience: int = _f(10, "early stopping window (0 disables early stopping)", lo=0)
    select_on: str = _f("valid", "split that picks the best epoch and drives early stopping "
                        "('test' is the original code's protocol)", choices=("valid", "test"))
    checkpoint: bool = _f(True, "save the selected epoch's weights with the run (kni explain / recommend read them); "
                                "not part of the configuration's hash")
    keep_last: bool = _f(False, "keep the last-epoch state (what kni resume continues from) when the run completes; "
                                "not part of the configuration's hash")


TOPK_K = [1, 2, 5, 10, 20, 50, 100]
TOPK_FULL_K = [10, 20, 50]


@dataclass
class TopKConfig:
    """Top-N evaluation (``kni_core.topk``): off unless ``enabled``."""

    enabled: bool = _f(False, "compute top-N metrics")
    every: int = _f(0, "0: once, at the selected epoch with its weights (kept in memory during training); "
                       "N: also after every N-th epoch", lo=0)
    users: int = _f(100, "test users sampled for the KGCN/MKR protocol (their user_num)", lo=1)
    seed: int = _f(0, "seed of the user samples (recorded with the results)", lo=0)
    k: list = _f(TOPK_K, "cut-offs of precision@K, recall@K and f1@K (sampled protocol)")
    full: bool = _f(True, "also rank all candidates for every test user: full_recall@K, full_ndcg@K")
    full_k: list = _f(TOPK_FULL_K, "cut-offs of the full-ranking metrics")
    full_users: int = _f(0, "0: every test user with a positive; N: a seeded sample of N of them "
                            "(bounds the cost of the full ranking)", lo=0)
    full_exclude_valid: bool = _f(False, "candidates of the full ranking: false (the default): every item but "
                                         "the user's training items, so its validation items stay candidates "
                                         "(a validation positive ranked high takes a top-K place from the test "
                                         "positives); true: its validation items (positives and negatives) are "
                                         "removed too, as full-sort protocols that mask the training and "
                                         "validation interactions (RecBole's) do")
    n_eval: int = _f(0, "sampled passes averaged per candidate score (0: eval.n_eval; models that do "
                        "not sample score once)", lo=0)


@dataclass
class EvalConfig:
    n_eval: int = _f(40, "sampled forward passes averaged per example", lo=1, hi=MAX_N_EVAL)
    batch_size: int = _f(1024, "examples per evaluation step (repeats are batched inside)", lo=1)
    topk: TopKConfig = field(default_factory=TopKConfig,
                             metadata={"help": "top-N evaluation settings", "section": TopKConfig})
    strata: list = _f([2, 5, 20], "upper edges of the user buckets of the AUC by stratum (training rows per "
                                  "user: 1-2, 3-5, 6-20, >20); not part of the configuration's hash")


@dataclass
class RunConfig:
    name: str = _f("run", "recipe name")
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: Any = field(default_factory=ModelConfig)      # the config_class of model model.name
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = _f(1, "seed of initialisation, shuffling, sampling and dropout", lo=0, hi=MAX_SEED)
    device: str = _f("auto", "auto, cpu, cuda or cuda:N")

    def validate(self) -> "RunConfig":
        """Check every field and the rules between fields; raise one ConfigError listing all problems."""
        problems = self.problems()
        if problems:
            raise ConfigError.many(problems)
        return self

    def problems(self) -> list[ConfigError]:
        """Every problem of this configuration, each a ``ConfigError("KEY: message")``."""
        wrong = [ConfigError(f"{name}: expected a {klass.__name__} (RunConfig.from_dict builds one from a "
                             f"mapping), got {getattr(self, name)!r}")
                 for name, klass in SECTIONS.items()
                 if not dataclasses.is_dataclass(getattr(self, name)) or isinstance(getattr(self, name), type)]
        if wrong:
            return wrong
        try:
            klass = model_config_class(getattr(self.model, "name", None))
        except ConfigError as e:
            return [e]
        if type(self.model) is not klass:
            return [ConfigError(f"model.name: {self.model.name!r} needs {klass.__name__}, "
                                f"got {type(self.model).__name__}")]
        out: list[ConfigError] = []
        ok: dict[str, bool] = {}

        def check(key: str, f: dataclasses.Field, value: Any) -> bool:
            try:
                check_value(key, f, value)
            except ConfigError as e:
                out.append(e)
                return False
            return True

        def walk(prefix: str, obj: Any) -> None:
            for f in dataclasses.fields(obj):
                key, value, sub = f"{prefix}.{f.name}", getattr(obj, f.name), subsection(f)
                if sub is None:
                    ok[key] = check(key, f, value)
                elif isinstance(value, sub):
                    walk(key, value)
                else:
                    out.append(ConfigError(f"{key}: expected a mapping of {f.name} settings, got {value!r}"))

        for section in SECTIONS:
            walk(section, getattr(self, section))
        for name in ("seed", "device"):
            ok[name] = check(name, _field(RunConfig, name), getattr(self, name))
        out += self.model.problems({k.split(".", 1)[1] for k, good in ok.items() if good and k.startswith("model.")})
        edges = self.eval.strata
        if ok.get("eval.strata") and (not edges or any(isinstance(e, bool) or not isinstance(e, int) or e < 1
                                                       for e in edges) or list(edges) != sorted(set(edges))):
            out.append(ConfigError(f"eval.strata: expected increasing positive integers (the buckets' upper "
                                   f"edges), e.g. [2, 5, 20]; got {edges}"))
        for key in ("k", "full_k"):
            if ok.get(f"eval.topk.{key}"):
                ks = getattr(self.eval.topk, key)
                if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
                    out.append(ConfigError(f"eval.topk.{key}: expected a non-empty list of positive integers, "
                                           f"e.g. {getattr(TopKConfig(), key)}; got {ks}"))
        split = self.dataset.split
        if ok["dataset.split"] and (
                len(split) != 3 or any(isinstance(x, bool) or not isinstance(x, (int, float)) or x <= 0 for x in split)
                or abs(sum(split) - 1.0) > 1e-6):
            # every split is needed: train learns, validation selects the epoch, test reports it
            out.append(ConfigError(f"dataset.split: expected three positive fractions (train, validation, test) "
                                   f"summing to 1, e.g. [0.6, 0.2, 0.2]; got {split}"))
        if self.dataset.name is None and self.dataset.path is None and ok["dataset.name"] and ok["dataset.path"]:
            out.append(ConfigError("dataset: give `name` (a registry dataset) or `path` (a folder)"))
        if ok["dataset.synthetic"] and self.dataset.name == "synthetic" and not self.dataset.path:
            try:
                spec_from_params(self.dataset.synthetic)
            except ConfigError as e:
                out += e.errors
        if ok["device"] and not (self.device in ("auto", "cpu", "cuda") or
                                 (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            out.append(ConfigError(f"device: expected auto, cpu, cuda or cuda:N; got {self.device!r}"))
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        """The inverse of :meth:`to_dict`; also reads configs stored before ``model.name`` and
        ``eval.topk`` existed (they take their defaults)."""
        if not isinstance(data, dict):
            raise ConfigError(f"a run configuration: expected a mapping, got {data!r}")
        kwargs = dict(data)
        _known("", kwargs, cls)
        for section, klass in SECTIONS.items():
            if section in kwargs:
                kwargs[section] = build_section(section, kwargs[section])
        return cls(**kwargs)

    def config_hash(self) -> str:
        """Hash of everything but the seed and the device: the key of a group of seeds.

        Keys added after runs were stored (``model.name``, ``eval.topk``) are left out while
        they hold their defaults, so a KNI configuration keeps the hash its older runs have."""
        d = canonical(self.to_dict())
        d.pop("seed")
        d.pop("device")
        return stable_hash(d)


SECTIONS: dict[str, type] = {"dataset": DatasetConfig, "model": ModelConfig,
                             "train": TrainConfig, "eval": EvalConfig}


def section_class(section: str, name: Any = DEFAULT_MODEL) -> type:
    """The dataclass of ``section``; for ``model`` the one of model ``name``."""
    return model_config_class(name) if section == "model" else SECTIONS[section]


def subsection(f: dataclasses.Field) -> type | None:
    """The dataclass of a nested section field (``eval.topk``), else None."""
    return f.metadata.get("section")


def build_section(section: str, values: dict) -> Any:
    """A section's dataclass from a plain dict (nested sections too); ConfigError naming a key
    the section does not have, or a section that is not a mapping."""
    if not isinstance(values, dict):
        raise ConfigError(f"{section}: expected a mapping of {section} settings, got {values!r}")
    values = dict(values)
    klass = section_class(section, values.get("name", DEFAULT_MODEL)) if section == "model" else SECTIONS[section]
    _known(section, values, klass)
    for f in dataclasses.fields(klass):
        sub = subsection(f)
        if sub is not None and isinstance(values.get(f.name), dict):
            _known(f"{section}.{f.name}", values[f.name], sub)
            values[f.name] = sub(**values[f.name])
    try:
        return klass(**values)
    except TypeError as e:
        raise ConfigError(f"{section}: {e}") from None


def _known(where: str, values: dict, klass: type) -> None:
    names = [f.name for f in dataclasses.fields(klass)]
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            raise ConfigError(f"{where + '.' if where else ''}{key}: unknown key" + (
                f"; did you mean {close[0]!r}?" if close else f"; expected one of {', '.join(names)}"))


def check_section(prefix: str, obj: Any) -> None:
    """``check_value`` on every field of a section, descending into nested sections."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        sub = subsection(f)
        if sub is not None:
            if not isinstance(value, sub):
                raise ConfigError(f"{prefix}.{f.name}: expected a mapping of {f.name} settings, got {value!r}")
            check_section(f"{prefix}.{f.name}", value)
        else:
            check_value(f"{prefix}.{f.name}", f, value)


#: Keys that change no number of the training (where the weights go, not what they are; how the
#: selected epoch is reported): never in the config hash, so never swept.
UNHASHED = ("train.checkpoint", "train.keep_last", "eval.strata")


def canonical(d: dict) -> dict:
    """A config dict without the keys added later while they hold their defaults (what the
    config hash and comparisons of stored configs see): ``model.name`` of the default model
    (``kni``) and a default ``eval.topk``; ``train.checkpoint``, ``train.keep_last`` and
    ``eval.strata`` always (they change no number of the training)."""
    d = json.loads(json.dumps(d, default=str))
    model, ev = d.get("model"), d.get("eval")
    for key in UNHASHED:
        section, name = key.split(".")
        if isinstance(d.get(section), dict):
            d[section].pop(name, None)
    if isinstance(model, dict) and model.get("name") == DEFAULT_MODEL:
        model.pop("name")
    if isinstance(ev, dict) and isinstance(ev.get("topk"), dict):
        for key, default in TOPK_LATER.items():           # added to eval.topk after runs were stored
            if ev["topk"].get(key, default) == default:
                ev["topk"].pop(key, None)
        if ev["topk"] == _later_dropped(dataclasses.asdict(TopKConfig())):
            ev.pop("topk")
    return d


#: eval.topk keys added after runs with top-N were stored, with their defaults: left out of the
#: canonical dict (and the hash) while they hold them.
TOPK_LATER = {"full_exclude_valid": False}


def _later_dropped(topk: dict) -> dict:
    return {k: v for k, v in topk.items() if k not in TOPK_LATER}


def stable_hash(obj: Any, length: int = 12) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


