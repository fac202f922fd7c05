"""The source files behind the preprocessing cache: which are read, what identifies them, what is
said about them (and kept with the cache), and how the cache is written when several processes
or users share it."""

from __future__ import annotations

import importlib
import os
import shutil
import time

import numpy as np
import pytest

from kni_core.config import DatasetConfig, ModelConfig, RunConfig
from kni_core.data import prepare

prepare_module = importlib.import_module("kni_core.data.prepare")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KNI_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def rows(n_users: int = 20, n_items: int = 30, flip: int | None = None) -> list[tuple[int, int, int]]:
    """Every (user, item) pair once, labels alternating; ``flip``: that row's label flipped."""
    out = [(u, i, (u + i) % 2) for u in range(n_users) for i in range(n_items) if (u * 7 + i) % 3 == 0]
    if flip is not None:
        u, i, y = out[flip]
        out[flip] = (u, i, 1 - y)
    return out


def write_folder(folder, ratings, kg=((0, 0, 50), (1, 0, 50))):
    folder.mkdir(exist_ok=True)
    (folder / "ratings_final.txt").write_text("".join(f"{u}\t{i}\t{y}\n" for u, i, y in ratings))
    (folder / "kg_final.txt").write_text("".join(f"{h}\t{r}\t{t}\n" for h, r, t in kg))
    return folder


def config(folder) -> RunConfig:
    return RunConfig(dataset=DatasetConfig(path=str(folder), min_relation_triples=1),
                     model=ModelConfig(max_degree=4)).validate()


def all_rows(data) -> set[tuple[int, int, int]]:
    return {tuple(r) for part in (data.train, data.valid, data.test) for r in part.tolist()}


def test_an_edit_that_keeps_the_size_and_the_mtime_rebuilds_the_cache(tmp_path, cache):
    folder = write_folder(tmp_path / "d", rows())
    first = prepare(config(folder))
    assert prepare(config(folder)).from_cache
    path = folder / "ratings_final.txt"
    before = path.stat()
    time.sleep(0.02)                        # older kernels stamp ctime from a clock ticking every few ms
    write_folder(folder, rows(flip=5))                               # a label 1 <-> 0: same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))       # and the old mtime
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    again = prepare(config(folder))
    assert not again.from_cache and all_rows(again) != all_rows(first)
    # new files copied over the old ones keeping their times (cp -p, rsync -a, shutil.copy2)
    other = write_folder(tmp_path / "other", rows(flip=9))
    os.utime(other / "ratings_final.txt", ns=(before.st_atime_ns, before.st_mtime_ns))
    shutil.copy2(other / "ratings_final.txt", path)
    assert not prepare(config(folder)).from_cache and prepare(config(folder)).from_cache


def test_a_stale_npy_is_said_kept_with_the_cache_and_left_out_of_the_provenance(tmp_path, cache, caplog):
    folder = write_folder(tmp_path / "d", rows())
    (folder / "SOURCE.md").write_text("where the data comes from\n")
    np.save(folder / "ratings_final.npy", np.array(rows()))
    same = prepare(config(folder))
    assert "warnings" not in same.stats
    assert sorted(same.sources) == ["kg_final.txt", "ratings_final.npy", "ratings_final.txt"]    # no SOURCE.md
    write_folder(folder, rows(flip=0))                              # the .txt edited, the .npy left as it was
    with caplog.at_level("WARNING"):
        edited = prepare(config(folder))
    assert not edited.from_cache and all_rows(edited) != all_rows(same)
    (warning,) = edited.stats["warnings"]
    assert "ratings_final.npy hold different rows" in warning and warning in caplog.text
    assert sorted(edited.sources) == ["kg_final.txt", "ratings_final.txt"]
    caplog.clear()
    with caplog.at_level("WARNING"):
        hit = prepare(config(folder))
    assert hit.from_cache and hit.stats["warnings"] == [warning] and warning in caplog.text
    assert hit.sources == edited.sources


def test_repeated_pairs_are_kept_with_the_cache(tmp_path, cache, caplog):
    folder = write_folder(tmp_path / "d", rows() + rows()[:3])
    first = prepare(config(folder))
    assert any("3 rating row(s) repeat a (user, item) pair" in w for w in first.stats["warnings"])
    caplog.clear()
    with caplog.at_level("WARNING"):
        hit = prepare(config(folder))
    assert hit.from_cache and hit.stats["warnings"] == first.stats["warnings"]
    assert "3 rating row(s) repeat" in caplog.text


def test_a_complete_cache_saved_meanwhile_by_another_process_is_kept(tmp_path, cache):
    """Two processes preparing one cold cache: the second one to finish used to remove the
    first one's cache under its readers (who then read a half-removed cache as damaged)."""
    folder = write_folder(tmp_path / "d", rows())
    data = prepare(config(folder))
    directory = prepare_module.prepared_dir("d", data.key)
    inode = (directory / "splits.npz").stat().st_ino
    assert prepare_module.save(data, directory)
    assert (directory / "splits.npz").stat().st_ino == inode         # not replaced
    assert [p.name for p in directory.parent.iterdir()] == [directory.name]      # no .tmp-* left
    (directory / "splits.npz").write_bytes(b"damaged")
    assert prepare_module.save(data, directory)                      # a damaged one is replaced
    assert prepare_module.load(directory) is not None
    assert [p.name for p in directory.parent.iterdir()] == [directory.name]


def test_the_cache_and_an_installed_copy_can_be_shared_with_other_users(tmp_path, cache):
    from kni_core.data.install import install
    target = tmp_path / "data" / "mine"
    old = os.umask(0o022)
    try:
        data = prepare(config(write_folder(tmp_path / "d", rows())))
        installed = install(tmp_path / "d", config(target))
    finally:
        os.umask(old)
    assert prepare_module.prepared_dir("d", data.key).stat().st_mode & 0o777 == 0o755      # was 0o700
    assert target.stat().st_mode & 0o777 == 0o755
    assert prepare_module.prepared_dir("mine", installed.key).stat().st_mode & 0o777 == 0o755
    assert prepare(config(target)).from_cache                        # the key of the copied files


def test_a_folder_without_dataset_files_does_not_hide_a_copy_found_later(tmp_path, cache, monkeypatch):
    """A stray lastfm/ holding only its SOURCE.md in KNI_DATA_DIR is passed over, and said so."""
    from kni_core.data import registry
    from kni_core.errors import DataError
    stray = tmp_path / "stray" / "lastfm"
    stray.mkdir(parents=True)
    (stray / "SOURCE.md").write_text("where it came from\n")
    monkeypatch.setattr(registry, "data_roots", lambda: [tmp_path / "stray", registry.user_data_root()])
    with pytest.raises(DataError) as e:
        registry.locate("lastfm")
    assert f"{stray} (holds SOURCE.md: no dataset's files)" in str(e.value)
    from kni_core.data.formats import read_folder
    with pytest.raises(DataError, match=r"no supported dataset files found \(the folder holds SOURCE.md\)"):
        read_folder(stray, DatasetConfig())
    (cache / "data").mkdir(parents=True)
    good = write_folder(cache / "data" / "lastfm", rows())      # the user data folder, searched last
    assert registry.locate("lastfm") == good

