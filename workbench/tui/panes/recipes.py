"""The Recipes pane: the recipes found, their YAML, validation errors at their lines, and
whether each recipe's dataset is here (a recipe whose data is missing is not started, as
``kni run`` refuses it before queueing anything)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from rich.console import Group as RichGroup
from rich.syntax import Syntax
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from kni_core.errors import KniError

from ...analysis.metrics import group_id
from ...present import seeds_text, visible
from ...recipe import Recipe, RecipeError, find_recipes, load_recipe
from ...recipe.suite import is_suite, load_suite
from ...runs.rows import dataset_label, model_label
from ..keys import ESSENTIAL


@dataclass
class RecipeEntry:
    path: Path
    text: str
    recipe: Recipe | None
    error: RecipeError | None
    data: str | None = None          # where the data comes from ("generated" or a folder)
    data_error: str | None = None    # why it is missing and how to obtain it
    members: tuple[Recipe, ...] = ()  # a suite's recipes (then ``recipe`` is the first, named after the suite)

    def check_data(self) -> None:
        """Look for the dataset again (cheap: no file is read)."""
        if self.recipe is None:
            return
        from kni_core.data import check_available
        try:
            found = [check_available(r.base) for r in self.members or (self.recipe,)]
            self.data, self.data_error = "; ".join(dict.fromkeys(found)), None
        except KniError as e:
            self.data, self.data_error = None, str(e)

    @property
    def startable(self) -> bool:
        return self.recipe is not None and self.data_error is None

    @property
    def name(self) -> str:
        return self.recipe.name if self.recipe else self.path.stem

    @property
    def dataset(self) -> str:
        if self.recipe is None:
            return "?"
        return ", ".join(dict.fromkeys(dataset_label(r.base) for r in self.members or (self.recipe,)))

    @property
    def model(self) -> str:
        if self.recipe is None:
            return "?"
        if self.members:
            return f"suite of {len(self.members)}"
        return model_label(self.recipe.base)


def scan(folder: Path) -> tuple[list[RecipeEntry], str | None]:
    """Every recipe in ``folder`` with its validation (an error message for the folder)."""
    try:
        paths = find_recipes(folder)
    except RecipeError as e:
        return [], str(e)
    out = []
    for p in paths:
        try:
            text = visible(p.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError) as e:
            out.append(RecipeEntry(p, "", None, RecipeError(f"cannot read: {e}", path=p)))
            continue
        try:
            if is_suite(text):
                suite, members = load_suite(p, p.read_text(encoding="utf-8-sig"))
                first = dataclasses.replace(members[0], name=suite.name, description=suite.description,
                                            seeds=sorted({s for m in members for s in m.seeds}))
                entry = RecipeEntry(p, text, first, None, members=tuple(members))
            else:
                entry = RecipeEntry(p, text, load_recipe(p), None)
        except RecipeError as e:
            entry = RecipeEntry(p, text, None, e)
        entry.check_data()
        out.append(entry)
    return out, None


class RecipesPane(Vertical):
    BINDINGS = [
        *ESSENTIAL,
        Binding("enter,s", "start", "Start"),
        Binding("r", "rescan", "Rescan"),
    ]

    def __init__(self, folder: Path, **kwargs):
        super().__init__(**kwargs)
        self.folder = folder
        self.entries: list[RecipeEntry] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="recipes-where", classes="pane-title")
        with Horizontal(id="recipes-body"):
            table = DataTable(id="recipes-table", cursor_type="row", zebra_stripes=True)
            table.add_columns("ok", "recipe", "dataset", "model", "seeds")
            yield table
            with Vertical(id="recipe-side"):
                yield Static("", id="recipe-info")
                with VerticalScroll(id="recipe-yaml-scroll"):
                    yield Static("", id="recipe-yaml")

    def on_mount(self) -> None:
        self.rescan()

    # -- actions ------------------------------------------------------------------------
    def action_rescan(self) -> None:
        self.rescan()
        self.app.notify(f"{len(self.entries)} recipe(s) in {self.folder}", timeout=2)

    def action_start(self) -> None:
        entry = self.current()
        if entry is None:
            self.app.notify("no recipe to start", severity="warning")
            return
        if entry.recipe is not None:
            entry.check_data()                  # the data may have arrived (or gone) since the scan
            self._row(self.entries.index(entry), entry)
            self.show(entry)
            if entry.data_error is not None:
                self.app.notify(f"{entry.name}: its dataset is missing; nothing was started.\n"
                                f"{_first_line(entry.data_error)} (the panel on the right says how to get it)",
                                title="not started", severity="error", timeout=10)
                return
        self.app.start_recipe_dialog(entry)

    # -- contents -----------------------------------------------------------------------
    def rescan(self) -> None:
        table = self.query_one("#recipes-table", DataTable)
        keep = self.current().path if self.current() else None
        self.entries, error = scan(self.folder)
        self.query_one("#recipes-where", Static).update(
            Text.assemble(("recipes in ", "dim"), (str(self.folder), "bold"),
                          (f"  {error}" if error else "", "red")))
        table.clear()
        for i, e in enumerate(self.entries):
            table.add_row(*self._cells(e), key=str(i))
        if keep is not None:
            for i, e in enumerate(self.entries):
                if e.path == keep:
                    table.move_cursor(row=i)
        self.show(self.current())

    def _cells(self, e: RecipeEntry) -> tuple:
        """✓ valid with its data here, ! valid but its data missing, ✗ invalid."""
        if e.recipe is None:
            ok = Text("✗", style=self.app.status_style("failed"))
        elif e.data_error is not None:
            ok = Text("!", style=self.app.status_style("cancelled"))
        else:
            ok = Text("✓", style=self.app.status_style("completed"))
        dataset = Text(e.dataset, style=self.app.status_style("cancelled") if e.data_error else "")
        seeds = seeds_text(sorted({s for r in e.members or (e.recipe,) for s in r.seeds})) if e.recipe else "?"
        if e.recipe is not None and e.recipe.sweep is not None:     # a sweep: its points x the seeds
            seeds += f" x {e.recipe.sweep.planned} pts"
        return ok, e.name, dataset, e.model, seeds

    def _row(self, i: int, e: RecipeEntry) -> None:
        table = self.query_one("#recipes-table", DataTable)
        for column, value in zip(table.columns, self._cells(e)):
            table.update_cell(str(i), column, value)

    def current(self) -> RecipeEntry | None:
        if not self.entries:
            return None
        try:
            table = self.query_one("#recipes-table", DataTable)
        except Exception:                      # noqa: BLE001 - not composed yet
            return None
        row = table.cursor_row
        return self.entries[row] if 0 <= row < len(self.entries) else None

    def select_name(self, name: str) -> bool:
        for i, e in enumerate(self.entries):
            if e.name == name or e.path.stem == name:
                self.query_one("#recipes-table", DataTable).move_cursor(row=i)
                return True
        return False

    def show(self, entry: RecipeEntry | None) -> None:
        info = self.query_one("#recipe-info", Static)
        yaml_view = self.query_one("#recipe-yaml", Static)
        if entry is None:
            info.update(Text(f"no *.yaml recipes in {self.folder} (start with --recipes DIR)", style="dim"))
            yaml_view.update("")
            return
        head = Text()
        head.append(str(entry.path), style="bold")
        errors = entry.error.errors if entry.error is not None else []
        if entry.members:
            head.append(f"\n{entry.recipe.description}" if entry.recipe.description else "")
            head.append(f"\na suite: its {len(entry.members)} recipes run one after another, in one queue",
                        style="bold")
            for m in entry.members:
                head.append(f"\n  {m.name}: {dataset_label(m.base)}, {model_label(m.base)}, seeds "
                            f"{seeds_text(m.seeds)}, group {group_id(m.base.config_hash())}", style="dim")
        if entry.recipe is not None:
            r = entry.recipe
            if not entry.members:
                head.append(f"\n{r.description}" if r.description else "")
                head.append(f"\n{entry.dataset}, {entry.model}, {r.base.train.epochs} epochs, seeds "
                            f"{seeds_text(r.seeds)}, device {r.device}, group {group_id(r.base.config_hash())}",
                            style="dim")
            if r.sweep is not None:
                head.append(f"\nsweep {r.sweep.describe(len(r.seeds))}; each point is its own group", style="bold")
            if entry.data_error is None:
                head.append("\nvalid", style=self.app.status_style("completed"))
                head.append(f", data {entry.data}; s or enter starts it", style="dim")
            else:
                head.append("\nvalid, but its dataset is missing", style=self.app.status_style("cancelled"))
                head.append(": it cannot start until the data is here (r rescans)\n", style="dim")
                head.append(entry.data_error)
        else:
            head.append(f"\ninvalid ({len(errors)} mistakes):" if len(errors) > 1 else "\ninvalid:",
                        style=self.app.status_style("failed"))
            for e in errors:
                where = f"line {e.line}: " if e.line else e.origin + ": " if e.origin else ""
                key = f"{e.key}: " if e.key else ""
                head.append(visible(f"\n{where}{key}{e.message}" if len(errors) > 1 else f" {where}{key}{e.message}"))
        info.update(head)
        lines = sorted({e.line for e in errors if e.line})
        syntax = Syntax(entry.text or "", "yaml", line_numbers=True, word_wrap=False,
                        theme="ansi_light" if not self.app.current_theme.dark else "ansi_dark",
                        highlight_lines=set(lines) or None, background_color="default")
        if lines:
            marker = Text("\n".join(visible(f"  ^ line {e.line}: {e.key + ': ' if e.key else ''}{e.message}")
                                    for e in errors if e.line), style=self.app.status_style("failed"))
            yaml_view.update(RichGroup(syntax, marker))
            scroll = self.query_one("#recipe-yaml-scroll", VerticalScroll)
            self.call_after_refresh(scroll.scroll_to, y=max(0, lines[0] - 4), animate=False)
        else:
            yaml_view.update(syntax)

    @on(DataTable.RowHighlighted, "#recipes-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show(self.current())

    @on(DataTable.RowSelected, "#recipes-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_start()


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""
