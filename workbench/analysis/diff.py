"""The configuration difference between two runs (``kni diff A B`` and the TUI's diff view).

Both resolved configs are flattened to ``section.key`` paths; the result lists the keys whose
values differ (a key only one of them has shows as absent), and always the run-level facts a
reader needs to interpret any difference: recipe, seed and the device the run used. Provenance
(package version, git commit, working tree, Python / torch / CUDA versions, data digests:
:mod:`.provenance`) is listed where it differs and both runs recorded it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .provenance import listed, read

#: Shown whether or not they differ.
ALWAYS = ("recipe", "seed", "device")


class Absent:
    """A key the other run's config lacks (an older or newer layout)."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT = Absent()


@dataclass
class ConfigDiff:
    a: int
    b: int
    always: list[tuple[str, Any, Any]] = field(default_factory=list)
    differences: list[tuple[str, Any, Any]] = field(default_factory=list)
    same_group: bool = False

    def to_dict(self) -> dict:
        def row(k: str, x: Any, y: Any) -> dict:
            return {"key": k, "a": None if x is ABSENT else x, "b": None if y is ABSENT else y,
                    "absent": [s for s, v in (("a", x), ("b", y)) if v is ABSENT]}
        return {"a": self.a, "b": self.b, "same_group": self.same_group,
                "always": [row(*r) for r in self.always], "differences": [row(*r) for r in self.differences]}


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"model": {"hidden": 128}}`` -> ``{"model.hidden": 128}`` (lists and empty dicts are values)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(a: Any, b: Any) -> ConfigDiff:
    """The difference between two stored runs (:class:`~workbench.store.Run` rows)."""
    fa, fb = flatten(_config(a)), flatten(_config(b))
    for key in ("seed", "device"):            # shown once, from the run rows
        fa.pop(key, None)
        fb.pop(key, None)
    out = ConfigDiff(a.id, b.id, same_group=a.config_hash == b.config_hash)
    out.always = [(k, getattr(a, k), getattr(b, k)) for k in ALWAYS]
    keys = list(fa) + [k for k in fb if k not in fa]
    out.differences = [(k, fa.get(k, ABSENT), fb.get(k, ABSENT)) for k in sorted(keys, key=_order)
                       if fa.get(k, ABSENT) != fb.get(k, ABSENT)]
    pa, pb = listed(read(a)), listed(read(b))
    keys = list(pa) + [k for k in pb if k not in pa]
    # a fact only one run recorded (a row from before it was) is no difference, but the code is
    out.differences += [(k, pa.get(k), pb.get(k)) for k in keys if pa.get(k) != pb.get(k)
                        and (k in ("package_version", "git_commit") or None not in (pa.get(k), pb.get(k)))]
    return out


def value_text(v: Any) -> str:
    """A value as YAML-ish text (``true``, ``[1, 4]``, ``null``), or ``(absent)``."""
    if v is ABSENT:
        return "(absent)"
    if isinstance(v, str):
        return v
    return json.dumps(v)


_SECTIONS = ("name", "dataset", "model", "train", "eval")


def _order(key: str) -> tuple:
    head = key.split(".", 1)[0]
    return (_SECTIONS.index(head) if head in _SECTIONS else len(_SECTIONS), key)


def _config(run: Any) -> dict:
    try:
        cfg = json.loads(run.config_json)
    except (TypeError, ValueError):
        return {}
    return cfg if isinstance(cfg, dict) else {}
