"""``kni tag | note | diff``: the user's own annotations on runs and groups, and config diffs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, List, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from kni_core.errors import KniError

from .common import JSON_HELP, db_option, err_console, fail, open_store, out

if TYPE_CHECKING:                                  # imported where used, so `kni --help` starts fast

    from ..store.repository import Store



GROUP_HELP = "The targets are groups (config-hash prefixes, as kni runs and kni compare show them), not runs."


def _run_ids(values: List[str]) -> list[int]:
    ids = []
    for v in values:
        try:
            ids.append(int(v))
        except ValueError:
            fail(f"run id: expected a whole number, got {v!r} (--group takes group ids)")
    return ids


def resolve_groups(store: Store, prefixes: List[str]) -> list[str]:
    """Full config hashes for group ids; StoreError for an unknown or ambiguous one."""
    from ..store.errors import StoreError
    found_all = []
    for prefix in prefixes:
        found = store.config_hashes(prefix.strip()) if prefix.strip() else []
        if not found:
            raise StoreError(f"no group whose config hash starts with {prefix!r} in {store.where} "
                             "(kni compare lists the groups)")
        if len(found) > 1:
            raise StoreError(f"group {prefix!r} is ambiguous: {', '.join(h[:12] for h in found[:6])}; "
                             "give more characters")
        found_all.append(found[0])
    return found_all


def _targets(store: Store, values: List[str], group: bool) -> tuple[list[str], list[str]]:
    """(stored targets, their names for messages)."""
    from ..store.errors import StoreError
    from ..store.records import group_target, run_target
    if group:
        hashes = resolve_groups(store, values)
        return [group_target(h) for h in hashes], [f"group {h[:8]}" for h in hashes]
    ids = _run_ids(values)
    missing = store.missing(ids)
    if missing:
        raise StoreError(f"no run with id {', '.join(map(str, missing))} in {store.where} (kni runs lists them)")
    return [run_target(i) for i in ids], [f"run {i}" for i in ids]


def tag_command(args: List[str] = typer.Argument(..., metavar="TARGET... TAG",
                                                 help="Run ids (or with --group group ids), then the tag."),
                group: bool = typer.Option(False, "--group", "-g", help=GROUP_HELP),
                remove: bool = typer.Option(False, "--remove", "-r", help="Remove the tag instead of adding it."),
                json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
                db: str = db_option()) -> None:
    """Tag runs or groups (kni tag 3 4 baseline; kni tag --group a117b907 paper); kni runs --tag filters."""
    from ..store.records import check_tag
    if len(args) < 2:
        fail("give one or more run ids (or --group ids) and then the tag, e.g. kni tag 3 4 baseline")
    *values, tag = args
    store = open_store(db, write=True)
    try:
        tag = check_tag(tag)
        if not remove and not group and tag.isdigit() and not store.missing([int(tag)]):
            raise KniError(f"tag {tag!r} is also a run id: kni tag takes the run ids, then the tag "
                           f"(kni tag {' '.join(args)} NAME); a tag of digits only is refused where a run has that id")
        targets, names = _targets(store, values, group)
        n = store.remove_tags(targets, [tag]) if remove else store.add_tags(targets, [tag])
    except KniError as e:
        fail(e)
    if json_out:
        print(json.dumps({"tag": tag, "targets": targets, "removed" if remove else "added": n}))
        return
    verb = "removed from" if remove else "added to"
    rest = "" if n == len(targets) else f" ({len(targets) - n} {'did not have' if remove else 'had'} it)"
    err_console().print(f"tag {escape(tag)} {verb} {n} of {', '.join(names)}{rest}", highlight=False, soft_wrap=True)


def note_command(target: str = typer.Argument(..., metavar="TARGET", help="A run id (or with --group a group id)."),
                 text: Optional[str] = typer.Argument(None, metavar="TEXT", help="The note; '' clears it; "
                                                      "without it, the current note is printed."),
                 group: bool = typer.Option(False, "--group", "-g", help=GROUP_HELP),
                 json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
                 db: str = db_option()) -> None:
    """Set, clear or print the note of a run or a group (kni note 3 "lr too high"; kni show prints it)."""
    store = open_store(db, write=True)
    try:
        targets, names = _targets(store, [target], group)
        if text is not None:
            store.set_note(targets[0], text)
        current = _current_note(store, targets[0])
    except KniError as e:
        fail(e)
    if json_out:
        print(json.dumps({"target": targets[0], "note": current}))
    elif text is None:
        out().print(escape(current) if current else f"[dim]{names[0]} has no note[/]", highlight=False)
    else:
        err_console().print(f"note of {names[0]} {'set' if current else 'cleared'}", highlight=False)


def _current_note(store: Store, target: str) -> str | None:
    if target.startswith("run:"):
        return store.get(int(target[4:])).note
    return store.group_notes().get(target)


def diff_command(run_a: int = typer.Argument(..., metavar="A", help="A run id."),
                 run_b: int = typer.Argument(..., metavar="B", help="Another run id."),
                 json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
                 db: str = db_option()) -> None:
    """The configuration keys whose values differ between two runs, with their recipe, seed and device."""
    from ..analysis.diff import config_diff, value_text
    store = open_store(db)
    try:
        a, b = store.get(run_a), store.get(run_b)
    except KniError as e:
        fail(e)
    d = config_diff(a, b)
    if json_out:
        print(json.dumps(d.to_dict(), indent=2))
        return
    table = Table(title=f"run {a.id} vs run {b.id}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("key", style="cyan")
    table.add_column(f"run {a.id}", overflow="fold")
    table.add_column(f"run {b.id}", overflow="fold")
    for k, x, y in d.always:
        table.add_row(k, escape(value_text(x)), escape(value_text(y)), style="" if x != y else "dim")
    table.add_section()
    for k, x, y in d.differences:
        table.add_row(k, escape(value_text(x)), escape(value_text(y)))
    console = out()
    console.print(table)
    if not d.differences:
        console.print("[dim]the configurations are the same (the same group)[/]" if d.same_group else
                      "[dim]no configuration key differs[/]", highlight=False)
    else:
        console.print(f"[dim]{len(d.differences)} key(s) differ" + (" (the same group)" if d.same_group else "")
                      + "[/]", highlight=False)
