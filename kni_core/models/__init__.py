"""The models behind ``model.name``, RecBole-style: one file per model, one interface.

Every module of this package but ``base`` and private (``_``) ones is a model: its
:class:`~.base.Recommender` subclass names it (``name``) and carries its settings dataclass,
label and hooks (:mod:`.base`). :data:`REGISTRY` finds them when this package is imported, so
adding a model is adding its file; the names, choices and help texts everywhere come from here.

Torch-free: model files import torch only when a model is built (:mod:`.base`).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import TYPE_CHECKING, Any, Iterable

from ..errors import ConfigError
from .base import Recommender

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..data.prepare import PreparedData


class Registry:
    """``model.name`` -> the model's class, in listing order (``order``, then name)."""

    def __init__(self, models: Iterable[type[Recommender]]):
        models = sorted(models, key=lambda m: (m.order, m.name))
        self.models: dict[str, type[Recommender]] = {}
        for model in models:
            if model.name in self.models:
                raise TypeError(f"two models are named {model.name!r}: {self.models[model.name].__module__} "
                                f"and {model.__module__}")
            self.models[model.name] = model
        defaults = [m.name for m in models if m.default]
        if len(defaults) != 1:
            raise TypeError(f"exactly one model must be the default (default = True); found {defaults or 'none'}")
        self.default: str = defaults[0]
        self.names: tuple[str, ...] = tuple(self.models)

    @classmethod
    def discover(cls, path: Iterable[str], package: str) -> "Registry":
        """The models of the modules found on ``path`` (a package's ``__path__``)."""
        found = []
        for info in pkgutil.iter_modules(list(path)):
            if info.name == "base" or info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{package}.{info.name}")
            models = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, Recommender)
                      and v.__module__ == module.__name__ and "name" in vars(v)]
            if len(models) != 1:
                raise TypeError(f"{module.__name__}: a model module defines one Recommender subclass with a `name` "
                                f"(found {len(models)}); helpers go in a private module (_{info.name}.py)")
            model = models[0]
            klass = getattr(model, "config_class", None)
            if not (dataclasses.is_dataclass(klass) and dataclasses.fields(klass)[0].name == "name"
                    and dataclasses.fields(klass)[0].default == model.name):
                raise TypeError(f"{module.__name__}: {model.__name__}.config_class must be a dataclass whose first "
                                f"field is `name: str = model_name({model.name!r})`")
            found.append(model)
        return cls(found)

    def get(self, name: Any) -> type[Recommender]:
        """The model named ``name`` (ConfigError for an unknown name)."""
        if name not in self.models:
            raise ConfigError(f"model.name: expected one of {', '.join(self.names)}; got {name!r}")
        return self.models[name]


REGISTRY = Registry.discover(__path__, __name__)


def get(name: Any) -> type[Recommender]:
    """The class of model ``name``: its settings (``config_class``), label, hooks and network."""
    return REGISTRY.get(name)


def label(model_cfg: Any) -> str:
    """How a run with settings ``model_cfg`` is labelled: ``KNI``, ``NI`` (KNI without the
    knowledge graph), ``MF``, ``RippleNet``, ``KGCN``, ..."""
    return REGISTRY.get(model_cfg.name).label_of(model_cfg)


def build_model(cfg: "RunConfig", data: "PreparedData") -> Recommender:
    """The model ``cfg.model.name`` built from the prepared data, on the CPU (its sampled
    structures drawn from ``dataset.split_seed``, shared by all run seeds as the original
    code's ``np.random.seed(555)`` is)."""
    return REGISTRY.get(cfg.model.name).build(cfg, data)


#: ``model.name`` -> its label (for KNI, that of a run with the knowledge graph: see :func:`label`).
LABELS: dict[str, str] = {name: model.label for name, model in REGISTRY.models.items()}
