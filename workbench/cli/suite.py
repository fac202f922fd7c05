"""``kni run SUITE``: the recipes a suite lists (:mod:`workbench.recipe.suite`), one after
another, each as ``kni run`` runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.markup import escape

from kni_core.errors import KniError

from .common import consoles, err_console, fail


def run_suite(path: Path, text: str, seeds: Optional[str], set_: List[str], device: Optional[str], json_out: bool,
              run_one: Callable[..., None]) -> None:
    """Validate every recipe of the suite first, then run each with ``run_one`` (``kni run``'s
    body); a recipe whose runs fail does not stop the next, Ctrl-C stops the suite."""
    from ..recipe.suite import load_suite
    console = consoles(json_out)
    try:
        suite, _ = load_suite(path, text, overrides=set_, seeds=seeds, device=device)
    except KniError as e:
        fail(f"{e}\nnothing was run")
    ends: list[dict] = []
    for n, recipe in enumerate(suite.recipes, 1):
        if not json_out:
            console.rule(f"suite {escape(suite.name)}: {n}/{len(suite.recipes)} {escape(recipe.name)}")
        code = 0
        try:
            run_one(recipe, seeds or suite.seeds)
        except typer.Exit as e:
            code = e.exit_code
        ends.append({"recipe": str(recipe), "exit": code})
        if code == 130:
            err_console().print(f"[yellow]suite {escape(suite.name)} stopped after {recipe.name}; not run: "
                                f"{', '.join(r.name for r in suite.recipes[n:]) or 'nothing'}[/]", highlight=False)
            raise typer.Exit(130)
    failed = [e["recipe"] for e in ends if e["exit"]]
    if json_out:
        print(json.dumps({"event": "suite", "name": suite.name, "recipes": ends}))
    else:
        console.print(f"suite {escape(suite.name)}: {len(ends) - len(failed)} of {len(ends)} recipes ran every run "
                      f"to completion" + (f"; with failures: {', '.join(Path(f).name for f in failed)}"
                                          if failed else ""), highlight=False)
        console.print("[dim]kni compare --all --matrix  (each model against the popularity floor)[/]",
                      highlight=False)
    if failed:
        raise typer.Exit(1)
