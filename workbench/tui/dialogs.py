"""Modal dialogs: confirm, start a recipe, quit with active runs, export CSV, help."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Markdown, RadioButton, RadioSet, Select, Static

from kni_core.errors import ConfigError

from ..recipe import parse_seeds


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
    executor: str = "local"


#: The executor choices of the start dialog when Ray is installed.
EXECUTOR_OPTIONS = [("local (processes here)", "local"), ("ray (tasks on a Ray instance or cluster)", "ray")]


class StartDialog(ModalScreen["StartRequest | None"]):
    """Seeds, device and parallel jobs for starting a recipe; the executor when ``executors``
    are offered (Ray is installed)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "start", "Start")]

    def __init__(self, recipe_name: str, seeds: str, device: str, devices: list[tuple[str, str]], jobs: int = 1,
                 executor: str = "local", executors: list[tuple[str, str]] | None = None):
        super().__init__(classes="dialog")
        self.recipe_name = recipe_name
        self._seeds, self._device, self._devices, self._jobs = seeds, device, devices, jobs
        self._executor, self._executors = executor, executors or []

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
            yield Static("", id="start-error", classes="dialog-error")
            yield Static("Each seed becomes a run in its own process (the path `kni run` uses); "
                         "runs keep going if the workbench closes.", classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Start (enter)", id="start", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#seeds", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_start(self) -> None:
        seeds = self.query_one("#seeds", Input).value.strip()
        error = self.query_one("#start-error", Static)
        try:
            parse_seeds(seeds)
        except ConfigError as e:
            error.update(Text(str(e)))
            self.query_one("#seeds", Input).focus()
            return
        jobs_text = self.query_one("#jobs", Input).value.strip()
        if not jobs_text.isdigit() or int(jobs_text) < 1:
            error.update(Text("parallel jobs: expected a whole number >= 1"))
            self.query_one("#jobs", Input).focus()
            return
        device = self.query_one("#device", Select).value
        executor = str(self.query_one("#executor", Select).value) if self._executors else self._executor
        self.dismiss(StartRequest(seeds, str(device), int(jobs_text), executor))

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

    def __init__(self, path: str, summary: str):
        super().__init__(classes="dialog")
        self._path, self._summary = path, summary

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
            yield Static("", id="export-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Write (enter)", id="write", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _write(self) -> None:
        path = self.query_one("#path", Input).value.strip()
        if not path:
            self.query_one("#export-error", Static).update("give a file name")
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
Runs are separate processes that write to the run database; this window only reads it
(twice a second), so closing it never stops a run, and reopening shows them live again.

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
| `enter` / `s` | start the highlighted recipe: seeds (`1..5`), device, parallel jobs |
| `r` | rescan the recipes folder |

`✓` a valid recipe whose data is here, `!` valid but its dataset is missing (the panel says
where it was looked for and how to get it; it does not start until the data is there, `r`
rescans), `✗` invalid: the YAML is shown with every mistake's line highlighted.

## Runs
| key | action |
|---|---|
| `enter` | open the run: live plots, epochs, config, error and traceback |
| `/` | filter by text (recipe, dataset, model, seed, device, status, group) |
| `f` | cycle the status filter (all, live, each status) |
| `s` / `S` | sort by the next column / reverse (or click a header) |
| `space` | mark a run; `p` compares the marked runs (or the highlighted run's group) |
| `c` | cancel the marked or highlighted live runs (asks first) |
| `d` | delete the marked or highlighted finished runs (asks first) |

## Run detail
`p` plots, `t` epochs table, `o` config, `e` error; `c` cancel; `escape` back.

## Compare
| key | action |
|---|---|
| `space` / click | pick or unpick a configuration group in the list |
| `a` / `n` | pick all groups / none |
| `b` | cycle the epoch: best, last, a chosen epoch |
| `m` | cycle the metric (curves, matrix, paired test) |
| `g` | cycle the grouping: config, dataset, model, recipe |
| `x` | back from picked runs to groups |
| `e` | export the shown comparison to CSV (the same file as `kni export`) |

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
            yield Markdown(HELP)

    def action_close(self) -> None:
        self.dismiss(None)
