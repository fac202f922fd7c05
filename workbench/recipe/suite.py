"""A suite: one file that names several recipes to run one after another (``recipes/bc-all.yaml``
runs every model on bc).

Each model keeps its own recipe, with its authors' settings; a sweep over ``model.name`` cannot
say that (a KNI key means nothing to MF). A suite is only a list::

    name: bc-all
    description: every model on Book-Crossing, the floors first
    suite: [bc-pop.yaml, bc-itemknn.yaml, bc.yaml, bc-ni.yaml, bc-mf.yaml]   # beside this file
    seeds: 1..5        # optional: replaces each recipe's seeds (as --seeds does)

Every recipe of the list is read and validated before the first one runs, so a mistake in the
fifth is reported before four runs have taken an hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import RecipeError
from .recipe import Recipe
from .yaml_nodes import line_of, node_kind, suggest, too_big, yaml_error_text

SUITE_KEYS = ("name", "description", "suite", "seeds")


@dataclass(frozen=True)
class Suite:
    name: str
    path: str
    description: str | None
    recipes: tuple[Path, ...]
    seeds: str | None


def is_suite(text: str) -> bool:
    """Whether recipe text is a suite: a line starting with the top-level key ``suite:``."""
    return any(line.startswith("suite:") for line in text.splitlines())


def read_suite(text: str, path: str | Path) -> Suite:
    """The suite in ``text`` (read from ``path``; its recipes are relative to its folder)."""
    path = str(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        line, problem = yaml_error_text(e)
        raise RecipeError(f"invalid YAML: {problem}", path=path, line=line) from None
    if not isinstance(root, yaml.MappingNode):
        raise RecipeError(f"expected a mapping with {', '.join(SUITE_KEYS)}, got "
                          f"{node_kind(root) if root is not None else 'nothing'}", path=path)
    values: dict[str, yaml.Node] = {}
    for key_node, value_node in root.value:
        key = str(key_node.value)
        problem = too_big(value_node)
        if problem:
            raise RecipeError(problem, path=path, line=line_of(key_node), key=key)
        if key not in SUITE_KEYS:
            raise RecipeError(f"unknown key in a suite; {suggest(key, SUITE_KEYS)} (a suite only lists "
                              "recipes; their settings live in their files)", path=path, line=line_of(key_node),
                              key=key)
        values[key] = value_node
    for key in ("name", "description", "seeds"):
        node = values.get(key)
        if node is not None and not isinstance(node, yaml.ScalarNode):
            raise RecipeError(f"expected a single value, got {node_kind(node)}", path=path, line=line_of(node),
                              key=key)
    items = values["suite"]
    if not isinstance(items, yaml.SequenceNode) or not items.value:
        raise RecipeError(f"expected a non-empty list of recipe files, got {node_kind(items, empty=True)}",
                          path=path, line=line_of(items), key="suite")
    folder = Path(path).parent
    recipes = []
    for item in items.value:
        if not isinstance(item, yaml.ScalarNode) or not str(item.value).strip():
            raise RecipeError(f"expected a recipe file name, got {node_kind(item, empty=True)}", path=path,
                              line=line_of(item), key="suite")
        file = folder / str(item.value)
        if not file.is_file():
            raise RecipeError(f"{item.value}: no such recipe beside the suite ({folder / item.value})", path=path,
                              line=line_of(item), key="suite")
        if file.resolve() == Path(path).resolve():
            raise RecipeError(f"{item.value}: a suite cannot list itself", path=path, line=line_of(item),
                              key="suite")
        recipes.append(file)
    name = values.get("name")
    if name is not None and not str(name.value).isprintable():
        raise RecipeError("expected one line of printable characters (a name shown in every listing)", path=path,
                          line=line_of(name), key="name")
    description = values.get("description")
    seeds = values.get("seeds")
    return Suite(name=str(name.value) if name is not None else Path(path).stem, path=path,
                 description=str(description.value) if description is not None else None,
                 recipes=tuple(recipes), seeds=str(seeds.value) if seeds is not None else None)


def load_suite(path: str | Path, text: str, overrides=(), seeds: str | None = None,
               device: str | None = None) -> tuple[Suite, list[Recipe]]:
    """The suite in ``text`` and each of its recipes validated (``seeds`` replaces the suite's,
    which replace each recipe's); every recipe that cannot run is reported at once."""
    from . import load_recipe
    suite = read_suite(text, path)
    recipes, problems = [], []
    for file in suite.recipes:
        try:
            recipe = load_recipe(file, overrides=overrides, seeds=seeds or suite.seeds, device=device)
        except RecipeError as e:
            problems.append(str(e))
            continue
        if recipe.sweep is not None:
            problems.append(f"{file}: a sweep; a suite lists plain recipes (run a sweep on its own)")
        recipes.append(recipe)
    if problems:
        raise RecipeError(f"{len(problems)} of its {len(suite.recipes)} recipes cannot run:\n" + "\n".join(problems),
                          path=path)
    return suite, recipes
