"""Shared fixtures. Real datasets are located as users locate them (KNI_DATA_DIR, then
../shared/data); with ``CI`` set, a missing dataset fails the test instead of skipping it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kni_core.data.registry import locate
from kni_core.errors import DataError


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Tests never touch the user's cache; one cache per session keeps real-data reruns cheap."""
    monkeypatch.setenv("KNI_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "kni-cache"))


@pytest.fixture()
def real_dataset():
    """``real_dataset(name)`` -> the dataset's folder, or skip (fail under CI) when missing."""
    def find(name: str) -> Path:
        try:
            return locate(name)
        except DataError as error:
            if os.environ.get("CI"):
                pytest.fail(f"CI is set but the real dataset {name!r} is missing: {error}")
            pytest.skip(f"real dataset {name!r} not available")
    return find
