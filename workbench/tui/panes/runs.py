"""The Runs pane: a live table of every run, with filters, sorting, marks, cancel, delete, and
(``w``) the runs grouped by sweep under one header row per sweep."""

from __future__ import annotations

import re
from typing import Any, Callable

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Select, Static

from ... import analysis as cmp
from ...present import duration, fmt, tags_text
from ...runs.progress import progress_cell
from ...store.attempts import RESUMABLE
from ...store.records import Run, run_seconds
from ...store.statuses import COMPLETED, COUNTED, FINAL, LIVE, PRUNED, RUNNING, STATUSES
from ..data import Change
from ..keys import ESSENTIAL

#: (key, header) of the table's columns in order; ``epoch`` shows a running run's progress
#: inside its epoch and the estimate of the time left.
COLUMNS: list[tuple[str, str]] = [
    ("id", "id"), ("status", "status"), ("recipe", "recipe"), ("dataset", "dataset"), ("model", "model"),
    ("seed", "seed"), ("epoch", "epoch / ETA"), ("valid", "valid AUC"), ("test", "test AUC"), ("elapsed", "elapsed"),
    ("device", "device"), ("tags", "tags"),
]
#: Columns shown only from this pane width on, so that none is cut off at 80 or 120 columns
#: (the detail screen shows everything).
MIN_WIDTH = {"valid": 120, "elapsed": 100, "tags": 100, "model": 100, "device": 130}   # model before valid AUC:
#: KNI and NI runs of one recipe (--set model.kg=false) differ in nothing else the row shows
STATUS_FILTERS = ["all", "live", *STATUSES]


class RunsPane(Vertical):
    # Sorting, reversing, the status and text filters and grouping by sweep stay out of the footer
    # (they are in the help, the palette, the column headers and the filter bar), so the essential
    # keys fit at 120 columns.
    BINDINGS = [
        *ESSENTIAL,
        Binding("o", "open", "Open"),
        Binding("slash", "focus_filter", "Filter", show=False),      # the filter box says "/ filter"
        Binding("f", "cycle_status", "Status", show=False),
        Binding("s", "cycle_sort", "Sort", show=False),
        Binding("S", "reverse_sort", "Reverse", show=False),
        Binding("space", "mark", "Mark"),
        Binding("p", "compare", "Compare"),
        Binding("D", "diff", "Diff"),
        Binding("t", "tags", "Tags"),
        Binding("n", "note", "Note"),
        Binding("c", "cancel", "Cancel"),
        Binding("d", "delete", "Delete"),
        Binding("R", "resume", "Resume"),
        Binding("w", "toggle_sweeps", "By sweep", show=False),
    ]

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.sort_key = "id"
        self.sort_reverse = True              # newest first
        self.marked: set[int] = set()
        self.by_sweep = False                 # w: group the rows by sweep
        self._order: list[int | str] = []     # row keys in order: run ids, "sweep:ID" header rows
        self.width = 0

    def compose(self) -> ComposeResult:
        with Horizontal(id="runs-bar"):
            yield Input(placeholder="/ filter: recipe, dataset, model, seed, device, group...", id="runs-filter",
                        compact=True)
            yield Select([(s, s) for s in STATUS_FILTERS], value="all", allow_blank=False, id="runs-status",
                         compact=True)
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-summary", classes="pane-footer")

    def on_mount(self) -> None:
        self.width = self.app.size.width
        self.rebuild()
        self.set_interval(1.0, self._tick)

    # -- data -----------------------------------------------------------------------------
    @property
    def data(self):
        return self.app.data

    def columns(self) -> list[tuple[str, str]]:
        return [c for c in COLUMNS if self.width >= MIN_WIDTH.get(c[0], 0)]

    def _cells(self, run: Run) -> list[Any]:
        status = self.data.status(run)
        now = self.data.clock()
        mark = "● " if run.id in self.marked else ""
        style = self.app.status_style(status)
        recipe = Text(run.recipe)
        if run.sweep_id is not None:
            recipe.append(f" s{run.sweep_id}.p{run.sweep_point}", style="dim")
        shown = status + (" damaged" if run.damage else "")         # unreadable values: Store docs
        cells = {"id": Text(f"{mark}{run.id}", justify="right"), "status": Text(shown, style=style),
                 "recipe": recipe, "dataset": run.dataset, "seed": Text(str(run.seed), justify="right"),
                 "epoch": Text(progress_cell(run, status, now), justify="right"),
                 "valid": Text(fmt(run.best_valid_auc), justify="right"),
                 "test": Text(fmt(run.best_test_auc), justify="right"),
                 "elapsed": Text(duration(run_seconds(run, now)), justify="right"), "model": run.model,
                 "device": run.device, "tags": Text(tags_text(run))}
        return [cells[key] for key, _ in self.columns()]

    def on_resize(self) -> None:
        before = self.columns()
        self.width = self.size.width
        if self.columns() != before:
            self.rebuild()

    def _matches(self, run: Run) -> bool:
        status = self.data.status(run)
        wanted = self.query_one("#runs-status", Select).value
        if wanted == "live" and status not in LIVE:
            return False
        if wanted not in ("all", "live", Select.NULL) and status != wanted:
            return False
        text = self.query_one("#runs-filter", Input).value.strip().lower()
        if text:
            hay = " ".join(str(x) for x in (run.id, run.recipe, run.dataset, run.model, f"seed {run.seed}",
                                              run.seed, run.device, status, run.config_hash[:12], *run.tags,
                                              *run.group_tags, run.note or "")).lower()
            return all(matches(word, hay) for word in text.split())
        return True

    def _sort_value(self, run: Run) -> Any:
        k = self.sort_key
        if k == "status":
            return self.data.status(run)
        if k == "epoch":
            return (run.n_epochs, run.max_epochs)
        if k == "valid":
            return run.best_valid_auc if run.best_valid_auc is not None else -1.0
        if k == "test":
            return run.best_test_auc if run.best_test_auc is not None else -1.0
        if k == "elapsed":
            return run_seconds(run, self.data.clock()) or 0.0
        if k == "tags":
            return tags_text(run)
        return getattr(run, k)

    def visible(self) -> list[Run]:
        runs = [r for r in self.data.runs.values() if self._matches(r)]
        runs.sort(key=lambda r: r.id)
        runs.sort(key=self._sort_value, reverse=self.sort_reverse)
        return runs

    def row_keys(self, runs: list[Run]) -> list[int | str]:
        """The row keys: the runs in order, or grouped by sweep (newest sweep first, each under a
        ``sweep:ID`` header, the runs keeping their sort order; runs of no sweep last)."""
        if not self.by_sweep:
            return [r.id for r in runs]
        blocks: dict[int | None, list[int]] = {}
        for r in runs:
            blocks.setdefault(r.sweep_id, []).append(r.id)
        out: list[int | str] = []
        for sweep_id in sorted(blocks, key=lambda k: (k is None, -(k or 0))):
            out.append(f"sweep:{sweep_id if sweep_id is not None else '-'}")
            out += blocks[sweep_id]
        return out

    def _header_cells(self, key: str) -> list[Any]:
        """A sweep's header row: its runs by status and its best point so far (valid AUC)."""
        ref = key.split(":", 1)[1]
        if ref == "-":
            runs = [r for r in self.data.runs.values() if r.sweep_id is None]
            return self._project({"status": Text(f"{len(runs)} run(s)", style="dim"),
                                  "recipe": Text("not in a sweep", style="bold dim")})
        sweep_id = int(ref)
        runs = [r for r in self.data.runs.values() if r.sweep_id == sweep_id]
        sweep = self.data.sweeps.get(sweep_id)
        name = sweep.name if sweep is not None else (runs[0].recipe if runs else "?")
        method = f" {sweep.method}" if sweep is not None else ""
        statuses = [self.data.status(r) for r in runs]
        live = sum(1 for s in statuses if s in LIVE)
        done = sum(1 for s in statuses if s in (COMPLETED, PRUNED))
        state = Text(f"{live} live" if live else f"{done}/{len(runs)} done",
                     style=self.app.status_style(RUNNING if live else COMPLETED))
        pts = [cmp.RunPoint(r, [], _best(r)) for r, s in zip(runs, statuses) if s in COUNTED]
        ranked = cmp.sweep_points(runs, pts, "valid_auc")
        best = ranked[0] if ranked and ranked[0].n else None
        points = len({r.sweep_point for r in runs})
        # spread over the columns, so that the header widens none of them (the recipe column was
        # pushed to a whole sentence and test AUC off the screen at 120 columns)
        return self._project({"id": Text("▾", justify="right"), "status": state,
                              "recipe": Text(f"sweep {sweep_id}: {name}", style="bold"),
                              "dataset": Text(f"{points} point(s)", style="dim"),
                              "model": Text(method.strip(), style="dim"),
                              "epoch": Text(f"best p{best.number}" if best else "", style="dim", justify="right"),
                              "seed": Text(f"{len(runs)} runs", justify="right"),
                              "valid": Text(fmt(best.stat("valid_auc")[0]) if best else "-", justify="right",
                                            style="bold"),
                              "test": Text(fmt(best.stat("test_auc")[0]) if best else "-", justify="right")})

    def _project(self, cells: dict[str, Any]) -> list[Any]:
        """Keyed cells in the order of the columns shown at this width (blank where missing)."""
        return [cells.get(key, "") for key, _ in self.columns()]

    def rebuild(self) -> None:
        """Re-list the rows (filter, sort or membership changed), keeping the cursor's run."""
        table = self.query_one("#runs-table", DataTable)
        current = self._current_key()
        runs = self.visible()
        self._order = self.row_keys(runs)
        by_id = {r.id: r for r in runs}
        table.clear(columns=True)
        for key, label in self.columns():
            arrow = (" ▼" if self.sort_reverse else " ▲") if key == self.sort_key else ""
            table.add_column(label + arrow, key=key)
        for k in self._order:
            if isinstance(k, str):
                table.add_row(*self._header_cells(k), key=k)
            else:
                table.add_row(*self._cells(by_id[k]), key=str(k))
        if current is not None and current in self._order:
            table.move_cursor(row=self._order.index(current), animate=False)
        self._summary()

    def refresh_rows(self, ids: set[int]) -> None:
        table = self.query_one("#runs-table", DataTable)
        headers: set[str] = set()
        for i in ids:
            run = self.data.runs.get(i)
            if run is None or i not in self._order:
                continue
            for (key, _), value in zip(self.columns(), self._cells(run)):
                table.update_cell(str(i), key, value, update_width=True)
            headers.add(f"sweep:{run.sweep_id if run.sweep_id is not None else '-'}")
        for h in headers & {k for k in self._order if isinstance(k, str)}:
            for (key, _), value in zip(self.columns(), self._header_cells(h)):
                table.update_cell(h, key, value, update_width=True)

    def runs_changed(self, change: Change) -> None:
        self.marked -= change.removed
        order = self.row_keys(self.visible())
        if order != self._order:
            self.rebuild()
        else:
            self.refresh_rows(change.runs)
            self._summary()

    def _tick(self) -> None:
        """Elapsed time of live runs and statuses that turn crashed with time."""
        live = {r.id for r in self.data.runs.values() if r.status in LIVE}
        if live:
            self.refresh_rows(live)

    def _summary(self) -> None:
        runs = list(self.data.runs.values())
        counts: dict[str, int] = {}
        for r in runs:
            s = self.data.status(r)
            counts[s] = counts.get(s, 0) + 1
        text = Text()
        text.append(f"{sum(1 for k in self._order if isinstance(k, int))} of {len(runs)} run(s)  ")
        for s in STATUSES:
            if counts.get(s):
                text.append(f"{s} {counts[s]}  ", style=self.app.status_style(s))
        if self.marked:
            text.append(f"marked {len(self.marked)} (p compares them, D diffs two)", style="bold")
        if self.data.error:
            text.append(f"  database: {self.data.error}", style=self.app.status_style("failed"))
        self.query_one("#runs-summary", Static).update(text)

    # -- selection --------------------------------------------------------------------------
    def _current_key(self) -> int | str | None:
        table = self.query_one("#runs-table", DataTable)
        if not self._order or table.cursor_row < 0 or table.cursor_row >= len(self._order):
            return None
        return self._order[table.cursor_row]

    def current_id(self) -> int | None:
        """The highlighted run (None on a sweep's header row)."""
        key = self._current_key()
        return key if isinstance(key, int) else None

    def current_sweep(self) -> int | None:
        """The sweep of the highlighted row (a header row or one of its runs)."""
        key = self._current_key()
        if isinstance(key, str):
            ref = key.split(":", 1)[1]
            return int(ref) if ref != "-" else None
        run = self.data.runs.get(key) if key is not None else None
        return run.sweep_id if run is not None else None

    def targets(self, keep: Callable[[Run], bool]) -> list[Run]:
        """The marked runs (or the highlighted one) that satisfy ``keep``."""
        ids = sorted(self.marked) if self.marked else ([self.current_id()] if self.current_id() is not None else [])
        return [self.data.runs[i] for i in ids if i in self.data.runs and keep(self.data.runs[i])]

    def select_run(self, run_id: int) -> None:
        if run_id not in self._order:
            self.query_one("#runs-filter", Input).value = ""
            self.query_one("#runs-status", Select).value = "all"
            self.rebuild()
        if run_id in self._order:
            self.query_one("#runs-table", DataTable).move_cursor(row=self._order.index(run_id), animate=False)

    # -- actions ------------------------------------------------------------------------------
    def action_open(self) -> None:
        i = self.current_id()
        if i is not None:
            self.app.open_run(i)
        elif self.current_sweep() is not None:       # a sweep's header: its points ranked
            self.app.compare_sweep(self.current_sweep())

    def action_toggle_sweeps(self) -> None:
        self.by_sweep = not self.by_sweep
        self.rebuild()
        self.app.notify("runs grouped by sweep (enter on a sweep ranks its points)" if self.by_sweep
                        else "runs not grouped", timeout=3)

    def action_focus_filter(self) -> None:
        self.query_one("#runs-filter", Input).focus()

    def action_cycle_status(self) -> None:
        select = self.query_one("#runs-status", Select)
        i = STATUS_FILTERS.index(select.value) if select.value in STATUS_FILTERS else 0
        select.value = STATUS_FILTERS[(i + 1) % len(STATUS_FILTERS)]

    def action_cycle_sort(self) -> None:
        keys = [k for k, _ in self.columns()]
        if self.sort_key not in keys:
            self.sort_key = keys[0]
        self.sort_key = keys[(keys.index(self.sort_key) + 1) % len(keys)]
        self.rebuild()

    def action_reverse_sort(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.rebuild()

    def action_mark(self) -> None:
        i = self.current_id()
        if i is None:
            return                             # a header row is not a run
        self.marked ^= {i}
        self.refresh_rows({i})
        self._summary()
        table = self.query_one("#runs-table", DataTable)
        if table.cursor_row < len(self._order) - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def action_compare(self) -> None:
        if self.marked:
            self.app.compare_runs(sorted(self.marked))
            return
        i = self.current_id()
        if i is not None:
            self.app.compare_group(self.data.runs[i].config_hash)
        elif self.current_sweep() is not None:
            self.app.compare_sweep(self.current_sweep())

    def action_diff(self) -> None:
        """The config diff of the two marked runs (or of the marked run and the highlighted one)."""
        ids = sorted(self.marked)
        current = self.current_id()
        if len(ids) == 1 and current is not None and current not in ids:
            ids.append(current)
        if len(ids) != 2:
            self.app.notify("mark two runs with space (or mark one and highlight another), then D",
                            severity="warning")
            return
        self.app.show_diff(ids[0], ids[1])

    def action_tags(self) -> None:
        runs = self.targets(lambda r: True)
        if runs:
            self.app.annotate([r.id for r in runs], "tags")

    def action_note(self) -> None:
        runs = self.targets(lambda r: True)
        if runs:
            self.app.annotate([r.id for r in runs], "note")

    def action_cancel(self) -> None:
        runs = self.targets(lambda r: self.data.status(r) in LIVE)
        if not runs:
            self._none_apply("live", "no live run to cancel here (mark runs with space or highlight one)")
            return
        self.app.confirm_cancel([r.id for r in runs])

    def action_resume(self) -> None:
        runs = self.targets(lambda r: self.data.status(r) in RESUMABLE)
        if not runs:
            self._none_apply("crashed, cancelled or failed", "only a crashed, cancelled or failed run resumes "
                             "(mark runs with space or highlight one)")
            return
        self.app.confirm_resume([r.id for r in runs])

    def action_delete(self) -> None:
        runs = self.targets(lambda r: r.status in FINAL)
        if not runs:
            self._none_apply("finished", "only finished runs can be deleted; cancel a live run first")
            return
        self.app.confirm_delete([r.id for r in runs])

    def _none_apply(self, wanted: str, otherwise: str) -> None:
        """Why a key acted on no run. Marked runs take the place of the highlighted one, so with
        marks the message names them and their statuses, not the highlighted run."""
        marked = [self.data.runs[i] for i in sorted(self.marked) if i in self.data.runs]
        if not marked:
            self.app.notify(otherwise, severity="warning")
            return
        shown = ", ".join(f"{r.id} {self.data.status(r)}" for r in marked[:6]) + (", ..." if len(marked) > 6 else "")
        self.app.notify(f"none of the marked runs ({shown}) is {wanted}; the keys act on the marked runs while "
                        "there are any (space unmarks one)", severity="warning")

    # -- events -----------------------------------------------------------------------------
    @on(Input.Changed, "#runs-filter")
    @on(Select.Changed, "#runs-status")
    def _filter_changed(self) -> None:
        self.rebuild()

    @on(Input.Submitted, "#runs-filter")
    def _filter_done(self) -> None:
        self.query_one("#runs-table", DataTable).focus()

    def on_key(self, event: events.Key) -> None:
        if event.key == "escape" and self.query_one("#runs-filter", Input).has_focus:
            event.stop()                      # back to the table, the filter kept (q then quits again)
            self._filter_done()

    @on(DataTable.RowSelected, "#runs-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    @on(DataTable.HeaderSelected, "#runs-table")
    def _header(self, event: DataTable.HeaderSelected) -> None:
        key = event.column_key.value
        if key == self.sort_key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_key, self.sort_reverse = key, key in ("id", "valid", "test", "elapsed")
        self.rebuild()


def _best(run: Run) -> Any:
    """The run's selected epoch as stored on its row (the Runs pane reads no epoch rows)."""
    return cmp.stored_best(run)


_WORDS = re.compile(r"[\s\-_/,:;()\[\]=]+")


def matches(word: str, hay: str) -> bool:
    """Whether a filter word names something in ``hay``: the start of one of its words (``ni``
    finds NI runs and quickstart-ni, not every KNI run), or anywhere when the word holds a
    separator itself (``quickstart-ni``)."""
    if _WORDS.search(word):
        return word in hay
    return any(token.startswith(word) for token in _WORDS.split(hay))
