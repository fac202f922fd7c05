"""The Recipes pane: the recipes found, their YAML, validation errors at their line."""

from __future__ import annotations

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

from ..recipe import Recipe, RecipeError, find_recipes, load_recipe
from ..runner import dataset_label
from .data import seeds_text
from .keys import ESSENTIAL


@dataclass
class RecipeEntry:
    path: Path
    text: str
    recipe: Recipe | None
    error: RecipeError | None

    @property
    def name(self) -> str:
        return self.recipe.name if self.recipe else self.path.stem

    @property
    def dataset(self) -> str:
        if self.recipe is None:
            return "?"
        return dataset_label(self.recipe.base)

    @property
    def model(self) -> str:
        if self.recipe is None:
            return "?"
        return "KNI" if self.recipe.base.model.kg else "NI"


def scan(folder: Path) -> tuple[list[RecipeEntry], str | None]:
    """Every recipe in ``folder`` with its validation (an error message for the folder)."""
    try:
        paths = find_recipes(folder)
    except RecipeError as e:
        return [], str(e)
    out = []
    for p in paths:
        try:
            text = p.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            out.append(RecipeEntry(p, "", None, RecipeError(f"cannot read: {e}", path=p)))
            continue
        try:
            out.append(RecipeEntry(p, text, load_recipe(p), None))
        except RecipeError as e:
            out.append(RecipeEntry(p, text, None, e))
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
            ok = Text("✓", style=self.app.status_style("completed")) if e.recipe else \
                Text("✗", style=self.app.status_style("failed"))
            seeds = seeds_text(e.recipe.seeds) if e.recipe else "?"
            table.add_row(ok, e.name, e.dataset, e.model, seeds, key=str(i))
        if keep is not None:
            for i, e in enumerate(self.entries):
                if e.path == keep:
                    table.move_cursor(row=i)
        self.show(self.current())

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
        if entry.recipe is not None:
            r = entry.recipe
            head.append(f"\n{r.description}" if r.description else "")
            head.append(f"\n{entry.dataset}, {entry.model}, {r.base.train.epochs} epochs, seeds {seeds_text(r.seeds)}, "
                        f"device {r.device}, group {r.base.config_hash()[:8]}", style="dim")
            head.append("\nvalid", style=self.app.status_style("completed"))
            head.append(": s or enter starts it", style="dim")
        else:
            e = entry.error
            where = f"line {e.line}: " if e is not None and e.line else ""
            key = f"{e.key}: " if e is not None and e.key else ""
            head.append("\ninvalid: ", style=self.app.status_style("failed"))
            head.append(f"{where}{key}{e.message if e is not None else ''}")
        info.update(head)
        line = entry.error.line if entry.error is not None else None
        syntax = Syntax(entry.text or "", "yaml", line_numbers=True, word_wrap=False,
                        theme="ansi_light" if not self.app.current_theme.dark else "ansi_dark",
                        highlight_lines={line} if line else None, background_color="default")
        if line:
            marker = Text(f"  ^ line {line}: {entry.error.message}", style=self.app.status_style("failed"))
            yaml_view.update(RichGroup(syntax, marker))
        else:
            yaml_view.update(syntax)
        if line:
            scroll = self.query_one("#recipe-yaml-scroll", VerticalScroll)
            self.call_after_refresh(scroll.scroll_to, y=max(0, line - 4), animate=False)

    @on(DataTable.RowHighlighted, "#recipes-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show(self.current())

    @on(DataTable.RowSelected, "#recipes-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_start()
