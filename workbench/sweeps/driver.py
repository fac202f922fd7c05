"""Runs a sweep: the sweep row, its queued runs, their launches, and for TPE the asking and telling.

Grid and random points are known before anything runs: their rows are queued at once and run
through the launcher (``--jobs`` at a time). A TPE sweep asks Optuna's sampler for
``ceil(jobs / seeds)`` points at a time, runs them, and tells each point the mean over its
seeds of the validation AUC at its validation-selected epoch (a point with a pruned seed is
told *pruned* with its mean per-epoch validation AUC, one whose runs failed *failed*).

An interrupted TPE search goes on (:meth:`SweepDriver.continuing`, ``kni resume --sweep``) by
replaying: a sampler seeded as the first one is asked, wave by wave, and told the stored
results; each point it asks again must be the stored one (its values and its runs'
configurations), and from the first point never asked on it asks what the first driver would
have. docs/sweeps.md has the user's side.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from kni_core.config import RunConfig
from kni_core.data.prepare import made_for
from kni_core.errors import KniError

from ..recipe import Recipe, parse_recipe
from ..recipe.sweep import MAX_RUNS, SweepError, SweepSpec, params_text, require_optuna
from ..runs.rows import new_run
from ..store.records import NewRun, Run
from ..store.repository import Store
from ..store.statuses import CANCELLED, COMPLETED, CRASHED, PRUNED, QUEUED

#: Seconds between two touches of the queued rows while a sweep prepares its data (a row
#: untouched for long would look abandoned).
TOUCH_EVERY = 5.0

log = logging.getLogger(__name__)


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
    launcher pass their :class:`~workbench.runs.launcher.Launcher` path, so ``--jobs``, GPUs and the
    executor apply as for any recipe); ``on_queued(sweep_id, run_ids)`` hears of each batch of
    queued rows (the workbench's launcher reports the first); ``prepare`` prepares one
    configuration's data (once per distinct preprocessing); ``executor`` names what runs them
    (recorded on each row)."""

    def __init__(self, store: Store, recipe: Recipe, launch: LaunchFn, *, jobs: int = 1,
                 prov: Any | None = None,             # workbench.runs.provenance.Code
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
        self._wave: int | None = None           # a continued search: the first driver's wave size
        self._stored: dict[int, dict[int, Run]] = {}    # a continued sweep: point -> seed -> its run
        self._new: set[int] = set()             # the runs this driver queued (the ones it launches)

    @classmethod
    def continuing(cls, store: Store, sweep_id: int, launch: LaunchFn, *, device: str | None = None,
                   **options: Any) -> "SweepDriver":
        """The driver of TPE sweep ``sweep_id`` to go on where it stopped: :meth:`run` replays
        its search over the stored runs (which should have ended: ``kni resume --sweep`` resumes
        its stopped runs first) and runs the points it never asked and its ``rerun:`` seeds.
        ``device`` moves the runs still to start; ``options`` are the constructor's. A grid or
        random sweep queued every point when it started: its driver goes on with the ``rerun:``
        seeds only. Raises SweepError for a TPE sweep whose driver kept no replay facts."""
        sweep = store.get_sweep(sweep_id)
        spec = SweepSpec.from_dict(sweep.spec_dict)
        if spec.tpe is None:
            return cls._rerunning(store, sweep, spec, launch, device=device, **options)
        from .search import replay_study, search_facts
        spec = _in_asked_order(spec, sweep.recipe_text)
        facts = search_facts(store, sweep_id)
        if "wave_size" not in facts or "base" not in facts:
            raise SweepError(f"sweep {sweep_id} ({sweep.name}) was started before sweeps kept what replaying their "
                             "search needs: its stopped runs resume, the points it never asked cannot be asked")
        base = RunConfig.from_dict(facts["base"])
        if device is not None:
            base = dataclasses.replace(base, device=device)
        recipe = Recipe(sweep.name, sweep.recipe_path, sweep.recipe_text, None, sweep.seed_list, base.device,
                        base.validate(), spec)
        driver = cls(store, recipe, launch, **options)
        driver.sweep_id, driver._wave = sweep_id, int(facts["wave_size"])
        driver._search = replay_study(spec.tpe)
        for r in store.runs(sweep=sweep_id):
            driver._stored.setdefault(r.sweep_point, {})[r.seed] = r
        return driver

    @classmethod
    def _rerunning(cls, store: Store, sweep: Any, spec: SweepSpec, launch: LaunchFn, *, device: str | None,
                   **options: Any) -> "SweepDriver":
        """The driver of a grid or random sweep whose points have all run: its points are the
        stored runs of its search seeds, so that :meth:`run` picks the best as the first driver
        would have and runs the ``rerun:`` seeds it lacks (a rerun seed already stored is reused)."""
        runs = store.runs(sweep=sweep.id)
        search = [r for r in runs if r.seed in sweep.seed_list]
        if not search:
            raise SweepError(f"sweep {sweep.id} ({sweep.name}) holds no run of its search seeds; nothing to rerun")
        base = RunConfig.from_dict(search[0].config)
        if device is not None:
            base = dataclasses.replace(base, device=device)
        recipe = Recipe(sweep.name, sweep.recipe_path, sweep.recipe_text, None, sweep.seed_list, base.device,
                        base.validate(), spec)
        driver = cls(store, recipe, launch, **options)
        driver.sweep_id = sweep.id
        points: dict[int, Point] = {}
        for r in sorted(search, key=lambda r: (r.sweep_point, r.seed)):
            p = points.setdefault(r.sweep_point, Point(r.sweep_point, r.params, []))
            p.configs.append(RunConfig.from_dict(r.config))
            p.run_ids.append(r.id)
        driver.points = [points[n] for n in sorted(points)]
        for r in runs:
            driver._stored.setdefault(r.sweep_point, {})[r.seed] = r
        return driver

    # -- setup ---------------------------------------------------------------------------
    def check(self) -> None:
        """Refuse early what cannot run here (a missing extra, more than MAX_RUNS runs), before
        anything is written or built: 10,000 points x 11 seeds took 30 s and 420 MB of
        configurations to be refused, and 1,000 seeds more than a gigabyte."""
        for what in self.spec.needs_optuna:
            require_optuna(what)
        self._check_size(self.spec.planned)

    def _check_size(self, points: int) -> None:
        if points * len(self.recipe.seeds) + len(self.spec.rerun) > MAX_RUNS:
            raise SweepError(f"{self.recipe.name}: {points:,} points x {len(self.recipe.seeds)} seeds is more "
                             f"than {MAX_RUNS:,} runs")

    def _configs(self, params: dict) -> list[RunConfig]:
        return [self.recipe.config_for_point(params, seed) for seed in self.recipe.seeds]

    def prepare(self, cfg: RunConfig) -> Any:
        """Prepare ``cfg``'s data unless a point with the same preprocessing was prepared."""
        if self.prepare_fn is None:
            return None
        key = json.dumps(made_for(cfg), sort_keys=True, default=str)
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
            if self.spec.prune is not None and planned == 1:
                log.warning("sweep of one point with pruning: the pruner compares the point's seeds with each "
                            "other, so its mean mixes seeds cut short with seeds trained out (drop prune:, "
                            "or sweep more points)")
            self.prepare(self.points[0].configs[0])
        else:
            self.prepare(self.recipe.configs()[0])
        self.sweep_id = self.store.create_sweep(
            name=self.recipe.name, recipe_text=self.recipe.text, recipe_path=self.recipe.path,
            method=self.spec.method, spec=self.spec.to_dict(), seeds=self.recipe.seeds, planned=planned,
            prune=self.spec.prune.pruner if self.spec.prune else None)
        if self.spec.needs_optuna:
            from .search import create_studies  # Optuna: only sweeps that need it
            facts = {"wave_size": self.wave_size(), "base": self.recipe.base.to_dict()} if self.spec.tpe else None
            create_studies(self.store, self.sweep_id, self.spec, facts)
        if self.spec.tpe is None:
            self._queue(self.points)
        else:
            self._ask_wave()
        return self.sweep_id

    def _queue(self, points: list[Point]) -> list[int]:
        """Queue a run per configuration of each point, but for the ones a continued sweep
        has stored (those join the point as they are)."""
        queued = []
        for p in points:
            stored = self._stored.get(p.number, {})
            for cfg in p.configs:
                run = stored.get(cfg.seed)
                if run is not None:
                    if run.config_hash != cfg.config_hash():
                        raise SweepError(f"sweep {self.sweep_id} point {p.number} seed {cfg.seed}: its stored run "
                                         f"{run.id} has another configuration than the sweep gives it now "
                                         f"({run.config_hash[:8]}, now {cfg.config_hash()[:8]}); nothing more is asked")
                    p.run_ids.append(run.id)
                    continue
                new = new_run(self.recipe.name, self.recipe.text, cfg, self.recipe.path, self.prov)
                new = _with_sweep(new, self.sweep_id, p.number, p.params)
                p.run_ids.append(self.store.create_run(new, executor=self.executor))
                queued.append(p.run_ids[-1])
        self._new.update(queued)
        if self.on_queued is not None and queued:
            self.on_queued(self.sweep_id, queued)
        return queued

    # -- TPE -------------------------------------------------------------------------------
    def wave_size(self) -> int:
        """Points asked at once: enough runs to keep ``jobs`` busy (a continued search: as many
        as its first driver asked, whatever ``jobs`` is now, so that it asks the same points)."""
        if self._wave is not None:
            return self._wave
        return max(1, math.ceil(self.jobs / max(1, len(self.recipe.seeds))))

    def _ask_wave(self) -> list[Point]:
        assert self.spec.tpe is not None and self.sweep_id is not None
        if self._search is None:
            from .search import search_study
            self._search = search_study(self.store, self.sweep_id, self.spec.tpe)
        space = self.spec.tpe.space
        dists = {k: d.to_optuna() for k, d in space.items()}
        wave = []
        while len(self.points) < self.spec.tpe.n and len(wave) < self.wave_size():
            trial = self._search.ask(dists)
            params = {k: space[k].from_optuna(trial.params[k]) for k in space}
            number = len(self.points) + 1
            self._check_replayed(number, params)
            try:
                configs = self._configs(params)
            except KniError as e:             # a combination the recipe refuses: told failed
                log.warning("sweep %s point %d (%s) is not a valid configuration: %s", self.sweep_id, number,
                            params_text(params), e)
                self._search.tell(trial, state=_state("FAIL"))
                self.points.append(Point(number, params, [], trial=trial))
                self.told[number] = "fail"
                try:                          # asked, with no run: the sweep is not missing it
                    self.store.note_invalid_point(self.sweep_id, number)
                except KniError as e:
                    log.warning("sweep %s: %s", self.sweep_id, e)
                continue
            p = Point(number, params, configs, trial=trial)
            self.points.append(p)
            wave.append(p)
        self._queue(wave)
        return wave

    def _check_replayed(self, number: int, params: dict) -> None:
        """A continued search must ask again what its stored point ran."""
        stored = self._stored.get(number)
        if not stored:
            return
        ran = next(iter(stored.values())).params
        if json.dumps(ran, sort_keys=True) != json.dumps(params, sort_keys=True):
            raise SweepError(f"sweep {self.sweep_id} point {number}: the replayed search asks {params_text(params)} "
                             f"where the sweep ran {params_text(ran)} ({self._why_diverged(number)}); the points it "
                             "never asked are not asked (the stored points stand: kni compare --sweep ranks them)")

    def _why_diverged(self, number: int) -> str:
        """The likely cause of a replay that asks another point than the stored one: an earlier
        point's run that stopped while the first driver went on (it was told *failed*, and later
        points were asked knowing that) and completed since, so the replay tells it otherwise."""
        earlier = {r.id: n for n, by_seed in self._stored.items() if n < number for r in by_seed.values()}
        attempts = self.store.ended_attempts(sweep=self.sweep_id) if earlier else {}
        resumed = sorted((earlier[i], i) for i, tries in attempts.items() if i in earlier and tries)
        if resumed:
            named = ", ".join(f"point {n} (run {i})" for n, i in resumed[:4])
            return (f"{named} stopped while the first driver went on, which told it failed and asked the next "
                    "points knowing that; resumed since, it is told its result now, so the search asks otherwise")
        return "another Optuna version, or a changed search space?"

    def _tell(self, points: list[Point]) -> None:
        runs = {r.id: r for r in self.store.runs(ids=[i for p in points for i in p.run_ids])}
        epochs = self.store.epochs_of([i for p in points for i in p.run_ids])
        for p in points:
            mine = [runs[i] for i in p.run_ids if i in runs]
            statuses = {r.status for r in mine}
            values = [r.best_valid_auc for r in mine if r.best_valid_auc is not None]
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
                continued = self._wave is not None and not self.points
                wave = self._ask_wave() if continued else [p for p in self.points
                                                           if p.run_ids and p.number not in self.told]
                while wave:
                    self._launch(wave)
                    self._tell(wave)
                    if self.stopped:
                        break
                    wave = self._ask_wave()
            if self.spec.rerun and not self.stopped:
                self._rerun_best()
        finally:
            try:
                self.store.finish_sweep(self.sweep_id)
            except KniError as e:
                log.warning("could not record the end of sweep %s: %s", self.sweep_id, e)
        return self.statuses

    def best_point(self) -> Point | None:
        """The point with the highest mean validation AUC at the selected epoch over its seeds,
        among points whose every run completed (the value TPE is told; ties: the first)."""
        runs = {r.id: r for r in self.store.runs(ids=self.run_ids)}
        best, best_value = None, -math.inf
        for p in self.points:                  # the search's seeds only: a resumed rerun's do not vote
            mine = [runs[i] for i in p.run_ids if i in runs and runs[i].seed in self.recipe.seeds]
            values = [r.best_valid_auc for r in mine if r.status == COMPLETED and r.best_valid_auc is not None]
            if mine and len(values) == len(mine) and sum(values) / len(values) > best_value:
                best, best_value = p, sum(values) / len(values)
        return best

    def _rerun_best(self) -> None:
        """``rerun:``: the best point runs the rerun seeds it has not run, in the same sweep. Not
        while a search run is cancelled or crashed: it may be the best point's, which would then
        lose to a worse one; ``kni resume --sweep`` resumes it, then reruns."""
        stopped = [r.id for r in self.store.runs(ids=self.run_ids) if r.status in (CANCELLED, CRASHED)]
        if stopped:
            log.warning("sweep %s: run(s) %s stopped before they completed, so the best point is not chosen yet; "
                        "kni resume --sweep %s resumes them, then reruns the best point", self.sweep_id,
                        ", ".join(map(str, stopped)), self.sweep_id)
            return
        best = self.best_point()
        if best is None:
            log.warning("sweep %s: no point completed every run; nothing to rerun", self.sweep_id)
            return
        seeds = [s for s in self.spec.rerun if s not in self.recipe.seeds]
        log.info("sweep %s: point %d (%s) is the best on validation; it reruns seeds %s", self.sweep_id,
                 best.number, params_text(best.params), seeds)
        if not seeds:
            return
        extra = Point(best.number, best.params, [self.recipe.config_for_point(best.params, s) for s in seeds])
        self._queue([extra])                   # a rerun seed a stopped driver ran is reused, not run again
        for i, c in zip(extra.run_ids, extra.configs):
            if i not in best.run_ids:
                best.run_ids.append(i)
                best.configs.append(c)
        self._launch([extra])

    def _launch(self, points: list[Point]) -> None:
        """Run the points' queued runs (a continued sweep's stored runs have run)."""
        pairs = [(i, c) for p in points for i, c in zip(p.run_ids, p.configs) if i in self._new]
        for p in points:
            for run in self._stored.get(p.number, {}).values():
                self.statuses.setdefault(run.id, run.status)
        if not pairs:
            return
        ids, configs = [i for i, _ in pairs], [c for _, c in pairs]
        points = [p for p in points if set(p.run_ids) & self._new]
        touched = time.monotonic()
        for p in points:                       # once per preprocessing: parallel runs share the cache
            try:
                self.prepare(p.configs[0])
            except KniError as e:              # each run of the point will record it
                log.warning("sweep %s point %d: preparing its data failed: %s", self.sweep_id, p.number, e)
            if time.monotonic() - touched > TOUCH_EVERY:       # not per point: 10,000 points x 10,000 rows
                touched = time.monotonic()
                try:
                    self.store.touch(ids, statuses=(QUEUED,))     # queued rows stay alive meanwhile
                except KniError as e:          # a locked database: the launcher touches them next
                    log.warning("sweep %s: %s", self.sweep_id, e)
        statuses, stop = self.launch_fn(ids, configs)
        self.statuses.update(statuses)
        self.stopped = self.stopped or bool(stop)

    @property
    def run_ids(self) -> list[int]:
        return [i for p in self.points for i in p.run_ids]


def _with_sweep(new: NewRun, sweep_id: int | None, number: int, params: dict) -> NewRun:
    return dataclasses.replace(new, sweep_id=sweep_id, sweep_point=number,
                               sweep_params=json.dumps(params, sort_keys=False))


def _state(name: str) -> Any:
    return getattr(require_optuna("a tpe sweep").trial.TrialState, name)


def _in_asked_order(spec: SweepSpec, recipe_text: str) -> SweepSpec:
    """``spec`` with its TPE space in the order the first driver asked the keys. Optuna's
    sampler draws a trial's values one key after the other from one generator, so the same
    seed asked the keys in another order asks other values. Sweeps stored before the store
    kept the spec's key order have it sorted; their recipe text (which ``--set`` cannot
    change in a sweep section) has the order."""
    if spec.tpe is None:
        return spec
    try:
        written = parse_recipe(recipe_text, "<the sweep's stored recipe>").sweep
    except KniError:
        return spec
    if written is None or written.tpe is None or sorted(written.tpe.space) != sorted(spec.tpe.space):
        return spec
    space = {k: spec.tpe.space[k] for k in written.tpe.space}
    return dataclasses.replace(spec, tpe=dataclasses.replace(spec.tpe, space=space))


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


def sweep_of(store: Store, run: Run) -> SweepSpec | None:
    """The spec of ``run``'s sweep (None outside a sweep)."""
    if run.sweep_id is None:
        return None
    return SweepSpec.from_dict(store.get_sweep(run.sweep_id).spec_dict)
