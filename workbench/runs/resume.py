"""Which stopped runs can continue, and from where (``kni resume`` and the workbench's ``R``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kni_core.errors import KniError

from ..store.statuses import COMPLETED, LIVE


class ResumeRefused(KniError):
    """A run that cannot be resumed (nothing is changed)."""


@dataclass(frozen=True)
class NewConfig:
    """The configuration a run continues under: more epochs (``kni resume --epochs``; a new
    group) or another device (``--device``; the same group)."""

    epochs: int
    device: str
    config_json: str
    config_hash: str


@dataclass(frozen=True)
class Plan:
    run: Any                       # workbench.store.records.Run, as read
    from_epoch: int                # the epoch it continues after (0: from the start)
    best: Any                      # the selected epoch of the state it continues from
    new: NewConfig | None = None   # None: its own configuration

    @property
    def extends(self) -> bool:
        return self.new is not None and self.new.epochs > self.run.max_epochs

    def text(self) -> str:
        """What resuming does, for the user."""
        r = self.run
        head = f"run {r.id} ({r.recipe} seed {r.seed}, was {r.status}): "
        if not self.from_epoch:
            return head + "starts again from epoch 1 (it finished no epoch)"
        text = head + f"continues after epoch {self.from_epoch}"
        new = self.new
        if self.extends:
            text += (f" to epoch {new.epochs}; train.epochs {r.max_epochs} -> {new.epochs} makes it a run of group "
                     f"{new.config_hash[:8]} (it leaves group {r.config_hash[:8]}, whose other seeds stay)")
        if new is not None and new.device != r.config.get("device"):
            text += (f"; on device {new.device} (it ran on {r.config.get('device')}: from here on its numbers are "
                     "that device's, not bitwise those of a run that never moved)")
        return text


def plan(store: Any, run_id: int, restart: bool = False, epochs: int | None = None,
         device: str | None = None) -> Plan:
    """How ``run_id`` resumes, or ResumeRefused saying why. With ``restart``, a run whose
    last-epoch state is missing or unusable (one stored before states were written, or whose
    write failed) trains again from epoch 1 instead of being refused. With ``epochs``, the run
    (a completed one too) continues to that many epochs, from a last-epoch state it kept; with
    ``device``, on that device."""
    from kni_core import resume
    from kni_core.checkpoint import check_same_data, sources_now
    from kni_core.config import RunConfig

    from ..store.attempts import RESUMABLE
    from ..store.repository import Store
    from .checkpoints import last_state_path, run_identity
    run = store.get(run_id)
    status = Store.effective_status(run)
    if status in LIVE:
        raise ResumeRefused(f"run {run_id} is {status} (pid {run.pid} on {run.host}): it has not stopped; "
                            f"nothing resumed (kni cancel {run_id} stops it)")
    if epochs is not None and epochs <= run.max_epochs:
        raise ResumeRefused(f"run {run_id}: --epochs {epochs} is not more than the {run.max_epochs} it was to run; "
                            "nothing resumed")
    if status == COMPLETED and epochs is not None:
        if run.stopped_early:
            raise ResumeRefused(f"run {run_id} stopped early (train.patience): more epochs would end at once; "
                                "nothing resumed")
    elif status not in RESUMABLE:
        raise ResumeRefused(f"run {run_id} is {status}: only a crashed, cancelled or failed run resumes"
                            + (" (a completed one with --epochs)" if status == COMPLETED else "")
                            + "; nothing resumed")
    cfg = RunConfig.from_dict(run.config).validate()
    new = _new_config(cfg, epochs, device) if epochs is not None or device is not None else None
    if not run.n_epochs:
        return Plan(run, 0, None, new)
    path = last_state_path(store.url, run.id)
    try:
        state = resume.read(path, config=cfg.to_dict(), identity=run_identity(run))
    except KniError as e:
        if status == COMPLETED:
            raise ResumeRefused(f"run {run_id}: cannot continue it: {e}; a completed run keeps its last-epoch "
                                "state only with train.keep_last: true; nothing resumed") from None
        if restart:
            return Plan(run, 0, None, new)
        raise ResumeRefused(f"run {run_id}: cannot resume: {e}; nothing resumed (--restart trains it again "
                            "from epoch 1)") from None
    try:                                         # before anything of the run changes, not in its process
        check_same_data(f"run {run_id}: cannot resume: its last-epoch state {path}", state.get("data_files"),
                        sources_now(cfg, state.get("data_files")))
    except KniError as e:
        raise ResumeRefused(f"{e}; nothing resumed") from None
    if state["epoch"] > run.n_epochs:
        raise ResumeRefused(f"run {run_id}: its last-epoch state holds epoch {state['epoch']} but the run stores "
                            f"{run.n_epochs}; nothing resumed")
    return Plan(run, int(state["epoch"]), resume.selected(state), new)


def _new_config(cfg: Any, epochs: int | None, device: str | None) -> NewConfig:
    import dataclasses
    changed = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs or cfg.train.epochs),
                                  device=device or cfg.device)
    try:
        changed = changed.validate()
    except KniError as e:
        raise ResumeRefused(f"{e}; nothing resumed") from None
    return NewConfig(changed.train.epochs, changed.device, json.dumps(changed.to_dict(), sort_keys=True),
                     changed.config_hash())
