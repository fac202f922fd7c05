"""Modal dialogs: confirm, start a recipe (or a sweep), quit with active runs, export CSV, help."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    Input,
    Label,
    RadioButton,
    RadioSet,
    Select,
    Static,
    TextArea,
)

from kni_core.errors import ConfigError

from ...recipe import Recipe, RecipeError, parse_recipe, parse_seeds


class ConfirmDialog(ModalScreen[bool]):
    """Yes / no. ``y`` or Enter on the focused button answers, ``n`` / Escape declines."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, title: str, body: str, yes: str = "Yes", no: str = "No", danger: bool = True):
        super().__init__(classes="dialog")
        self._title, self._body, self._yes, self._no, self._danger = title, body, yes, no, danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label(self._title, classes="dialog-title")
            yield Static(self._body, classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self._yes} (y)", id="yes", variant="error" if self._danger else "primary")
                yield Button(f"{self._no} (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


@dataclass(frozen=True)
class StartRequest:
    seeds: str
    device: str
    jobs: int
    #: ``SECTION.KEY=VALUE`` overrides, as ``kni run --set`` takes them (every point of a sweep).
    overrides: tuple[str, ...] = ()
    #: Where the runs execute: ``local`` child processes or ``ray`` tasks (offered when Ray is installed).
    executor: str = "local"


#: The executor choices of the start dialog when Ray is installed.
EXECUTOR_OPTIONS = [("local (processes here)", "local"), ("ray (tasks on a Ray instance or cluster)", "ray")]


def override_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line, ``KEY=VALUE``) of each override line; blank lines and ``#`` comments skipped."""
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((n, line))
    return out


def check_start(recipe_text: str | None, recipe_path: str | None, seeds: str,
                overrides: list[tuple[int, str]]) -> tuple[list[str], Recipe | None]:
    """The mistakes of the seeds and overrides (``--set``'s rules, each named by its line in
    the overrides box) and, when there are none, the recipe as it would start."""
    problems: list[str] = []
    try:
        parse_seeds(seeds)
    except ConfigError as e:
        problems.append(str(e))
    if recipe_text is None:                    # no recipe text given: the form only
        return problems, None
    try:
        rec = parse_recipe(recipe_text, recipe_path or "<recipe>", overrides=[o for _, o in overrides],
                           seeds=seeds if not problems else None)
    except RecipeError as e:
        lines = {f"--set {o}": n for n, o in reversed(overrides)}
        found = []
        for err in getattr(e, "errors", None) or [e]:
            if err.origin in lines:
                found.append((lines[err.origin], f"override line {lines[err.origin]}: {err.message}"))
            elif err.origin is None or not err.origin.startswith("--seeds"):
                found.append((0, str(err)))
        return problems + [text for _, text in sorted(found, key=lambda f: f[0])], None
    if rec.sweep is not None:
        import importlib.util
        missing = rec.sweep.needs_optuna if importlib.util.find_spec("optuna") is None else []
        if missing:
            from ...recipe.sweep import OPTUNA_EXTRA
            problems.append(f"{' and '.join(missing)} need Optuna, an optional extra: {OPTUNA_EXTRA}")
    return problems, (rec if not problems else None)


class StartDialog(ModalScreen["StartRequest | None"]):
    """Seeds, device, parallel jobs and overrides for starting a recipe (a sweep starts all its
    points), and the executor when ``executors`` are offered (Ray is installed). The overrides
    are checked as they are typed, with the rules of ``kni run --set``."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "start", "Start")]

    def __init__(self, recipe_name: str, seeds: str, device: str, devices: list[tuple[str, str]], jobs: int = 1,
                 recipe_text: str | None = None, recipe_path: str | None = None,
                 executor: str = "local", executors: list[tuple[str, str]] | None = None):
        super().__init__(classes="dialog")
        self.recipe_name = recipe_name
        self._seeds, self._device, self._devices, self._jobs = seeds, device, devices, jobs
        self._text, self._path = recipe_text, recipe_path
        self._executor, self._executors = executor, executors or []
        self.problems: list[str] = []

    def compose(self) -> ComposeResult:
        values = [v for _, v in self._devices]
        with Vertical(classes="dialog-box", id="start-box"):
            yield Label(f"Start {self.recipe_name}", classes="dialog-title")
            with Grid(id="start-form"):
                yield Label("Seeds", classes="form-label")
                yield Input(self._seeds, id="seeds", placeholder="1..5 or 1,2,3", compact=True)
                yield Label("Device", classes="form-label")
                yield Select(self._devices, value=self._device if self._device in values else values[0],
                             allow_blank=False, id="device", compact=True)
                yield Label("Parallel jobs", classes="form-label")
                yield Input(str(self._jobs), id="jobs", type="integer", compact=True)
                if self._executors:
                    names = [v for _, v in self._executors]
                    yield Label("Executor", classes="form-label")
                    yield Select(self._executors, value=self._executor if self._executor in names else names[0],
                                 allow_blank=False, id="executor", compact=True)
            with Horizontal(id="start-overrides-row"):
                yield Label("Overrides", classes="form-label")
                yield TextArea("", id="overrides", soft_wrap=False, compact=True,
                               placeholder="key=value per line, e.g. train.epochs=5")
            yield Static("", id="start-sweep", classes="dialog-hint")
            yield Static("", id="start-error", classes="dialog-error")
            yield Static("Each seed becomes a run in its own process (the path `kni run` uses); "
                         "runs keep going if the workbench closes.", classes="dialog-hint", id="start-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Start (ctrl+s)", id="start", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#seeds", Input).focus()
        self._check()

    def _values(self) -> tuple[str, list[tuple[int, str]]]:
        return (self.query_one("#seeds", Input).value.strip(),
                override_lines(self.query_one("#overrides", TextArea).text))

    def _check(self) -> Recipe | None:
        """Validate seeds and overrides as they are typed; say what a sweep will start."""
        seeds, overrides = self._values()
        self.problems, rec = check_start(self._text, self._path, seeds, overrides)
        self.query_one("#start-error", Static).update(Text("\n".join(self.problems)))
        sweep = self.query_one("#start-sweep", Static)
        if rec is not None and rec.sweep is not None:
            sweep.update(Text("sweep " + rec.sweep.describe(len(rec.seeds)), style="bold"))
        elif rec is not None and overrides:
            sweep.update(Text(f"{len(overrides)} override(s) apply to every seed"))
        else:
            sweep.update("")
        return rec

    @on(Input.Changed, "#seeds")
    @on(TextArea.Changed, "#overrides")
    def _changed(self) -> None:
        self._check()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_start(self) -> None:
        seeds, overrides = self._values()
        error = self.query_one("#start-error", Static)
        self._check()
        if self.problems:
            if any(p.startswith("override") for p in self.problems):
                self.query_one("#overrides", TextArea).focus()
            else:
                self.query_one("#seeds", Input).focus()
            return
        jobs_text = self.query_one("#jobs", Input).value.strip()
        if not jobs_text.isdigit() or int(jobs_text) < 1:
            error.update(Text("parallel jobs: expected a whole number >= 1"))
            self.query_one("#jobs", Input).focus()
            return
        device = self.query_one("#device", Select).value
        executor = str(self.query_one("#executor", Select).value) if self._executors else self._executor
        self.dismiss(StartRequest(seeds, str(device), int(jobs_text), tuple(o for _, o in overrides), executor))

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#start")
    def _start(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class QuitDialog(ModalScreen[str]):
    """Quitting with live runs: ``leave`` them running, ``cancel`` them, or ``stay``."""

    BINDINGS = [Binding("l", "choose('leave')", "Leave running"), Binding("c", "choose('cancel')", "Cancel runs"),
                Binding("escape,s", "choose('stay')", "Stay")]

    def __init__(self, body: str):
        super().__init__(classes="dialog")
        self._body = body

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label("Runs are still active", classes="dialog-title")
            yield Static(self._body, classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Leave running (l)", id="leave", variant="primary")
                yield Button("Cancel them (c)", id="cancel", variant="error")
                yield Button("Stay (esc)", id="stay")

    def on_mount(self) -> None:
        self.query_one("#leave", Button).focus()

    def action_choose(self, what: str) -> None:
        self.dismiss(what)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "stay")


@dataclass(frozen=True)
class ExportRequest:
    path: str
    per: str          # "group" or "run"


class ExportDialog(ModalScreen["ExportRequest | None"]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, path: str, summary: str, error: str = ""):
        super().__init__(classes="dialog")
        self._path, self._summary, self._error = path, summary, error
        self._replace: str | None = None      # the existing file a second Write replaces

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label("Export the comparison to CSV", classes="dialog-title")
            yield Static(self._summary, classes="dialog-body")
            with Horizontal(id="export-path-row"):
                yield Label("File ", classes="form-label")
                yield Input(self._path, id="path", placeholder="file.csv", compact=True)
            with RadioSet(id="per"):
                yield RadioButton("one row per group (kni export --groups)", value=True, id="per-group")
                yield RadioButton("one row per run (kni export)", id="per-run")
            yield Static(self._error, id="export-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Write (enter)", id="write", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _write(self) -> None:
        path = self.query_one("#path", Input).value.strip()
        error = self.query_one("#export-error", Static)
        if not path:
            error.update("give a file name")
            return
        target = Path(path).expanduser()
        if target.is_dir():
            error.update(f"{path} is a folder: give a file name")
            return
        if target.exists() and self._replace != path:
            self._replace = path
            error.update(f"{path} exists: Write again to replace it, or change the name")
            return
        per = "run" if self.query_one("#per-run", RadioButton).value else "group"
        self.dismiss(ExportRequest(path, per))

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self._write()

    @on(Button.Pressed, "#write")
    def _pressed_write(self) -> None:
        self._write()

    @on(Button.Pressed, "#cancel")
    def _pressed_cancel(self) -> None:
        self.dismiss(None)


HELP = """\
# kni-workbench

Start recipes, watch their runs train live, and compare configurations over seeds.
Runs are separate processes that write to the run database; this window reads it twice a
second, so closing it never stops a run (unless you ask it to), and reopening shows them live
again. It writes to the database only when you act: queueing, cancelling, resuming or
deleting runs (each asks first, but queueing), and your annotations (tags and notes).

## Everywhere
| key | action |
|---|---|
| `1` `2` `3` | Recipes, Runs, Compare |
| `?` | this help |
| `ctrl+p` | command palette (every action by name) |
| `ctrl+t` | switch between the light and the dark theme |
| `q` / `ctrl+q` | quit (asks what to do with active runs) |
| `tab` / mouse | move between widgets; click headers, tabs, rows and buttons |

## Recipes
| key | action |
|---|---|
| `enter` / `s` | start the highlighted recipe: seeds (`1..5`), device, parallel jobs, overrides |
| `r` | rescan the recipes folder |

`✓` a valid recipe whose data is here, `!` valid but its dataset is missing (the panel says
where it was looked for and how to get it; it does not start until the data is there, `r`
rescans), `✗` invalid: the YAML is shown with every mistake's line highlighted.

In the start dialog, *Overrides* takes `key=value` lines (as `kni run --set`, e.g.
`train.epochs=5`), checked as they are typed; `ctrl+s` or enter in a field starts. A recipe
with a `sweep:` section starts every point x every seed (the dialog says how many runs), and
the overrides apply to every point.

## Runs
| key | action |
|---|---|
| `enter` | open the run: live plots, epochs, config, error and traceback |
| `/` | filter: each word starts a recipe, model, dataset, seed, tag... (`ni`: NI, not KNI); `escape` back |
| `f` | cycle the status filter (all, live, each status) |
| `s` / `S` | sort by the next column / reverse (or click a header) |
| `space` | mark a run; `p` compares the marked runs (or the highlighted run's group) |
| `D` | config diff of the two marked runs (only the keys that differ, as `kni diff A B`) |
| `t` / `n` | edit the tags / the note of the marked or highlighted runs, or of their groups |
| `c` | cancel the marked or highlighted live runs (asks first) |
| `d` | delete the marked or highlighted finished runs (asks first) |
| `R` | resume the marked or highlighted crashed, cancelled or failed runs from their last epoch (asks first) |
| `w` | group the runs by sweep (a header row per sweep: enter or `p` on it ranks its points) |

Statuses: queued, running, completed, failed, cancelled, crashed, and *pruned* (a sweep's
pruner stopped the run after an epoch: a normal end, its epochs kept).

The `epoch / ETA` column shows a running run's epoch, how far into it it is and the estimated
time left (`≤`: at most, early stopping may end it sooner; during the first epoch, the
current phase's). Tags of a run's group are shown in parentheses.

## Run detail
`p` plots, `t` epochs table, `o` config, `e` error, `k` top-N, `s` AUC by stratum; `g` tags,
`n` note; `c` cancel; `x` explain; `P` save the plots (PNG, SVG) into `run-ID-plots/`; `escape` back.
The header shows the progress inside the epoch and the run's resources (peak memory, CPU
threads, GPU and peak GPU memory), as the run process recorded them.

## Explain (`x` on a run)
Its saved model (the selected epoch's checkpoint) asked about a user and an item, prefilled
with a test positive (ids as in the dataset's files; `tab` to the fields, enter to explain):
the predicted probability, the neighbour-pair heatmap of one sampled neighbourhood (attention
and pair score per cell; rows the user and its neighbours, columns the item and its), the top
pairs. `r` draws another neighbourhood, `m` lists the user's top 20 unseen items (validation
and test items marked), `e` explains again, `escape` back. As `kni explain` / `kni recommend`.

## Compare
| key | action |
|---|---|
| `space` / click | pick or unpick a configuration group in the list |
| `a` / `n` | pick all groups / none |
| `b` | cycle the epoch: best, last, a chosen epoch |
| `m` | cycle the metric (curves, matrix, paired test) |
| `g` | cycle the grouping: config, dataset, model, recipe |
| `x` | back from picked runs to groups |
| `[` `]` | previous / next view: Groups, Matrix, Curves, Paired test, Sweep |
| `e` | export the shown comparison to CSV (the same file as `kni export`; asks before replacing a file) |
| `ctrl+p` Report | the groups shown as `kni report` writes them (LaTeX table, figures, HTML page) |

*Sweep* ranks one sweep's points by validation AUC (mean ± std over seeds at each run's
selected epoch, a pruned run at its best epoch), with the values of the keys the sweep varies
and which keys matter (the spread of the mean per value), as `kni compare --sweep ID`; enter on
a point compares its seeds in Groups.

A group is named by its id, the first 8 characters of its config hash (everything but the
seed and the device), as in `kni runs` and `kni compare`. Mean ± std use the sample standard
deviation over seeds; one run counts per seed: the newest completed one (a re-run still
training does not replace it until it completes), or, before any completes, the newest run
with its best epoch so far. The paired test compares two different groups over the seeds both
have (sign-flip permutation p-value and a bootstrap 95% interval, as `kni compare --paired`);
it names a better group only when p < 0.05 and the interval excludes 0, and says when too few
seeds (5 or fewer) cannot reach p < 0.05.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            from textual.widgets import (
                Markdown,  # markdown-it is imported on the first ?, not at start-up
            )
            yield Markdown(HELP)

    def action_close(self) -> None:
        self.dismiss(None)
