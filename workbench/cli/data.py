"""``kni data list | info | download | prepare``: the datasets and their preprocessed caches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

import typer
from rich.markup import escape

from kni_core.errors import KniError

from .common import SET_HELP, consoles, fail, out

if TYPE_CHECKING:                                  # imported where used, so `kni --help` starts fast

    pass



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
    out().print(table)


def data_info(name: str = typer.Argument(..., help="Registry name, e.g. bc."),
              json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Measured statistics beside the published ones, the files expected and where to get them.

    A dataset that is not here is reported once (where it was looked for, the files expected and
    how to obtain them) with exit status 2."""
    from rich.table import Table

    from kni_core.config import DatasetConfig, RunConfig
    from kni_core.data import load_raw
    from kni_core.data.registry import spec
    console = consoles(json_out)
    try:
        s = spec(name)
        measured = load_raw(RunConfig(dataset=DatasetConfig(name=name))).summary()
    except KniError as error:
        fail(error)
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


def data_download(name: str = typer.Argument(..., help="Registry name with public files: bc or lastfm.")) -> None:
    """Download a dataset into the user data folder, verifying each file's sha256."""
    from rich.progress import DownloadColumn, Progress

    from kni_core.data.download import download
    console = consoles(False)
    with Progress(*Progress.get_default_columns(), DownloadColumn(), console=console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(filename: str, done: int, total: int) -> None:
            if filename not in tasks:
                tasks[filename] = bar.add_task(filename, total=total or None)
            bar.update(tasks[filename], completed=done)
        try:
            folder = download(name, progress=progress)
        except KniError as error:
            fail(error)
    console.print(f"{name}: files verified in {folder}")


def _located(name: str) -> Optional[Path]:
    from kni_core.data.registry import locate
    try:
        return locate(name)
    except KniError:
        return None


def data_prepare(name: str = typer.Argument(..., help="Registry name, e.g. bc."),
                 source: Optional[Path] = typer.Option(None, "--source",
                                                       help="Folder with the files; copied into the user cache."),
                 set_: List[str] = typer.Option([], "--set", help=SET_HELP),
                 force: bool = typer.Option(False, "--force", help="With --source: install files whose counts "
                                            "are far from the dataset's published ones (another dataset, or a "
                                            "subset) all the same."),
                 json_out: bool = typer.Option(False, "--json", help="Print JSON: the cache key, whether it was "
                                               "reused, and the prepared data's statistics.")) -> None:
    """Preprocess a dataset with the paper's settings and cache it (a second call reuses the cache).

    With --source, the folder is read and preprocessed completely first; only then does it replace
    the user's copy (in one swap), so bad data never overwrites a good copy."""
    from kni_core.data import prepare
    from kni_core.data.install import install
    from kni_core.data.registry import user_data_root

    from ..recipe import paper_recipe
    console = consoles(json_out)
    try:
        if source is not None:
            target = user_data_root() / name
            rec = paper_recipe(name, [f"dataset.path={target}", *set_], None)
            if rec.base.dataset.path != str(target):
                raise KniError(f"--source installs into {target}; drop --set dataset.path")
            prepared = install(source, rec.base, force=force)
            console.print(f"checked {source} and installed it as {target}")
            found = _located(name)
            if found is not None and found.resolve() != target.resolve():
                console.print(f"[yellow]note:[/] runs of {name} read {escape(str(found))}, which is found before "
                              "the user data folder (KNI_DATA_DIR, then ../shared/data); move or rename it to use "
                              "the installed copy", highlight=False)
        else:
            rec = paper_recipe(name, set_, None)
            prepared = prepare(rec.base)
    except KniError as error:
        fail(error)
    if json_out:
        print(json.dumps({"name": name, "key": prepared.key, "from_cache": prepared.from_cache,
                          "stats": prepared.stats}, default=str))
        return
    state = "reused the cache" if prepared.from_cache else "preprocessed and cached"
    console.print(f"{name}: {state} (key {prepared.key})")
    console.print(_stats_table(prepared.stats))
    for warning in prepared.stats.get("warnings", []):
        console.print(f"[yellow]warning:[/] {escape(str(warning))}", highlight=False)


def _stats_table(stats: dict) -> Any:
    """The prepared data's statistics, one per row (warnings are printed after it)."""
    from rich.table import Table
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="dim")
    table.add_column(justify="right")
    for key, value in stats.items():
        if key == "warnings":
            continue
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else \
            f"{value:.3g}" if isinstance(value, float) else str(value)
        table.add_row(key.replace("_", " "), escape(shown))
    return table
