"""``kni``: run recipes headless, benchmark, and manage datasets."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from kni_core.errors import KniError

from .cli_help import typer_app

if TYPE_CHECKING:                       # imported where used: `kni --help` starts fast (no YAML, no SQLAlchemy)
    from .recipe import Recipe

app = typer_app(help="KNI workbench: reproduce, extend and compare knowledge-graph recommenders.",
                no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
data_app = typer_app(help="List, inspect and prepare datasets.", no_args_is_help=True)
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


SEEDS_HELP = "Seeds to run, e.g. 1,2,3 or 1..5 (overrides the recipe's seeds)."
SET_HELP = "Override a recipe value, e.g. --set train.epochs=3 --set dataset.path=DIR (repeatable)."
DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N."


def _consoles(json_out: bool) -> Console:
    """Human output goes to stderr when stdout is reserved for JSON; a pipe or a file gets
    wide lines (Rich would otherwise wrap them at 80 columns)."""
    import logging

    from rich.logging import RichHandler
    console = Console(stderr=json_out)
    if not console.is_terminal:              # a pipe or a file: plain, unpadded log lines
        console = Console(stderr=json_out, width=max(console.width, 200))
        handler: logging.Handler = logging.StreamHandler(console.file)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    else:
        handler = RichHandler(console=console, show_time=False, show_path=False)
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True, handlers=[handler])
    return console


def _fail(console: Console, error: BaseException) -> None:
    """Report a user error on stderr (stdout may be reserved for JSON) and exit with 2."""
    Console(stderr=True).print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
    raise typer.Exit(2)


@app.command()
def run(recipe: Path = typer.Argument(..., help="Recipe YAML file, e.g. recipes/quickstart.yaml."),
        seeds: Optional[str] = typer.Option(None, "--seeds", help=SEEDS_HELP),
        set_: List[str] = typer.Option([], "--set", help=SET_HELP),
        device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
        json_out: bool = typer.Option(False, "--json", help="Print only JSON lines on stdout."),
        checkpoint_dir: Optional[Path] = typer.Option(None, "--checkpoint-dir",
                                                      help="Save each seed's best model here."),
        jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1,
                                           help="Seeds run in parallel processes (one GPU each when several are "
                                                "visible); default 1, with --executor ray every run at once."),
        db: str = typer.Option("runs.db", "--db", envvar="KNI_DB",
                               help="Run database: a SQLite file path or a SQLAlchemy URL, e.g. "
                                    "postgresql://user@host/db (env KNI_DB)."),
        executor: Optional[str] = typer.Option(None, "--executor",
                                               help="local: child processes on this machine (default); ray: each "
                                                    "run a Ray task (overrides the recipe's executor key)."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", envvar="RAY_ADDRESS",
                                                  help="With --executor ray: the cluster to use (env RAY_ADDRESS); "
                                                       "default a local Ray instance for this command."),
        ray_cpus: Optional[int] = typer.Option(None, "--ray-cpus", min=1,
                                               help="With --executor ray: CPUs (= threads) each run asks for; "
                                                    "default max(1, cores // jobs).")) -> None:
    """Train a recipe for each seed (in child processes, stored as runs), live, and close with a per-seed table.

    Every seed becomes a run in the database; seeds join the group of runs with the same configuration.
    """
    from .cli_runs import run_recipe
    run_recipe(recipe, seeds, set_, device, json_out, checkpoint_dir, jobs, db, executor=executor,
               ray_address=ray_address, ray_cpus=ray_cpus)


def _paper_config(name: str, overrides: list[str], device: Optional[str]) -> Recipe:
    from kni_core.data.registry import spec

    from .recipe import parse_recipe
    s = spec(name)
    lines = [f"name: {name}", "dataset:", f"  name: {name}"]
    for section, values in s.paper.items():
        lines.append(f"{section}:")
        lines += [f"  {k}: {json.dumps(v)}" for k, v in values.items()]
    return parse_recipe("\n".join(lines) + "\n", path=f"<paper settings of {name}>", overrides=overrides,
                        device=device)


@app.command()
def bench(dataset: str = typer.Option("bc", "--dataset", help="Registry dataset; the paper's settings are used."),
          recipe: Optional[Path] = typer.Option(None, "--recipe", help="Benchmark this recipe's settings instead."),
          set_: List[str] = typer.Option([], "--set", help=SET_HELP),
          device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
          repeats: int = typer.Option(3, "--repeats", min=1, help="Timed rounds (the median is reported)."),
          steps: Optional[int] = typer.Option(None, "--steps", min=1,
                                              help="Time N training steps and N evaluation batches and "
                                                   "extrapolate to an epoch, instead of full epochs."),
          json_out: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Time a training epoch and a full evaluation (valid + test, n_eval passes) after a warm-up.

    With --steps N: N training steps and N evaluation batches, per-step seconds and the epoch
    they extrapolate to (for data too large for full epochs, e.g. recipes/synthetic-ml20m.yaml).
    """
    from rich.table import Table

    from kni_core.bench import benchmark

    from .recipe import load_recipe
    console = _consoles(json_out)
    try:
        rec = load_recipe(recipe, overrides=set_, device=device) if recipe else _paper_config(dataset, set_, device)
        result = benchmark(rec.base, repeats=repeats, steps=steps)
    except KniError as error:
        _fail(console, error)
    if json_out:
        print(json.dumps(result))
        return
    table = Table(title=f"kni bench: {result['dataset']} on {result['device']}", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, str(value))
    console.print(table)


@data_app.command("list")
def data_list(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Known datasets and whether their files are found here."""
    from rich.table import Table

    from kni_core.data.registry import DATASETS, locate
    rows = []
    for name, s in DATASETS.items():
        try:
            where = "generated" if name == "synthetic" else str(locate(name))
        except KniError:
            where = None
        rows.append({"name": name, "title": s.title, "format": s.format, "found": where})
    if json_out:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="datasets", title_justify="left")
    for col in ("name", "title", "format", "found at"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["title"], r["format"], r["found"] or "[red]missing[/] (kni data info NAME)")
    Console().print(table)


@data_app.command("info")
def data_info(name: str = typer.Argument(..., help="Registry name, e.g. bc."),
              json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Measured statistics beside the published ones, the files expected and where to get them.

    A dataset that is not here is reported once (where it was looked for, the files expected and
    how to obtain them) with exit status 2."""
    from rich.table import Table

    from kni_core.config import DatasetConfig, RunConfig
    from kni_core.data import load_raw
    from kni_core.data.registry import spec
    console = _consoles(json_out)
    try:
        s = spec(name)
        measured = load_raw(RunConfig(dataset=DatasetConfig(name=name))).summary()
    except KniError as error:
        _fail(console, error)
    if json_out:
        print(json.dumps({"name": name, "title": s.title, "measured": measured, "published": s.published,
                          "published_source": s.published_source, "files": list(s.files), "obtain": s.obtain}))
        return
    table = Table(title=f"{name}: {s.title}", title_justify="left")
    table.add_column("statistic")
    table.add_column("measured", justify="right")
    table.add_column(f"published ({s.published_source or 'n/a'})", justify="right")
    for key in dict.fromkeys(list(measured) + list(s.published)):
        m, p = measured.get(key), s.published.get(key)
        style = "" if m is None or p is None or m == p else "yellow"
        table.add_row(key, f"{m:,}" if m is not None else "-", f"{p:,}" if p is not None else "-", style=style)
    console.print(table)
    console.print(f"files: {', '.join(s.files) or '-'}\nobtain: {s.obtain}")
    if s.checksums:
        from kni_core.data.download import verify
        from kni_core.data.registry import locate
        checks = {f: state for f, state in verify(locate(name), s.checksums).items() if state != "absent"}
        console.print("sha256: " + ", ".join(f"{f} [{'green' if v == 'ok' else 'red'}]{v}[/]"
                                             for f, v in checks.items()))


@data_app.command("download")
def data_download(name: str = typer.Argument(..., help="Registry name with public files: bc or lastfm.")) -> None:
    """Download a dataset into the user data folder, verifying each file's sha256."""
    from rich.progress import DownloadColumn, Progress
    from kni_core.data.download import download
    console = _consoles(False)
    with Progress(*Progress.get_default_columns(), DownloadColumn(), console=console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(filename: str, done: int, total: int) -> None:
            if filename not in tasks:
                tasks[filename] = bar.add_task(filename, total=total or None)
            bar.update(tasks[filename], completed=done)
        try:
            folder = download(name, progress=progress)
        except KniError as error:
            _fail(console, error)
    console.print(f"{name}: files verified in {folder}")


def _located(name: str) -> Optional[Path]:
    from kni_core.data.registry import locate
    try:
        return locate(name)
    except KniError:
        return None


@data_app.command("prepare")
def data_prepare(name: str = typer.Argument(..., help="Registry name, e.g. bc."),
                 source: Optional[Path] = typer.Option(None, "--source",
                                                       help="Folder with the files; copied into the user cache."),
                 set_: List[str] = typer.Option([], "--set", help=SET_HELP)) -> None:
    """Preprocess a dataset with the paper's settings and cache it (a second call reuses the cache).

    With --source, the folder is read and preprocessed completely first; only then does it replace
    the user's copy (in one swap), so bad data never overwrites a good copy."""
    from kni_core.config import DatasetConfig
    from kni_core.data import prepare
    from kni_core.data.install import install
    from kni_core.data.registry import user_data_root
    console = _consoles(False)
    try:
        if source is not None:
            target = user_data_root() / name
            rec = _paper_config(name, [f"dataset.path={target}", *set_], None)
            if rec.base.dataset.path != str(target):
                raise KniError(f"--source installs into {target}; drop --set dataset.path")
            prepared = install(source, rec.base)
            console.print(f"checked {source} and installed it as {target}")
            found = _located(name)
            if found is not None and found.resolve() != target.resolve():
                console.print(f"[yellow]note:[/] runs of {name} read {escape(str(found))}, which is found before "
                              "the user data folder (KNI_DATA_DIR, then ../shared/data); move or rename it to use "
                              "the installed copy", highlight=False)
        else:
            rec = _paper_config(name, set_, None)
            prepared = prepare(rec.base)
    except KniError as error:
        _fail(console, error)
    state = "reused the cache" if prepared.from_cache else "preprocessed and cached"
    console.print(f"{name}: {state} (key {prepared.key})")
    console.print(prepared.stats)


from . import cli_runs  # noqa: E402,F401


def main() -> None:
    try:
        app()
    except KniError as error:                 # anything not already caught per command
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(error))}")
        sys.exit(2)


if __name__ == "__main__":
    from workbench.cli import main as _main   # the importable module, where cli_runs registers its commands
    _main()
