"""Tags and notes of runs and groups (the user's own annotations), and the config diff of two runs.

The dialogs return what the user asked for; the app writes it through the Store (see
:meth:`workbench.tui.app.WorkbenchApp.annotate`), only on that explicit action.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich import box
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from ...analysis.diff import ConfigDiff, value_text


@dataclass(frozen=True)
class Scope:
    """One choice of what to annotate: ``targets`` (store targets), a label and the value now;
    ``mixed``: the targets' notes differ (``value`` is then empty and saving it changes nothing)."""

    label: str
    targets: tuple[str, ...]
    value: str
    mixed: bool = False


@dataclass(frozen=True)
class Annotation:
    scope: Scope
    text: str


class AnnotateDialog(ModalScreen["Annotation | None"]):
    """Edit the tags (space- or comma-separated) or the note of runs or of their groups."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, kind: str, scopes: list[Scope]):
        super().__init__(classes="dialog")
        self.kind, self.scopes = kind, scopes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box", id="annotate-box"):
            yield Label("Tags" if self.kind == "tags" else "Note", classes="dialog-title")
            with RadioSet(id="annotate-scope"):
                for i, scope in enumerate(self.scopes):
                    yield RadioButton(scope.label, value=i == 0, id=f"scope-{i}")
            yield Input(self.scopes[0].value, id="annotate-text", placeholder=self._placeholder(self.scopes[0]))
            yield Static("", id="annotate-error", classes="dialog-error")
            yield Static("Tags: one word each; those removed here are removed, those added are added (to every "
                         "target). Filter with / or kni runs --tag." if self.kind == "tags" else
                         "Saved in the run database; kni show and the CSV export include it.", classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save (enter)", id="save", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#annotate-text", Input).focus()

    def scope(self) -> Scope:
        radio = self.query_one("#annotate-scope", RadioSet)
        return self.scopes[max(0, radio.pressed_index)]

    def _placeholder(self, scope: Scope) -> str:
        if self.kind == "tags":
            return "tags, separated by spaces"
        return "their notes differ: a note typed here replaces them all" if scope.mixed else "a note; empty clears it"

    @on(RadioSet.Changed, "#annotate-scope")
    def _scope_changed(self) -> None:
        text = self.query_one("#annotate-text", Input)
        text.value, text.placeholder = self.scope().value, self._placeholder(self.scope())
        text.focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _save(self) -> None:
        self.dismiss(Annotation(self.scope(), self.query_one("#annotate-text", Input).value))

    @on(Input.Submitted, "#annotate-text")
    def _submitted(self) -> None:
        self._save()

    @on(Button.Pressed, "#save")
    def _pressed_save(self) -> None:
        self._save()

    @on(Button.Pressed, "#cancel")
    def _pressed_cancel(self) -> None:
        self.dismiss(None)


def diff_table(d: ConfigDiff) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("key", style="cyan", no_wrap=True)
    table.add_column(f"run {d.a}", overflow="fold")
    table.add_column(f"run {d.b}", overflow="fold")
    for k, x, y in d.always:
        table.add_row(k, value_text(x), value_text(y), style="" if x != y else "dim")
    table.add_section()
    for k, x, y in d.differences:
        table.add_row(k, value_text(x), value_text(y))
    return table


class DiffScreen(ModalScreen[None]):
    """The configuration keys that differ between two runs (as ``kni diff A B``)."""

    BINDINGS = [Binding("escape,q,D", "close", "Close")]

    def __init__(self, d: ConfigDiff):
        super().__init__(classes="dialog")
        self.diff = d

    def compose(self) -> ComposeResult:
        d = self.diff
        with Vertical(classes="dialog-box", id="diff-box"):
            yield Label(f"Config diff: run {d.a} vs run {d.b}", classes="dialog-title")
            with VerticalScroll(id="diff-scroll"):
                yield Static(diff_table(d), id="diff-table")
            if d.differences:
                summary = f"{len(d.differences)} key(s) differ" + (" (the same group)" if d.same_group else "")
            else:
                summary = "the same configuration (the same group)" if d.same_group else "no configuration key differs"
            yield Static(Text(summary + "; kni diff A B prints the same", style="dim"), id="diff-summary",
                         classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close (esc)", id="close")

    def action_close(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#close")
    def _close(self) -> None:
        self.dismiss(None)
