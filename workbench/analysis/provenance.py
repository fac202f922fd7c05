"""A stored run's provenance read back (:mod:`workbench.runs.provenance` records it), as
``kni show``, ``kni diff`` and ``kni report`` list it; :func:`differences` is what the seeds
of one group should agree on."""

from __future__ import annotations

import json
from typing import Any, Iterable

#: The keys a group's runs must agree on: a difference means its seeds ran other code or data.
CODE_KEYS = ("package_version", "git_commit", "dirty", "diff_sha256")
DATA_KEYS = ("data_key", "data_files")
#: Every key of :func:`read`, in the order they are listed.
KEYS = CODE_KEYS + ("python", "torch", "cuda", "cudnn", "numpy", "platform") + DATA_KEYS


def read(run: Any) -> dict:
    """The flat provenance of a stored run (None where unknown), for listing and comparing:
    package_version, git_commit, dirty, diff_sha256, python, torch, cuda, cudnn, numpy,
    platform, data_key, data_files (file -> sha256)."""
    try:
        stored = json.loads(run.provenance) if run.provenance else {}
    except ValueError:
        stored = {}
    stored = stored if isinstance(stored, dict) else {}
    code_part, env, data = (stored.get(k) if isinstance(stored.get(k), dict) else {}
                            for k in ("code", "environment", "data"))
    commit, dirty = run.git_commit, code_part.get("dirty")
    if commit and commit.endswith("+dirty"):          # rows queued before the digest was recorded
        commit, dirty = commit[:-len("+dirty")], True
    return {"package_version": run.package_version, "git_commit": commit, "dirty": dirty,
            "diff_sha256": code_part.get("diff_sha256"),
            **{k: env.get(k) for k in ("python", "torch", "cuda", "cudnn", "numpy", "platform")},
            "data_key": data.get("key"), "data_files": data.get("files")}


def listed(p: dict) -> dict[str, Any]:
    """:func:`read`'s facts one value per key, each data file as ``data_files.<name>``."""
    out = {k: p[k] for k in KEYS if k != "data_files"}
    for name, digest in (p["data_files"] or {}).items():
        out[f"data_files.{name}"] = digest
    return out


def describe_code(p: dict) -> str:
    """``kni-workbench 0.9.0, commit 1a2b3c4d5e6f (dirty, diff 9f8e7d6c5b4a)``."""
    commit = p["git_commit"]
    text = f"kni-workbench {p['package_version'] or '?'}, commit {commit[:12] if commit else '?'}"
    if p["dirty"]:
        text += f" (dirty, diff {p['diff_sha256'][:12]})" if p["diff_sha256"] else " (dirty)"
    elif p["dirty"] is False:
        text += " (clean)"
    return text


def describe_environment(p: dict) -> str | None:
    """``Python 3.11.7, torch 2.13.0, CUDA none, numpy 2.3.1``; None when not recorded."""
    if not p["python"]:
        return None
    cuda = p["cuda"] or "none"
    return (f"Python {p['python']}, torch {p['torch']}, CUDA {cuda}"
            + (f" (cuDNN {p['cudnn']})" if p["cudnn"] else "") + f", numpy {p['numpy']}")


def describe_data(p: dict) -> str | None:
    """``cache 6fa6dac5dfc0; kg_final.txt 1a2b3c4d5e6f, ratings_final.txt ...``; None when not recorded."""
    if not p["data_key"]:
        return None
    files = p["data_files"] or {}
    listed = ", ".join(f"{name} {digest[:12]}" for name, digest in files.items())
    return f"cache {p['data_key']}" + (f"; {listed}" if listed else " (generated data)")


def same_files(a: dict[str, str] | None, b: dict[str, str] | None) -> bool:
    """Whether two runs' records of source files can be the same data
    (:func:`kni_core.checkpoint.same_sources`: they agree on every file both name)."""
    from kni_core.checkpoint import same_sources
    return same_sources(a, b)


def differences(flat: Iterable[dict]) -> dict[str, list[str]]:
    """What the runs of one group disagree on, from their :func:`read` facts: ``{"code": [keys],
    "data": [keys]}``, an empty list where they agree (unknown values are not a disagreement).
    The data is compared by its source files (:func:`same_files`), as ``kni compare`` does, not
    by the prepared-data key: the key's recipe changes between versions of this code while the
    files, and so the rows, stay the same."""
    flat = list(flat)
    out = {"code": [k for k in CODE_KEYS
                    if len({json.dumps(p[k], sort_keys=True) for p in flat if p[k] is not None}) > 1]}
    files = [p["data_files"] for p in flat]
    out["data"] = ["data_files"] if any(not same_files(a, b) for i, a in enumerate(files)
                                        for b in files[i + 1:]) else []
    return out
