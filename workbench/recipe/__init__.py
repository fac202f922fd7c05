"""YAML recipes: one file names a dataset, the model / training / evaluation settings and seeds.

:func:`load_recipe` turns a file into a validated :class:`Recipe`. Every mistake is reported as a
:class:`RecipeError` naming the file, the 1-based line and the dotted key at fault, e.g.::

    recipes/bc.yaml:12: model.temprature: unknown key; did you mean 'temperature'?

all the mistakes of a recipe at once, one line each, in file order (then the command-line
overrides: ``--set SECTION.KEY=VALUE``, ``--seeds``, ``--device``, whose errors name the
override). Only an unreadable file (invalid YAML, not a mapping) stops at its first problem.
The format is in docs/recipes.md and docs/sweeps.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from .builder import TOP_KEYS, Builder
from .errors import RecipeError
from .recipe import EXECUTORS, Recipe
from .seeds import MAX_SEEDS, parse_seeds

#: The largest recipe file read (the shipped ones are under 2 KB).
MAX_RECIPE_BYTES = 1 << 20

__all__ = ["Recipe", "RecipeError", "find_recipes", "load_recipe", "parse_recipe", "parse_seeds", "read_recipe_text",
           "TOP_KEYS", "MAX_SEEDS", "EXECUTORS", "paper_recipe"]


def find_recipes(folder: str | Path) -> list[Path]:
    """The ``*.yaml`` / ``*.yml`` files directly in ``folder``, sorted by name (dot-files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RecipeError("not a folder", path=folder)
    return sorted((p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in (".yaml", ".yml")),
                  key=lambda p: p.name)


def load_recipe(path: str | Path, overrides: Iterable[str] = (), seeds: str | list[int] | None = None,
                device: str | None = None) -> Recipe:
    """Read and validate the recipe at ``path``; see :func:`parse_recipe` for the arguments."""
    return parse_recipe(read_recipe_text(path), str(path), overrides=overrides, seeds=seeds, device=device)


def read_recipe_text(path: str | Path) -> str:
    """The text of a recipe (or suite) file, with a clear error for what cannot be one."""
    try:
        size = Path(path).stat().st_size
        if size > MAX_RECIPE_BYTES:
            raise RecipeError(f"{size:,} bytes: a recipe is at most {MAX_RECIPE_BYTES:,} bytes (is this a recipe?)",
                              path=path)
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RecipeError("no such file", path=path) from None
    except IsADirectoryError:
        raise RecipeError("is a folder, expected a recipe file", path=path) from None
    except UnicodeDecodeError as e:
        raise RecipeError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=path) from None
    except OSError as e:
        raise RecipeError(f"cannot read: {e.strerror or e}", path=path) from None
    return text


def parse_recipe(text: str, path: str = "<string>", overrides: Iterable[str] = (),
                 seeds: str | list[int] | None = None, device: str | None = None) -> Recipe:
    """Validate recipe ``text`` (read from ``path``, used in messages).

    ``overrides`` are ``SECTION.KEY=VALUE`` strings (or ``name=``/``description=``/``seeds=``/
    ``device=``) applied in order after the file; ``seeds`` (a spec for :func:`parse_seeds` or a
    list) and ``device`` replace the file's values. Raises :class:`RecipeError`.
    """
    builder = Builder(path)
    builder.read_text(text)
    if isinstance(overrides, str):
        overrides = [overrides]
    for item in overrides:
        builder.apply_override(item)
    if seeds is not None:
        builder.set_seeds_argument(seeds)
    if device is not None:
        builder.set_scalar("device", device, origin=f"--device {device}")
    return builder.build(text)


def paper_recipe(name: str, overrides: Iterable[str] = (), device: str | None = None) -> Recipe:
    """The recipe of a registry dataset with the paper's settings for it (``kni bench``, ``kni data prepare``)."""
    from kni_core.data.registry import spec
    lines = [f"name: {name}", "dataset:", f"  name: {name}"]
    for section, values in spec(name).paper.items():
        lines.append(f"{section}:")
        lines += [f"  {k}: {json.dumps(v)}" for k, v in values.items()]
    return parse_recipe("\n".join(lines) + "\n", path=f"<paper settings of {name}>", overrides=overrides,
                        device=device)
