"""``kni``: run recipes headless, watch and compare stored runs, benchmark, manage datasets.

The commands live one family per module; this module composes them, in the order ``kni --help``
lists them. Module-level imports stay light (Typer and Rich): each command imports what it
needs when it runs, so ``kni --help`` starts in a fraction of a second.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from kni_core.errors import KniError

from . import annotate, compare, data, explain, report, resume, run, runs, sweeps
from .common import err_console
from .help import typer_app

app = typer_app(help="KNI workbench: reproduce, extend and compare knowledge-graph recommenders.",
                no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

COMMANDS = (("run", run.run_command), ("resume", resume.resume_command), ("bench", run.bench_command),
            ("runs", runs.runs_command),
            ("show", runs.show_command), ("compare", compare.compare_command), ("export", compare.export_command),
            ("report", report.report_command),
            ("rm", runs.rm_command), ("cancel", runs.cancel_command), ("tag", annotate.tag_command),
            ("note", annotate.note_command), ("diff", annotate.diff_command), ("sweeps", sweeps.sweeps_command),
            ("explain", explain.explain_command), ("recommend", explain.recommend_command))
for _name, _command in COMMANDS:
    app.command(_name)(_command)

data_app = typer_app(help="List, inspect and prepare datasets.", no_args_is_help=True)
for _name, _command in (("list", data.data_list), ("info", data.data_info), ("download", data.data_download),
                        ("prepare", data.data_prepare)):
    data_app.command(_name)(_command)
app.add_typer(data_app, name="data")


def package_version() -> str:
    """The installed version of kni-workbench (the source's when not installed)."""
    try:
        from importlib.metadata import PackageNotFoundError, version
        return version("kni-workbench")
    except (ImportError, PackageNotFoundError):
        from kni_core import __version__
        return __version__


def _version(value: bool) -> None:
    if value:
        print(f"kni-workbench {package_version()}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """KNI workbench: reproduce, extend and compare knowledge-graph recommenders."""


def main() -> None:
    try:
        app()
    except KniError as error:                 # anything not already caught per command
        err_console().print(f"[bold red]error:[/] {escape(str(error))}")
        sys.exit(2)
