"""Comparisons of stored runs: selection, groups over seeds, statistics, the matrix, paired
tests, CSV rows, sweep rankings and config diffs (docs/export.md has the rules and columns).

The names below are the package's interface. Each is imported from its module on first use
(PEP 562), so a view that only needs a group id or a config diff does not load NumPy.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module that defines it.
_HOME = {
    **dict.fromkeys(('ConfigDiff', 'config_diff', 'value_text'), "diff"),
    **dict.fromkeys(('GROUP_COLUMNS', 'RUN_COLUMNS', 'csv_text', 'export_table', 'group_rows', 'json_value',
                     'run_rows', 'write_csv'), "export"),
    **dict.fromkeys(('FLOOR_METRICS', 'floors_for', 'floor_value', 'group_floor', 'vs_floor', 'below_floor',
                     'run_floor_key'), "floors"),
    **dict.fromkeys(('Group', 'counted_run', 'differing', 'group_key', 'group_points', 'resolve_group'), "groups"),
    **dict.fromkeys(('Matrix', 'matrix'), "dataset_by_model"),
    **dict.fromkeys(('METRICS', 'DEFAULT_STATUSES', 'GROUP_BY', 'GROUP_ID_LENGTH', 'TOPK_FAMILIES',
                     'CompareError', 'check_metric', 'group_id', 'is_topk_metric', 'lower_is_better',
                     'parse_at', 'stratum_columns', 'topk_columns'), "metrics"),
    **dict.fromkeys(('PairedResult', 'paired_test'), "paired"),
    **dict.fromkeys(('RunPoint', 'choose_epoch', 'points', 'replay_original', 'select_runs'), "selection"),
    **dict.fromkeys(('KINDS', 'is_stratum_metric', 'stratum_label', 'stratum_order', 'stratum_sizes',
                     'stratum_values'), "strata"),
    **dict.fromkeys(('ALPHA', 'BOOTSTRAP_RESAMPLES', 'BOOTSTRAP_SEED', 'EXACT_MAX_SEEDS', 'MC_PATTERNS',
                     'bootstrap_ci', 'mean_std', 'min_pvalue', 'seeds_needed', 'sign_flip_pvalue'), "stats"),
    **dict.fromkeys(('EFFECT_BINS', 'EFFECT_LEVELS', 'KeyEffect', 'SweepChoice', 'SweepPoint', 'SweepRanking',
                     'best_of_sweep', 'budget_warnings', 'key_effects', 'rank_sweep', 'stored_best', 'sweep_points',
                     'sweep_rows', 'tuned_matrix'),
                    "sweep_ranking"),
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value                      # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
