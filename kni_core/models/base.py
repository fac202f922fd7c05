"""What every model is, and what the models share.

A model is one file of this package (found by :mod:`kni_core.models`) holding its settings, a
:class:`ModelSettings` dataclass, and its :class:`Recommender` subclass: the network and the
interface the trainer, the scorers and the registry read (class attributes and hooks), so no
code asks for a model's name. Reading a config imports every model file, so none may import
torch at import time: ``torch``, ``nn``, ``F`` (and ``np``) here are :class:`LazyModule` objects,
imported on first use, and networks derive from :class:`Module`, which makes the real
``nn.Module`` subclass when the first instance is created.

Index spaces. The prepared data numbers 0 = padding, ``1..n_users`` users, then items and KG
entities. Baselines that embed users apart from entities (as their authors' code does) use
``user - 1`` as the user row and :func:`kg_index` (``entity - n_users``, 0 for padding) as the
entity row, so their tables hold exactly the entities the original's would, plus a zero
padding row that never receives a gradient (``padding_idx``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import types
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

    from ..config import RunConfig, TrainConfig
    from ..data.prepare import PreparedData


class LazyModule(types.ModuleType):
    """A module imported on first attribute access (each attribute is then kept here).
    It is not put in ``sys.modules``: ``"torch" in sys.modules`` still says whether torch ran."""

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self.__name__), attr)
        setattr(self, attr, value)
        return value


torch = LazyModule("torch")
nn = LazyModule("torch.nn")
F = LazyModule("torch.nn.functional")
np = LazyModule("numpy")                 # ~60 ms that reading a config does not need either


def no_grad(fn):
    """``@torch.no_grad()`` without importing torch when the function is defined."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.no_grad():
            return fn(*args, **kwargs)
    return wrapper


_TORCH_CLASSES: dict[type, type] = {}


class Module:
    """Base of the networks: a class declared without torch whose instances are ``nn.Module``s.

    ``MF(...)`` creates an instance of ``MF``'s torch class, ``type("MF", (MF, nn.Module))``
    (made once, on the first instance): ``isinstance(m, MF)`` and ``isinstance(m, nn.Module)``
    hold, ``MF``'s methods come before ``nn.Module``'s, and the state_dict is the one a plain
    ``class MF(nn.Module)`` would have."""

    def __new__(cls, *args: Any, **kwargs: Any):
        module = nn.Module
        if issubclass(cls, module):                  # a copy (deepcopy) comes with the torch class
            return object.__new__(cls)
        made = _TORCH_CLASSES.get(cls)
        if made is None:
            made = _TORCH_CLASSES.setdefault(cls, type(cls.__name__, (cls, module), {
                "__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}))
        return object.__new__(made)


# --------------------------------------------------------------------------------------------
# settings


class _NameMetadata(Mapping):
    """The metadata of every model's ``name`` field: its help and choices list the models the
    registry holds (read when asked: the registry is complete only after every file loaded)."""

    def _values(self) -> dict:
        from . import REGISTRY
        names = list(REGISTRY.names)
        first = [REGISTRY.default] + [n for n in names if n != REGISTRY.default]
        listed = [f"{first[0]} (default)", *first[1:]]
        text = ", ".join(listed[:-1]) + " or " + listed[-1] if len(listed) > 1 else listed[0]
        return {"help": f"the model: {text}; its own keys follow", "lo": None, "hi": None,
                "choices": tuple(names), "lo_open": False}

    def __getitem__(self, key: str) -> Any:
        return self._values()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())

    def __len__(self) -> int:
        return len(self._values())


_NAME_METADATA = _NameMetadata()


def model_name(name: str) -> Any:
    """The ``name`` field of a model's settings, defaulting to ``name``."""
    return dataclasses.field(default=name, metadata=_NAME_METADATA)


@dataclasses.dataclass
class ModelSettings:
    """Base of a model's settings (the ``model`` section); a subclass starts with
    ``name: str = model_name("its name")``."""

    name: str

    def graph_needs(self) -> dict:
        """What preprocessing must build for this model: ``kg``, ``reach_hops``, ``max_degree``
        (part of the prepared data's cache key)."""
        raise NotImplementedError

    def problems(self, checked: set[str]) -> list:
        """ConfigErrors of the rules between this section's fields; ``checked``: the fields that
        passed their own checks."""
        return []


# --------------------------------------------------------------------------------------------
# the model interface


class Recommender(Module):
    """A model: its network (logits for ``(users, items)``, entity ids as in the splits) and
    what the registry, :class:`kni_core.train.Trainer` and the scorers need to know of it."""

    # What the registry reads (class attributes: no torch, no instance).
    #: ``model.name``.
    name: str
    #: Its settings (a :class:`ModelSettings` dataclass).
    config_class: type
    #: How runs of it are labelled in stored runs, comparisons and the TUI (see :meth:`label_of`).
    label = ""
    #: Position in lists of models (help texts, messages).
    order = 100
    #: The model of a config without ``model.name`` (configs stored before there were others).
    default = False
    #: The settings to lower when building it runs out of device memory.
    setup_memory: tuple[str, ...] = ()

    # What training and scoring read.
    #: Predictions sample: scores average ``eval.n_eval`` seeded passes (:meth:`passes`).
    stochastic = False
    #: Has neighbour-pair attention for :mod:`kni_core.explain` (``neighbour_pairs``).
    explainable = False
    #: Skip the last, incomplete training batch (KGCN's loop does).
    drop_last = False
    #: On a GPU, shuffle with a seeded torch generator there instead of numpy's permutation.
    shuffle_on_device = False

    @classmethod
    def label_of(cls, model_cfg: Any) -> str:
        """The label of a run with settings ``model_cfg``."""
        return cls.label

    @classmethod
    def build(cls, cfg: RunConfig, data: PreparedData) -> Recommender:
        """The model of ``cfg`` on ``data``, on the CPU, seeded by the caller (its sampled
        structures drawn from ``dataset.split_seed``, shared by all run seeds)."""
        raise NotImplementedError

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """Logits ``(B,)`` for entity ids ``users`` and ``items``."""
        raise NotImplementedError

    def loss(self, users: Tensor, items: Tensor, labels: Tensor) -> Tensor:
        """The training objective a step minimises (the part the optimizer does not apply itself)."""
        raise NotImplementedError

    # -- training hooks -------------------------------------------------------------------
    def optimizer(self, train: TrainConfig) -> DenseAdam:
        """What takes a step on a batch's loss (``step(loss)``). Default: Adam over every
        parameter, TF's step (the authors' TF1 Adam updates every row)."""
        return DenseAdam(self.parameters(), train.lr, train.adam_eps)

    def epoch_penalty(self, l2: float) -> float:
        """The objective's term the optimizer applies itself (weight decay), added to the mean
        batch loss an epoch reports; 0 when :meth:`loss` holds the whole objective."""
        return 0.0

    # -- scoring --------------------------------------------------------------------------
    def passes(self, n_eval: int) -> int:
        """Forward passes averaged per score: ``n_eval`` for a sampling model, else 1."""
        return n_eval if self.stochastic else 1

    def eval_chunk(self, batch_size: int, repeats: int, rows_budget: int) -> int:
        """Examples per scoring step of ``repeats`` passes (``rows_budget``: the embedding rows
        a step may gather)."""
        return batch_size

    @no_grad
    def predict(self, users: Tensor, items: Tensor, repeats: int = 1, generator=None) -> Tensor:
        """Probabilities ``(B,)`` in evaluation mode, the mean of ``repeats`` passes drawn from
        ``generator`` (one pass of :meth:`scores` for a model that does not sample)."""
        return self.scores(users, items)

    @no_grad
    def score_matrix(self, user: int, items: Tensor) -> Tensor:
        """Probabilities ``(I,)`` of one user with every item of ``items`` (the top-N ranking of
        a model that does not sample). Models override it with a form that shares the user's
        part across the items; it must equal :meth:`scores` on the pairs."""
        return self.scores(torch.full_like(items, user), items)

    @no_grad
    def scores(self, users: Tensor, items: Tensor) -> Tensor:
        """Probabilities ``(B,)`` in evaluation mode."""
        was_training = self.training
        self.eval()
        try:
            return torch.sigmoid(self(users, items))
        finally:
            self.train(was_training)


# --------------------------------------------------------------------------------------------
# optimisation


def tf_adam_eps(optimizer, eps: float, step: int) -> None:
    """Make PyTorch's Adam take TensorFlow's step number ``step`` (1 for the first).

    TF divides by ``sqrt(v_t) + eps`` after folding the bias corrections into the learning
    rate; PyTorch divides by ``sqrt(v_t / (1 - b2^t)) + eps``. They agree when PyTorch's eps is
    ``eps / sqrt(1 - b2^t)``. It matters here: rows a batch does not touch see only the L2
    gradient (~1e-7), the same order as eps. The caller counts the steps on the host: reading
    the optimizer's own ``state["step"]`` would wait for the GPU at every step (fused Adam
    keeps it there).
    """
    for group in optimizer.param_groups:
        group["eps"] = eps / math.sqrt(1.0 - group["betas"][1] ** step)


class DenseAdam:
    """Adam over all parameters with TF's eps correction (:func:`tf_adam_eps`)."""

    def __init__(self, params, lr: float, eps: float):
        self.adam = torch.optim.Adam(params, lr=lr, eps=eps)
        self.eps = eps
        self.steps = 0                    # counted on the host (see tf_adam_eps)

    def step(self, loss: Tensor) -> None:
        self.adam.zero_grad(set_to_none=True)
        loss.backward()
        self.steps += 1
        tf_adam_eps(self.adam, self.eps, self.steps)
        self.adam.step()

    def state_dict(self) -> dict:
        """Everything the next step depends on: Adam's moments and the host's step count."""
        return {"adam": self.adam.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.adam.load_state_dict(state["adam"])
        self.steps = int(state["steps"])


# --------------------------------------------------------------------------------------------
# tables


def glorot_bound(fan_in: int, fan_out: int) -> float:
    """TF's ``xavier_initializer`` (uniform): ``sqrt(6 / (fan_in + fan_out))``."""
    return math.sqrt(6.0 / (fan_in + fan_out))


def uniform_table(shape: tuple[int, ...], bound: float, padding: bool = False):
    """A parameter drawn from U(-bound, bound); row 0 zero when ``padding``."""
    t = torch.empty(shape).uniform_(-bound, bound)
    if padding:
        t[0] = 0.0
    return nn.Parameter(t)


def glorot_table(rows: int, cols: int, padding: bool = False):
    """A ``[rows (+1 padding), cols]`` table with TF's Glorot bound over the real rows."""
    return uniform_table((rows + int(padding), cols), glorot_bound(rows, cols), padding)


def kg_index(ids: Tensor, n_users: int) -> Tensor:
    """Entity ids -> rows of a KG-side table: ``id - n_users`` for items and KG entities, 0 for
    padding (and, defensively, for users, which never enter a KG table)."""
    return torch.where(ids > n_users, ids - n_users, torch.zeros_like(ids))


def lookup(table: Tensor, rows: Tensor) -> Tensor:
    """Rows of an embedding table whose row 0 is padding (gets no gradient)."""
    return F.embedding(rows, table, padding_idx=0)


def bce(logits: Tensor, labels: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
