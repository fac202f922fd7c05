"""The run process: ``python -m workbench.runs.child RUN_ID --db URL`` executes one queued run.

A fresh interpreter per run (no inherited CUDA state, a GIL of its own, cancellation by signal).
The parent (``kni run``, the workbench's launcher, a Ray task) only writes the ``queued`` row;
the child claims it, trains (:mod:`.execute`) and records its end itself (:mod:`.listener`).
A run whose row is removed while it trains stops with :data:`EXIT_REMOVED`; one whose row another
attempt claimed meanwhile (``kni resume`` while this process was stopped) stops with
:data:`EXIT_SUPERSEDED`, writing nothing more.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback as tb
from typing import Sequence

from kni_core.config import RunConfig

from ..recipe.sweep import OPTUNA_EXTRA
from ..store.errors import RunGone, StoreError, Superseded
from ..store.liveness import this_host
from ..store.records import Run
from ..store.repository import Store
from .errors import Cancelled, Pruned
from .listener import Heartbeat, SignalGuard, StoreListener

log = logging.getLogger(__name__)

#: Exit status of a run process that was cancelled by a signal.
EXIT_CANCELLED = 130
#: Exit status of a run process whose row was removed from the database while it ran.
EXIT_REMOVED = 4
#: Exit status of a run process whose row another attempt took over while it ran.
EXIT_SUPERSEDED = 5

def child_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a run process: ``python -m workbench.runs.child RUN_ID --db URL``."""
    parser = argparse.ArgumentParser(prog="python -m workbench.runs.child",
                                     description="Execute one stored run (normally started by kni run).")
    parser.add_argument("run_id", type=int)
    parser.add_argument("--db", required=True, help="SQLAlchemy URL or SQLite path of the run database")
    parser.add_argument("--checkpoint", default=None, help="save the best model here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)

    guard = SignalGuard()
    guard.install()                           # from here on a signal means cancelled
    try:
        store = Store.open(args.db, create=False)
    except (StoreError, Cancelled) as e:
        print(f"run {args.run_id}: {e}", file=sys.stderr)
        return 2
    listener = StoreListener(store, args.run_id, "valid", guard)
    heartbeat: Heartbeat | None = None

    def removed() -> bool:
        try:
            return bool(store.missing([args.run_id]))
        except StoreError:
            return False

    progress = None
    try:
        owner = listener._write("the claim", lambda: store.claim(args.run_id, os.getpid(), this_host()))
        if owner is None:
            print(f"run {args.run_id}: not queued (already started, ended or removed)", file=sys.stderr)
            return 3
        listener.owner = owner

        def gone(error: RunGone) -> None:      # from the heartbeat thread
            listener.gone = listener.gone or error
            guard.interrupt("removal of its row" if not isinstance(error, Superseded) else "another attempt")

        run = store.get(args.run_id)
        heartbeat = Heartbeat(store, args.run_id, on_gone=gone, owner=owner,
                              on_cancel=lambda: guard.interrupt("kni cancel (asked through the database)"))
        heartbeat.start()
        from .execute import execute  # imports torch: after the claim
        if os.environ.get("KNI_THREADS"):    # set by the launcher (spawn): the run's share of the cores
            import torch
            torch.set_num_threads(int(os.environ["KNI_THREADS"]))
        cfg = RunConfig.from_dict(json.loads(run.config_json)).validate()
        listener.select_on = cfg.train.select_on
        from .progress import ProgressListener, ProgressWriter
        tracker = progress_tracker(run, cfg)
        progress = ProgressWriter(store, args.run_id, tracker, owner=owner)
        progress.start()
        checkpoint, optional = args.checkpoint, False
        if checkpoint is None and run.n_epochs and run.checkpoint:     # resumed: where its model was saved
            from .checkpoints import other_owner, resolve
            where = resolve(store.url, run.checkpoint)
            if other_owner(store.url, where) is None:          # never over another database's model
                checkpoint, optional = str(where), True
        if checkpoint is None and cfg.train.checkpoint:
            from .checkpoints import default_path
            checkpoint, optional = str(default_path(store.url, args.run_id)), True
        recorded: list[bool] = []

        def saved(path) -> None:              # the row names the file once it holds a model
            if not recorded:
                from .checkpoints import stored_form
                listener._write("the checkpoint's path", lambda: store.set_checkpoint(
                    args.run_id, stored_form(store.url, path), owner=owner))
                recorded.append(True)

        last, state = last_epoch(store, run, cfg, listener)
        execute(cfg, [ProgressListener(tracker, progress), listener, *sweep_listeners(store, run)],
                checkpoint=checkpoint, checkpoint_optional=optional, on_checkpoint=saved,
                progress=tracker.update, last=last, resume=state, shield=guard.section)
        return 0
    except BaseException as error:            # noqa: BLE001 - recorded, then reported
        if not listener.ended:                # an error before execute's listeners took over
            try:
                listener.failed(error)
            except BaseException as e2:      # noqa: BLE001
                print(f"run {args.run_id}: could not record the end: {e2}", file=sys.stderr)
        if isinstance(error, Pruned):
            return 0
        lost = error if isinstance(error, RunGone) else listener.gone
        if isinstance(lost, Superseded):
            print(f"run {args.run_id}: stopped: {lost}", file=sys.stderr)
            return EXIT_SUPERSEDED
        if lost is not None or (isinstance(error, (Cancelled, StoreError)) and removed()):
            print(f"run {args.run_id}: its row was removed from {store.where} while it ran; stopped",
                  file=sys.stderr)
            return EXIT_REMOVED
        if isinstance(error, (Cancelled, KeyboardInterrupt)):
            return EXIT_CANCELLED
        if isinstance(error, StoreError):     # one clear line, no traceback
            print(f"run {args.run_id}: failed: {error}", file=sys.stderr)
            return 1
        tb.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
        return 1
    finally:
        if progress is not None:
            progress.stop()
        if heartbeat is not None:
            heartbeat.stop()
        store.close()


def progress_tracker(run: Run, cfg: RunConfig):
    """The run's progress from the epoch it trains first: 1, or the one after the epochs a
    resumed run keeps (its first resumed epoch showed as epoch 1 until it ended)."""
    from .progress import ProgressTracker
    return ProgressTracker(cfg.train.epochs, first_epoch=(run.n_epochs or 0) + 1)


def last_epoch(store: Store, run: Run, cfg: RunConfig, listener: StoreListener):
    """Where the run writes its last-epoch state, and - for a run that has epochs already (``kni
    resume`` put it back in the queue) - the state it continues from, checked to be this run's."""
    from .checkpoints import last_state_path, run_identity
    from .execute import LastEpoch
    last = LastEpoch(last_state_path(store.url, run.id), run_identity(run),
                     on_saved=lambda path, size, seconds: listener._write(
                         "the last-epoch state's size",
                         lambda: store.record_last_state(run.id, size, seconds, owner=listener.owner)),
                     still_ours=lambda: store.check_owner(run.id, listener.owner))
    if not run.n_epochs:
        return last, None
    from kni_core import resume
    state = resume.read(last.path, config=cfg.to_dict(), identity=last.identity)
    if state["epoch"] != run.n_epochs:
        raise resume.CheckpointUnreadable(f"last-epoch state {last.path}: holds epoch {state['epoch']}, the run "
                                          f"stores {run.n_epochs} epochs; resume it with kni resume {run.id}")
    listener.best = resume.selected(state)
    log.info("run %d: resuming after epoch %d from %s", run.id, state["epoch"], last.path)
    return last, state


def sweep_listeners(store: Store, run: Run) -> list:
    """The listeners a run of a sweep adds (its pruning hook); none outside a pruning sweep.
    Without Optuna here the run trains unpruned and says which extra would prune it."""
    if run.sweep_id is None:
        return []
    try:
        from .pruning import prune_listener
    except ImportError:
        log.warning("run %d: its sweep may prune, but Optuna is not installed here (%s); training unpruned",
                    run.id, OPTUNA_EXTRA)
        return []
    listener = prune_listener(store, run)
    return [listener] if listener is not None else []


if __name__ == "__main__":
    from workbench.runs.child import (
        child_main as _child_main,  # the importable module, not __main__
    )
    sys.exit(_child_main())
