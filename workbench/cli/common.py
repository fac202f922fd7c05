"""What every ``kni`` command shares: its consoles, one way to fail, opening the store, the
common options and their help texts.

Errors print one line on stderr and exit with status 2 without touching the stored runs;
``--json`` output goes to stdout, human output to stderr when stdout is reserved for JSON.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, List, NoReturn, Optional

import typer
from rich.console import Console, ConsoleOptions, RenderableType, RenderHook, RenderResult
from rich.markup import escape
from rich.segment import Segment
from rich.text import Text

from ..present import status_style, visible
from ..store.statuses import STATUSES

if TYPE_CHECKING:                               # imported where used, so `kni --help` starts fast
    from ..store.repository import Store

DB_HELP = "Run database: a SQLite file path or a SQLAlchemy URL (env KNI_DB)."
JSON_HELP = "Print machine-readable JSON on stdout."
SEEDS_HELP = "Seeds to run, e.g. 1,2,3 or 1..5 (overrides the recipe's seeds)."
SET_HELP = "Override a recipe value, e.g. --set train.epochs=3 --set dataset.path=DIR (repeatable)."
DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N."


def db_option() -> Any:
    return typer.Option("runs.db", "--db", envvar="KNI_DB", help=DB_HELP, show_default=True, callback=_db_given)


def _db_given(value: str) -> str:
    """An empty ``--db`` (``--db "$UNSET"``) is a mistake to say, not runs.db to write."""
    if not str(value).strip():
        raise typer.BadParameter("empty; give a database file or URL (without --db and KNI_DB: runs.db)")
    return value


def device_missing(device: str) -> str | None:
    """Why this machine cannot run on ``device`` (``cuda`` without CUDA, ``cuda:3`` with two
    GPUs), else None: checked before runs are queued, which would only fail."""
    from kni_core.train import resolve_device
    try:
        resolve_device(device)
    except (RuntimeError, ValueError) as e:
        return str(e).splitlines()[0]
    return None


def hide_password(arg: str) -> str:
    """A command-line word with the password of a database URL in it (``--db URL``, ``--db=URL``,
    or KNI_DB's value written out) as ``***``: the command is recorded in index.html and
    report.json, which are made to be shared."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    head, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        return arg
    return head + eq + url.render_as_string(hide_password=True) if url.password is not None else arg


def follow_up(db: str, *commands: list[str]) -> str:
    """The commands to type next, as one line: each shell-quoted (a recipe named ``my run``), with
    this command's ``--db`` when they would not open it by themselves (KNI_DB, else runs.db); a
    password in it shows as ``***``."""
    import os
    import shlex

    extra = [] if db == (os.environ.get("KNI_DB") or "runs.db") else ["--db", hide_password(db)]
    return " | ".join(shlex.join([*c, *extra]) for c in commands)


class _Visible:
    """A renderable drawn as ``inner`` is, with every control character of its text made
    visible. Rich's own styles and cursor moves travel apart from the text (as styles and
    control segments), so whatever control character is left in the text came from the data."""

    def __init__(self, inner: RenderableType):
        self.inner = inner

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for segment in console.render(self.inner, options):
            yield segment if segment.control else Segment(visible(segment.text), segment.style)


class _ShowControlsVisible(RenderHook):
    def process_renderables(self, renderables: list[RenderableType]) -> list[RenderableType]:
        return [_Visible(r) for r in renderables]


class _VisibleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return visible(super().format(record))


class _ConsoleHandler(logging.StreamHandler):
    """Writes to the console's stream, and to stderr once that stream is closed (a command run
    inside another program, e.g. a test runner's capture, ends before the process does)."""

    def __init__(self, shown: Console):
        self._file = shown.file
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr if getattr(self._file, "closed", False) else self._file

    @stream.setter
    def stream(self, _value) -> None:
        pass


def console(stderr: bool = False, **kwargs: Any) -> Console:
    """A console through which no stored text (a note, a name, an error) reaches the terminal
    with a control character in it: one path for every command's output. No emoji codes either:
    ``FILE:100: ...`` would print the 100 emoji in place of the line number."""
    made = Console(stderr=stderr, emoji=False, **kwargs)
    made.push_render_hook(_ShowControlsVisible())
    return made


def consoles(json_out: bool) -> Console:
    """The console of a command that logs: human output goes to stderr when stdout is reserved
    for JSON, and a pipe or a file gets wide lines (Rich would otherwise wrap them at 80 columns)."""
    from rich.logging import RichHandler
    shown = console(stderr=json_out)
    if not shown.is_terminal:                # a pipe or a file: plain, unpadded log lines
        shown = console(stderr=json_out, width=max(shown.width, 200))
        handler: logging.Handler = _ConsoleHandler(shown)
        handler.setFormatter(_VisibleFormatter("%(levelname)s %(message)s"))
    else:
        handler = RichHandler(console=shown, show_time=False, show_path=False)
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True, handlers=[handler])
    return shown


def out() -> Console:
    """stdout; when it is not a terminal (a pipe, a file) tables are not squeezed to 80 columns."""
    shown = console()
    return shown if shown.is_terminal else console(width=200)


def err_console() -> Console:
    return console(stderr=True)


def fail(error: BaseException | str, code: int = 2) -> NoReturn:
    """Report a user error on stderr (stdout may be reserved for JSON) and exit with ``code``."""
    err_console().print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def open_store(db: str, write: bool = False) -> Store:
    """The store, read-only unless ``write``, closed when the command ends; an error exits with
    status 2."""
    from kni_core.errors import KniError

    from ..store.repository import Store
    try:
        return closed_at_the_end(Store.open(db, create=False, readonly=not write))
    except KniError as e:
        fail(e)


def closed_at_the_end(store: Store) -> Store:
    """Close ``store`` when the command ends: a command run in-process (a test, a script calling
    the app) otherwise leaves its connections open until the garbage collector finds them. (The
    "database disk image is malformed" once blamed on such a leak came from
    :func:`~workbench.store.engine.has_sqlite_header`'s former ``open()``.)"""
    import click
    context = click.get_current_context(silent=True)
    if context is not None:
        context.call_on_close(store.close)
    return store


def now() -> datetime:
    return datetime.now(timezone.utc)


def status_text(status: str) -> Text:
    return Text(status, style=status_style(status))


def check_statuses(values: Optional[List[str]]) -> list[str]:
    """``--status`` values (repeatable, comma-separated), each one of the statuses."""
    out_: list[str] = []
    for v in values or []:
        for part in v.split(","):
            part = part.strip().lower()
            if part not in STATUSES:
                fail(f"--status: expected one of {', '.join(STATUSES)}; got {part!r}")
            out_.append(part)
    return out_
