"""Help texts in the usual Unix shape: ``kni run [OPTIONS] RECIPE``, ``--seeds TEXT``, flags
without a type.

Recent typer releases print Python types instead (``{recipe}``, ``<str>``, ``<bool>`` after
every flag, ``<list[str]>``). :class:`KniCommand` and :class:`KniGroup` give each parameter
an explicit metavar (options: TEXT, INTEGER, PATH...; flags: none; arguments: their name in
capitals) and build the usage line from them. With typer versions that already print metavars
this way, nothing changes. They also reflow docstrings (:func:`unwrap`).
"""

from __future__ import annotations

import inspect
from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup

_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH", "file": "PATH",
          "directory": "DIR", "bool": "BOOLEAN", "int range": "INTEGER", "float range": "FLOAT"}


def _word(type_text: str) -> str:
    inner = type_text.strip("<>")
    if inner.startswith("list[") and inner.endswith("]"):
        inner = inner[5:-1]
    parts = [_WORDS.get(p.strip(), p.strip().upper()) for p in inner.split(",")]
    return " ".join(parts)


def tidy(param: Any, ctx: Any) -> None:
    """Give ``param`` a Unix-style metavar unless it has one (new-style typer only)."""
    if not hasattr(param, "display_type"):
        return
    if isinstance(param, TyperArgument):
        if param.metavar is None:
            param.metavar = param.name.upper()
        param.display_type_rich = lambda ctx: None        # the name says it; no <type> column
    elif param.metavar is not None:
        return
    elif getattr(param, "is_flag", False):
        param.metavar = ""
    else:
        param.metavar = _word(param.display_type(ctx))


def unwrap(text: str | None) -> str | None:
    """``text`` with one line per paragraph. Typer's rich help keeps a docstring's single line
    breaks in the command list and after the first paragraph, so a summary broke mid-sentence at
    the source's width; joined, it flows to the terminal's. A ``\\b`` paragraph keeps its lines."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split("\n")) for p in paragraphs)


def _usage(param: Any) -> list[str]:
    name = param.metavar or param.name.upper()
    more = "..." if param.nargs != 1 and "..." not in name else ""
    return [f"{name}{more}" if param.required else f"[{name}]{more}"]


class _Tidied:
    """Help texts unwrapped and every parameter tidied, for commands and groups alike."""

    def __init__(self, *args: Any, help: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, help=unwrap(help), **kwargs)

    def get_params(self, ctx: Any) -> list:
        params = super().get_params(ctx)
        for p in params:
            tidy(p, ctx)
        return params


class KniCommand(_Tidied, TyperCommand):
    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for p in self.get_params(ctx):
            pieces += _usage(p) if isinstance(p, TyperArgument) else p.get_usage_pieces(ctx)
        return pieces


class KniGroup(_Tidied, TyperGroup):
    pass


def typer_app(**kwargs: Any) -> Any:
    """A ``typer.Typer`` whose commands and groups use the classes above."""
    import typer

    class KniTyper(typer.Typer):
        def command(self, *args: Any, cls: Any = None, **kw: Any) -> Any:
            return super().command(*args, cls=cls or KniCommand, **kw)

    return KniTyper(cls=KniGroup, **kwargs)
