"""The Explain screen (``x`` on a run): look inside a finished run's saved model.

A (user, item) pair - prefilled with a test positive - explained as ``kni explain`` does:
the probability, the neighbour-pair heatmap of one sampled neighbourhood, the top pairs;
``r`` draws another neighbourhood. ``m`` lists the typed user's top items (``kni recommend``).
The model loads in a thread (torch and the checkpoint take seconds), and nothing here writes
the run database: it reads the run's row and its checkpoint file.
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Group
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Static

from kni_core.errors import KniError

from ..keys import ESSENTIAL

#: Items listed by ``m``.
RECOMMEND_K = 20


def plain_text(renderable: Any, width: int) -> str:
    from rich.console import Console
    console = Console(width=width, record=True, file=open(os.devnull, "w"), color_system=None)
    console.print(renderable)
    return console.export_text()


class ExplainScreen(Screen):
    AUTO_FOCUS = "#explain-scroll"           # keys act at once; Tab reaches the inputs
    BINDINGS = [
        *ESSENTIAL,
        Binding("escape", "back", "Back"),
        Binding("r", "resample", "Resample"),
        Binding("m", "recommend", "Recommend"),
        Binding("e", "explain", "Explain"),
    ]

    def __init__(self, run_id: int):
        super().__init__(id=f"explain-{run_id}")
        self.run_id = run_id
        self.opened: Any = None
        self.seed = 0
        self._submitted = False                 # an id was typed and entered: its answer is awaited
        #: The view's text as shown (plain), for tests and screen readers of the terminal.
        self.shown = ""

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="explain-inputs"):
            yield Label("user", classes="explain-label")
            yield Input(placeholder="user id", type="integer", id="explain-user")
            yield Label("item", classes="explain-label")
            yield Input(placeholder="item id", type="integer", id="explain-item")
        with VerticalScroll(id="explain-scroll"):
            yield Static(Text(f"run {self.run_id}: loading its saved model...", style="dim"), id="explain-view")
        yield Footer()

    def on_mount(self) -> None:
        self.load()

    # -- work in a thread: loading and computing are seconds of CPU ---------------------------
    @work(thread=True, exclusive=True, group="explain")
    def load(self) -> None:
        from ...services.explain import open_run
        try:
            opened = open_run(self.app.data.store, self.run_id)
            user, item = opened.default_pair()
        except (KniError, OSError) as e:
            self.app.call_from_thread(self._show, Text(str(e), style="bold red"))
            return
        self.app.call_from_thread(self._loaded, opened, user, item)

    def _loaded(self, opened: Any, user: int, item: int) -> None:
        self.opened = opened
        self.query_one("#explain-user", Input).value = str(opened.file_id(user))
        self.query_one("#explain-item", Input).value = str(opened.file_id(item))
        if opened.explainable:
            self.action_explain()
        else:
            self._show(Text(f"{opened.label}\nexplain reads KNI's neighbour-pair attention (KNI and NI runs "
                            f"only); m lists the user's top items", style="yellow"))

    def _show(self, renderable: Any, failed: bool = False) -> None:
        self.query_one("#explain-view", Static).update(renderable)
        self.shown = plain_text(renderable, max(40, self.size.width - 4))
        if self._submitted and not failed:      # the answer to an id typed: scroll it with the arrows
            self.query_one("#explain-scroll", VerticalScroll).focus()
        self._submitted = False                 # after a wrong id the cursor stays in its field

    def _ids(self) -> tuple[int, int | None] | None:
        try:
            user = int(self.query_one("#explain-user", Input).value)
        except ValueError:
            self.app.notify("type a user id", severity="warning")
            return None
        raw_item = self.query_one("#explain-item", Input).value
        return user, int(raw_item) if raw_item.strip().lstrip("-").isdigit() else None

    @work(thread=True, exclusive=True, group="explain")
    def _explain(self, user: int, item: int | None, seed: int, compact: bool) -> None:
        from kni_core.explain import explain

        from ...views.explain import explanation_view
        o = self.opened
        try:
            u, v = (o.user_entity(user), o.item_entity(item)) if item is not None else o.default_pair(user)
            e = explain(o.model, o.data, u, v, n_eval=o.cfg.eval.n_eval, seed=seed, namer=o.namer)
            view: Any = explanation_view(o, e, compact=compact)
        except KniError as err:
            self.app.call_from_thread(self._show, Text(str(err), style="bold red"), True)
            return
        self.app.call_from_thread(self._show, view)

    @work(thread=True, exclusive=True, group="explain")
    def _recommend(self, user: int) -> None:
        from kni_core.recommend import recommend

        from ...views.explain import recommendation_table
        o = self.opened
        try:
            rec = recommend(o.model, o.data, o.user_entity(user), RECOMMEND_K,
                            n_eval=o.cfg.eval.topk.n_eval or o.cfg.eval.n_eval, seed=self.seed)
            view: Any = Group(Text(o.label, style="dim"), recommendation_table(o, rec))
        except KniError as err:
            self.app.call_from_thread(self._show, Text(str(err), style="bold red"), True)
            return
        self.app.call_from_thread(self._show, view)

    # -- actions --------------------------------------------------------------------------------
    def _ready(self) -> bool:
        if self.opened is None:
            self.app.notify("the run's model is not loaded", severity="warning")
            return False
        return True

    def action_explain(self) -> None:
        if not self._ready():
            return
        if not self.opened.explainable:
            self.app.notify("explain is for KNI and NI runs; m recommends", severity="warning")
            return
        ids = self._ids()
        if ids is None:
            return
        self.query_one("#explain-view", Static).update(Text("computing...", style="dim"))
        self._explain(ids[0], ids[1], self.seed, compact=self.size.width < 110)

    def action_resample(self) -> None:
        self.seed += 1
        self.action_explain()

    def action_recommend(self) -> None:
        if not self._ready():
            return
        ids = self._ids()
        if ids is None:
            return
        self.query_one("#explain-view", Static).update(Text("scoring every candidate item...", style="dim"))
        self._recommend(ids[0])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._submitted = True                  # where the focus goes is decided by the answer (_show)
        self.action_explain()

    def action_back(self) -> None:
        self.app.pop_screen()
