"""A stored run opened for questions: its saved model with its prepared data and the names of
its users and items (``kni explain`` / ``kni recommend`` / ``kni compare --explain`` and the
workbench's Explain screen; :mod:`workbench.views.explain` draws the answers). Nothing here
writes the run database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kni_core.config import RunConfig
from kni_core.errors import KniError

from ..runs.checkpoints import state as checkpoint_state

if TYPE_CHECKING:
    from kni_core.data.prepare import PreparedData
    from kni_core.explain import Namer

    from ..store.records import Run
    from ..store.repository import Store


class RunNotOpen(KniError):
    """The run has no usable saved model (none saved, missing, unreadable, or still training)."""


@dataclass
class OpenRun:
    run: Run
    cfg: RunConfig
    model: Any
    data: PreparedData
    namer: Namer

    @property
    def explainable(self) -> bool:
        """Whether the model has neighbour-pair attention to look into (KNI and NI)."""
        from kni_core.models import get
        return get(self.cfg.model.name).explainable

    @property
    def label(self) -> str:
        from ..runs.rows import model_label
        return f"run {self.run.id} ({self.run.recipe}, {self.run.dataset}, {model_label(self.cfg)} seed " \
               f"{self.run.seed}, epoch {self.run.best_epoch})"

    def user_entity(self, raw: int) -> int:
        return self.namer.lookup("user", raw)

    def item_entity(self, raw: int) -> int:
        return self.namer.lookup("item", raw)

    def file_id(self, entity: int) -> int:
        """The id a user types for an entity (the dataset's, or the internal one without id maps)."""
        raw = self.namer.raw(entity)
        return raw if raw is not None else entity

    def default_pair(self, user_raw: int | None = None) -> tuple[int, int]:
        """``(user, item)`` entities: a test positive (of ``user_raw`` when given; else of the
        first test positive's user), falling back on a validation positive."""
        d = self.data
        user = self.user_entity(user_raw) if user_raw is not None else None
        for rows in (d.test, d.valid):
            pos = rows[rows[:, 2] == 1]
            if user is not None:
                pos = pos[pos[:, 0] == user]
            if len(pos):
                return int(pos[0, 0]), int(pos[0, 1])
        if user is None:
            raise RunNotOpen("no positive pair in the validation or test split")
        raise RunNotOpen(f"user {user_raw} has no validation or test positive: give --item")


def open_run(store: Store, run_id: int, device: str = "cpu") -> OpenRun:
    """The run's saved model with its prepared data; :class:`RunNotOpen` (a KniError) when it has none."""
    from kni_core.checkpoint import load_model
    from kni_core.explain import Namer
    run = store.get(run_id)
    where = checkpoint_state(store.url, run.checkpoint)
    if where.path is None:
        raise RunNotOpen(f"run {run_id} has no saved model (it ran before checkpoints were kept, with "
                         f"train.checkpoint: false, or ended before its first epoch); train it again to look inside")
    if where.missing:
        raise RunNotOpen(f"run {run_id}: its checkpoint {where.path} is missing (was the database moved without "
                         f"its {where.path.parent.name} folder?)")
    from kni_core.train import resolve_device
    try:
        device = str(resolve_device(device))
    except RuntimeError as e:                 # an unknown name, or CUDA asked for and absent
        raise RunNotOpen(f"--device {device}: {str(e).splitlines()[0]}") from None
    cfg = RunConfig.from_dict(json.loads(run.config_json))
    model, data = load_model(cfg, where.path, device=device)
    return OpenRun(run, cfg, model, data, Namer(data))
