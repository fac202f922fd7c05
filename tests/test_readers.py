"""Dataset readers on tiny hand-made files: exact ids, labels, negatives, KG ids and errors."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from kni_core.config import DatasetConfig
from kni_core.data import kni_pkl, recbole, ripplenet_raw
from kni_core.data.formats import read_folder
from kni_core.errors import DataError


def write(folder: Path, name: str, lines: list[str]) -> Path:
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def subfolder(parent: Path, name: str) -> Path:
    (parent / name).mkdir()
    return parent / name


def cfg_for(folder: Path, **kwargs) -> DatasetConfig:
    return DatasetConfig(path=str(folder), **kwargs)


def rows_of(ratings: np.ndarray, user: int, label: int) -> set[int]:
    return set(ratings[(ratings[:, 0] == user) & (ratings[:, 2] == label), 1].tolist())


def assert_negatives_sound(ratings: np.ndarray, rated: dict[int, set[int]], n_items: int) -> None:
    """Per user: as many negatives as positives, all distinct, valid and never rated by that user."""
    for user, items in rated.items():
        pos, neg = rows_of(ratings, user, 1), ratings[(ratings[:, 0] == user) & (ratings[:, 2] == 0), 1]
        assert len(neg) == len(pos) == len(set(neg.tolist()))
        assert not set(neg.tolist()) & items
        assert all(0 <= i < n_items for i in neg)


# ---------------------------------------------------------------------------------------------
# RippleNet raw inputs

ITEM_MAP = ["10\t100", "20\t200", "30\t300", "40\t400", "50\t500"]


@pytest.fixture
def movie_folder(tmp_path: Path) -> Path:
    tmp_path = subfolder(tmp_path, "movie")
    write(tmp_path, "item_index2entity_id_rehashed.txt", ITEM_MAP)
    write(tmp_path, "ratings.dat", [
        "7::20::5::978300760",   # no header: this first line is a real (positive) rating
        "7::10::2::978300761",
        "7::99::5::978300762",   # item 99 has no entity: dropped
        "3::30::4::978300763",
        "3::40::1::978300764",
        "5::10::3::978300765",   # user 5 has no positive: dropped
    ])
    write(tmp_path, "kg_part1_rehashed.txt", ["100\tfilm.director\t900", "200\tfilm.director\t900"])
    write(tmp_path, "kg_part2_rehashed.txt", ["300\tfilm.genre\t901", "900\tperson.nationality\t902"])
    return tmp_path


@pytest.fixture
def book_folder(tmp_path: Path) -> Path:
    tmp_path = subfolder(tmp_path, "book")
    write(tmp_path, "item_index2entity_id_rehashed.txt",
          ["034545104X\t0", "0155061224\t1", "052165615X\t2", "0446520802\t3", "0375759778\t4"])
    write(tmp_path, "BX-Book-Ratings.csv", [
        '"User-ID";"ISBN";"Book-Rating"',
        '"276725";"034545104X";"0"',     # implicit rating 0: still positive for books
        '"276726";"0155061224";"5"',
        '"276725";"052165615X";"8"',
        '"276727";"UNKNOWN";"3"',
    ])
    write(tmp_path, "kg_rehashed.txt", ["0\tbook.author\t5", "2\tbook.author\t5"])
    return tmp_path


def test_ripplenet_raw_movielens(movie_folder: Path) -> None:
    raw = ripplenet_raw.read(movie_folder, cfg_for(movie_folder))
    assert (raw.n_users, raw.n_items, raw.n_entities, raw.n_relations) == (2, 5, 8, 3)
    # users numbered by first positive: raw user 7 -> 0, raw user 3 -> 1; items by map order
    assert rows_of(raw.ratings, 0, 1) == {1}
    assert rows_of(raw.ratings, 1, 1) == {2}
    assert_negatives_sound(raw.ratings, {0: {0, 1}, 1: {2, 3}}, raw.n_items)
    assert raw.ratings[:, 0].tolist() == [0, 0, 1, 1]
    assert raw.ratings[:, 2].tolist() == [1, 0, 1, 0]
    # item entities 100, 200, 300 keep the item ids 0, 1, 2; new entities 900, 901, 902 -> 5, 6, 7
    assert raw.kg.tolist() == [[0, 0, 5], [1, 0, 5], [2, 1, 6], [5, 2, 7]]


def test_ripplenet_raw_movielens_threshold_from_config(movie_folder: Path) -> None:
    raw = ripplenet_raw.read(movie_folder, cfg_for(movie_folder, rating_threshold=2.0))
    # rating 2 of raw user 7 on item 10 is now positive; raw user 5 (rating 3) now counts
    assert rows_of(raw.ratings, 0, 1) == {0, 1}
    assert raw.n_users == 3


def test_ripplenet_raw_book_crossing(book_folder: Path) -> None:
    raw = ripplenet_raw.read(book_folder, cfg_for(book_folder, rating_threshold=4.0))
    assert (raw.n_users, raw.n_items, raw.n_entities, raw.n_relations) == (2, 5, 6, 1)
    assert rows_of(raw.ratings, 0, 1) == {0, 2}     # threshold 0 whatever rating_threshold says
    assert rows_of(raw.ratings, 1, 1) == {1}
    assert_negatives_sound(raw.ratings, {0: {0, 2}, 1: {1}}, raw.n_items)
    assert raw.kg.tolist() == [[0, 0, 5], [2, 0, 5]]


def test_ripplenet_raw_same_seed_same_negatives(movie_folder: Path) -> None:
    first = ripplenet_raw.read(movie_folder, cfg_for(movie_folder, split_seed=3)).ratings
    again = ripplenet_raw.read(movie_folder, cfg_for(movie_folder, split_seed=3)).ratings
    np.testing.assert_array_equal(first, again)


def test_ripplenet_raw_malformed_rating_line(movie_folder: Path) -> None:
    write(movie_folder, "ratings.dat", ["7::20::5::1", "7::10::2::1", "3:30:4:1"])
    with pytest.raises(DataError, match=r"ratings\.dat:3: expected 4 fields"):
        ripplenet_raw.read(movie_folder, cfg_for(movie_folder))


def test_ripplenet_raw_non_numeric_rating(book_folder: Path) -> None:
    write(book_folder, "BX-Book-Ratings.csv", ['"User-ID";"ISBN";"Book-Rating"', '"1";"034545104X";"x"'])
    with pytest.raises(DataError, match=r"BX-Book-Ratings\.csv:2: .*numeric rating"):
        ripplenet_raw.read(book_folder, cfg_for(book_folder))


def test_ripplenet_raw_malformed_kg_line(movie_folder: Path) -> None:
    write(movie_folder, "kg_part2_rehashed.txt", ["300\tfilm.genre\t901", "", "900 nationality 902"])
    with pytest.raises(DataError, match=r"kg_part2_rehashed\.txt:3: expected 3 tab-separated fields"):
        ripplenet_raw.read(movie_folder, cfg_for(movie_folder))


def test_ripplenet_raw_duplicate_item_in_map(movie_folder: Path) -> None:
    write(movie_folder, "item_index2entity_id_rehashed.txt", ITEM_MAP + ["20\t600"])
    with pytest.raises(DataError, match=r"item_index2entity_id_rehashed\.txt:6: item '20' is listed twice"):
        ripplenet_raw.read(movie_folder, cfg_for(movie_folder))


def test_ripplenet_raw_missing_kg_file_lists_expected_files(movie_folder: Path) -> None:
    (movie_folder / "kg_part2_rehashed.txt").unlink()
    with pytest.raises(DataError) as info:
        ripplenet_raw.read(movie_folder, cfg_for(movie_folder))
    message = str(info.value)
    assert "missing kg_part2_rehashed.txt for MovieLens-1M" in message
    for name in ("ratings.dat", "kg_part1_rehashed.txt", "BX-Book-Ratings.csv", "kg_rehashed.txt",
                 "item_index2entity_id_rehashed.txt", "hwwang55/RippleNet", "grouplens.org"):
        assert name in message


def test_ripplenet_raw_missing_ratings_file(tmp_path: Path) -> None:
    write(tmp_path, "item_index2entity_id_rehashed.txt", ITEM_MAP)
    assert not ripplenet_raw.detect(tmp_path)
    with pytest.raises(DataError, match="ratings.dat or BX-Book-Ratings.csv"):
        ripplenet_raw.read(tmp_path, cfg_for(tmp_path))


# ---------------------------------------------------------------------------------------------
# RecBole atomic files

LINK = ["item_id:token\tentity_id:token"] + [f"i{n}\tm.0{n}" for n in range(1, 6)]
KG = ["head_id:token\trelation_id:token\ttail_id:token",
      "m.01\tfilm.genre\tm.99", "m.03\tfilm.genre\tm.99", "m.99\tgenre.parent\tm.98", "m.02\tfilm.director\tm.97"]


@pytest.fixture
def recbole_folder(tmp_path: Path) -> Path:
    tmp_path = subfolder(tmp_path, "recbole")
    write(tmp_path, "toy.inter", [
        "item_id:token\trating:float\tuser_id:token\ttimestamp:float",   # columns found by name
        "i2\t2\tu2\t1",     # u2 appears first (with a negative): u2 -> user 0
        "i1\t5\tu1\t2",
        "i3\t1\tu1\t3",
        "i3\t4\tu2\t4",
        "i9\t5\tu3\t5",     # i9 is not linked: dropped, and u3 with it
    ])
    write(tmp_path, "toy.link", LINK)
    write(tmp_path, "toy.kg", KG)
    return tmp_path


def test_recbole(recbole_folder: Path) -> None:
    raw = recbole.read(recbole_folder, cfg_for(recbole_folder))
    assert (raw.n_users, raw.n_items, raw.n_entities, raw.n_relations) == (2, 5, 8, 3)
    assert rows_of(raw.ratings, 0, 1) == {2}      # u2 liked i3
    assert rows_of(raw.ratings, 1, 1) == {0}      # u1 liked i1
    assert_negatives_sound(raw.ratings, {0: {1, 2}, 1: {0, 2}}, raw.n_items)
    # m.01, m.02, m.03 are items 0, 1, 2; m.99, m.98, m.97 -> 5, 6, 7 in order of appearance
    assert raw.kg.tolist() == [[0, 0, 5], [2, 0, 5], [5, 1, 6], [1, 2, 7]]


def test_recbole_without_rating_column_every_interaction_is_positive(recbole_folder: Path) -> None:
    write(recbole_folder, "toy.inter", ["user_id:token\titem_id:token", "u1\ti1", "u1\ti2", "u2\ti5"])
    raw = recbole.read(recbole_folder, cfg_for(recbole_folder))
    assert rows_of(raw.ratings, 0, 1) == {0, 1}
    assert rows_of(raw.ratings, 1, 1) == {4}
    assert_negatives_sound(raw.ratings, {0: {0, 1}, 1: {4}}, raw.n_items)


def test_recbole_picks_dataset_by_name(recbole_folder: Path) -> None:
    for suffix in (".inter", ".link", ".kg"):
        (recbole_folder / f"other{suffix}").write_text((recbole_folder / f"toy{suffix}").read_text())
    with pytest.raises(DataError, match="several RecBole datasets here .*other, toy"):
        recbole.read(recbole_folder, cfg_for(recbole_folder))
    assert recbole.read(recbole_folder, cfg_for(recbole_folder, name="toy")).n_users == 2


def test_recbole_missing_file_lists_the_three(recbole_folder: Path) -> None:
    (recbole_folder / "toy.kg").unlink()
    with pytest.raises(DataError, match=r"missing toy\.kg; .*toy\.inter, toy\.kg, toy\.link"):
        recbole.read(recbole_folder, cfg_for(recbole_folder))


def test_recbole_malformed_line(recbole_folder: Path) -> None:
    write(recbole_folder, "toy.link", LINK[:3] + ["i3"] + LINK[4:])
    with pytest.raises(DataError, match=r"toy\.link:4: expected 2 tab-separated fields"):
        recbole.read(recbole_folder, cfg_for(recbole_folder))


def test_recbole_bad_rating(recbole_folder: Path) -> None:
    write(recbole_folder, "toy.inter", ["user_id:token\titem_id:token\trating:float", "u1\ti1\t5", "u1\ti2\tgood"])
    with pytest.raises(DataError, match=r"toy\.inter:3: rating 'good' is not a number"):
        recbole.read(recbole_folder, cfg_for(recbole_folder))


def test_recbole_missing_column(recbole_folder: Path) -> None:
    write(recbole_folder, "toy.kg", ["head_id:token\trel:token\ttail_id:token", "m.01\tr\tm.99"])
    with pytest.raises(DataError) as info:
        recbole.read(recbole_folder, cfg_for(recbole_folder))
    message = str(info.value)
    assert "toy.kg:1: missing column relation_id" in message
    assert "head_id:token, rel:token, tail_id:token" in message   # the columns found


def test_recbole_seed_controls_negatives(tmp_path: Path) -> None:
    write(tmp_path, "many.inter", ["user_id:token\titem_id:token", "u\ti0"])
    write(tmp_path, "many.link", ["item_id:token\tentity_id:token"] + [f"i{n}\te{n}" for n in range(50)])
    write(tmp_path, "many.kg", ["head_id:token\trelation_id:token\ttail_id:token", "e0\tr\te1"])
    negatives = [recbole.read(tmp_path, cfg_for(tmp_path, split_seed=seed)).ratings[1, 1] for seed in range(10)]
    again = [recbole.read(tmp_path, cfg_for(tmp_path, split_seed=seed)).ratings[1, 1] for seed in range(10)]
    assert negatives == again
    assert len(set(negatives)) > 1
    assert 0 not in negatives


# ---------------------------------------------------------------------------------------------
# KNI pickles: users 10, 12; items 3, 7, 11; other KG entities 1, 20 (one shared id space)

def kni_dataset(**overrides) -> dict:
    rel0 = sp.csr_matrix((np.ones(3), ([3, 7, 10], [20, 20, 3])), shape=(25, 25))   # 10 -> 3 is a user edge
    rel1 = np.zeros((25, 25), dtype=np.int32)
    rel1[20, 1] = 1
    dataset = {"train_data": np.array([[10, 3, 1], [10, 7, 0], [12, 11, 1]], dtype=np.int32),
               "test_data": np.array([[12, 3, 0]], dtype=np.int32),
               "adj": [rel0, rel1]}
    dataset.update(overrides)
    return dataset


def write_pickle(folder: Path, obj, name: str = "bc.pkl") -> Path:
    path = folder / name
    path.write_bytes(pickle.dumps(obj))
    return path


def test_kni_pickle(tmp_path: Path) -> None:
    write_pickle(tmp_path, kni_dataset())
    raw = kni_pkl.read(tmp_path, cfg_for(tmp_path))
    assert raw.ratings.tolist() == [[0, 0, 1], [0, 1, 0], [1, 2, 1], [1, 0, 0]]
    assert (raw.n_users, raw.n_items, raw.n_entities, raw.n_relations) == (2, 3, 5, 2)
    assert raw.kg.tolist() == [[0, 0, 4], [1, 0, 4], [4, 1, 3]]


def test_kni_pickle_single_matrix_and_no_adj(tmp_path: Path) -> None:
    single = sp.coo_matrix((np.ones(2), ([11, 1], [1, 3])), shape=(25, 25))
    write_pickle(tmp_path, kni_dataset(adj=single))
    assert kni_pkl.read(tmp_path, cfg_for(tmp_path)).kg.tolist() == [[2, 0, 3], [3, 0, 0]]
    write_pickle(tmp_path, kni_dataset(adj=None))
    raw = kni_pkl.read(tmp_path, cfg_for(tmp_path))
    assert raw.kg.shape == (0, 3) and raw.n_entities == 3


class _RunsAShellCommand:
    """What a hostile pickle looks like: loading it calls os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_naming_the_call(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    write_pickle(tmp_path, kni_dataset(train_data=_RunsAShellCommand(marker)))
    with pytest.raises(DataError, match=r"bc\.pkl: refused to load: the pickle calls posix\.system") as info:
        kni_pkl.read(tmp_path, cfg_for(tmp_path))
    assert "nothing of it was run" in str(info.value)
    assert not marker.exists()


def test_the_authors_layout_still_loads_with_every_sparse_format_and_python2_encoding(tmp_path: Path) -> None:
    """Dicts of numpy arrays and scipy sparse matrices (csr, csc, coo, lil), as the authors'
    files hold them, and a protocol-2 pickle as Python 2 wrote them."""
    base = kni_dataset(adj=None)
    for fmt in ("csr", "csc", "coo", "lil"):
        m = sp.coo_matrix((np.ones(2), ([11, 1], [1, 3])), shape=(25, 25)).asformat(fmt)
        write_pickle(tmp_path, {**base, "adj": [m]})
        assert sorted(kni_pkl.read(tmp_path, cfg_for(tmp_path)).kg.tolist()) == [[2, 0, 3], [3, 0, 0]], fmt
    (tmp_path / "bc.pkl").write_bytes(pickle.dumps({**base, "n": np.int64(3), "kept": {1, 2}}, protocol=2))
    assert kni_pkl.read(tmp_path, cfg_for(tmp_path)).n_users == 2


def test_kni_pickle_missing_key_names_keys(tmp_path: Path) -> None:
    write_pickle(tmp_path, {"train_data": np.zeros((1, 3), np.int64), "adj": None})
    with pytest.raises(DataError) as info:
        kni_pkl.read(tmp_path, cfg_for(tmp_path))
    message = str(info.value)
    assert "missing key 'test_data'" in message
    assert "found keys: adj, train_data" in message
    assert "expected keys: train_data, test_data" in message


def test_kni_pickle_wrong_shape(tmp_path: Path) -> None:
    write_pickle(tmp_path, kni_dataset(test_data=np.zeros((4, 2), np.int64)))
    with pytest.raises(DataError, match=r"dataset\['test_data'\] must be an integer array of shape \(N, 3\)"):
        kni_pkl.read(tmp_path, cfg_for(tmp_path))


def test_kni_pickle_not_a_dict_or_not_a_pickle(tmp_path: Path) -> None:
    write_pickle(tmp_path, [1, 2, 3])
    with pytest.raises(DataError, match="expected a dict with keys train_data"):
        kni_pkl.read(tmp_path, cfg_for(tmp_path))
    (tmp_path / "bc.pkl").write_text("not a pickle")
    with pytest.raises(DataError, match=r"bc\.pkl: not a readable pickle"):
        kni_pkl.read(tmp_path, cfg_for(tmp_path))


def test_kni_pickle_choice_among_several(tmp_path: Path) -> None:
    write_pickle(tmp_path, kni_dataset(), "bc.pkl")
    write_pickle(tmp_path, kni_dataset(adj=None), "ml-1m.pkl")
    with pytest.raises(DataError, match="several KNI pickles here .*bc, ml-1m"):
        kni_pkl.read(tmp_path, cfg_for(tmp_path))
    assert len(kni_pkl.read(tmp_path, cfg_for(tmp_path, name="ml-1m")).kg) == 0
    assert len(kni_pkl.read(tmp_path, cfg_for(tmp_path, name="bc")).kg) == 3


# ---------------------------------------------------------------------------------------------
# auto-detection through formats.read_folder


def test_auto_detects_each_format(tmp_path: Path, movie_folder: Path, book_folder: Path,
                                  recbole_folder: Path) -> None:
    for folder, source in ((movie_folder, "ratings.dat"), (book_folder, "BX-Book-Ratings.csv"),
                           (recbole_folder, "toy.inter")):
        assert read_folder(folder, cfg_for(folder)).source == str(folder / source)
    pkl_dir = subfolder(tmp_path, "pkl")
    write_pickle(pkl_dir, kni_dataset(), "ml-20m.pkl")
    raw = read_folder(pkl_dir, cfg_for(pkl_dir))
    assert raw.source.endswith("ml-20m.pkl") and raw.n_items == 3
    rip_dir = subfolder(tmp_path, "rip")
    write(rip_dir, "ratings_final.txt", ["0\t0\t1", "0\t1\t0", "1\t2\t1"])
    write(rip_dir, "kg_final.txt", ["0\t0\t3"])
    raw = read_folder(rip_dir, cfg_for(rip_dir))
    assert raw.source.endswith("ratings_final.txt")
    assert (raw.n_users, raw.n_items, raw.n_entities) == (2, 3, 4)


def test_auto_detect_nothing_lists_formats(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no supported dataset files found"):
        read_folder(tmp_path, cfg_for(tmp_path))


# ---------------------------------------------------------------------------------------------
# RippleNet ratings_final / kg_final (reader in formats.py)


@pytest.fixture
def final_folder(tmp_path: Path) -> Path:
    write(tmp_path, "kg_final.txt", ["0\t0\t3"])
    return tmp_path


@pytest.mark.parametrize("lines, pattern", [
    (["0\t0\t1", "0\t1\t0", "1\t2"], r"ratings_final\.txt:3: expected 3 fields"),
    (["0\t0\t1", "0\tx\t0"], r"ratings_final\.txt:2: 'x' is not an integer"),
    (["0\t0\t1", "0\t1\t2"], r"ratings_final\.txt:2: label 2 is not 0 or 1"),
    (["0\t0\t1", "", "0\t1\t2"], r"ratings_final\.txt:3: label 2 is not 0 or 1"),      # the line, not the row
    (["", "  "], r"ratings_final\.txt: the file is empty"),
    (["0\t0\t1", "-1\t1\t0"], r"ratings_final\.txt:2: negative user or item id"),
    (["0\t0\t1", "0\t1\t-1"], r"ratings_final\.txt:2: label -1 is not 0 or 1"),    # was an IndexError
    (["0\t0\t1", "0\t1\t18446744073709551616"], r"ratings_final\.txt:2: 18446744073709551616 does not fit a 64-bit"),
    (["0\t0\t1", "-9223372036854775809\t1\t0"], r"ratings_final\.txt:2: -9223372036854775809 does not fit"),
    # a field short on line 2, one too many on line 3: 9 fields on 3 lines used to pass as 3 shifted rows
    (["0\t0\t1", "1 0", "1 2 3 1"], r"ratings_final\.txt:2: expected 3 fields, found 2: '1 0'"),
])
def test_ripplenet_final_errors(final_folder: Path, lines: list[str], pattern: str) -> None:
    write(final_folder, "ratings_final.txt", lines)
    with pytest.raises(DataError, match=pattern):
        read_folder(final_folder, cfg_for(final_folder, format="ripplenet"))


def test_ripplenet_final_missing_kg_lists_files(tmp_path: Path) -> None:
    write(tmp_path, "ratings_final.txt", ["0\t0\t1"])
    with pytest.raises(DataError, match=r"missing kg_final\.\{txt,npy\}"):
        read_folder(tmp_path, cfg_for(tmp_path))


def test_ripplenet_raw_both_datasets_in_one_folder(movie_folder: Path) -> None:
    write(movie_folder, "BX-Book-Ratings.csv", ['"User-ID";"ISBN";"Book-Rating"', '"1";"10";"0"'])
    write(movie_folder, "kg_rehashed.txt", ["100\tbook.author\t900"])
    with pytest.raises(DataError, match="set dataset.name to ml-1m or bc"):
        ripplenet_raw.read(movie_folder, cfg_for(movie_folder))
    assert ripplenet_raw.read(movie_folder, cfg_for(movie_folder, name="ml-1m")).n_relations == 3
    book = ripplenet_raw.read(movie_folder, cfg_for(movie_folder, name="bc"))
    assert book.source.endswith("BX-Book-Ratings.csv") and rows_of(book.ratings, 0, 1) == {0}


def test_download_verifies_checksums_and_keeps_nothing_bad(tmp_path, monkeypatch):
    """`kni data download` over file:// URLs: good files land, a corrupted one is refused."""
    import dataclasses
    import hashlib

    from kni_core.data import download as dl, registry

    served = tmp_path / "served"
    served.mkdir()
    (served / "ratings_final.txt").write_text("0\t0\t1\n0\t1\t0\n")
    (served / "kg_final.txt").write_text("0\t0\t2\n")
    good = {f: hashlib.sha256((served / f).read_bytes()).hexdigest() for f in ("ratings_final.txt", "kg_final.txt")}
    urls = {f: (served / f).as_uri() for f in good}
    fake = dataclasses.replace(registry.DATASETS["bc"], urls=urls, checksums=good)
    monkeypatch.setitem(registry.DATASETS, "bc", fake)
    folder = dl.download("bc", dest=tmp_path / "dest")
    assert dl.verify(folder, good) == {"ratings_final.txt": "ok", "kg_final.txt": "ok"}

    bad = dataclasses.replace(fake, checksums={**good, "kg_final.txt": "0" * 64})
    monkeypatch.setitem(registry.DATASETS, "bc", bad)
    with pytest.raises(DataError, match="kg_final.txt .*does not match"):
        dl.download("bc", dest=tmp_path / "dest2")
    assert not (tmp_path / "dest2" / "kg_final.txt").exists()
    assert [p.name for p in (tmp_path / "dest2").iterdir() if p.name.startswith(".")] == []


def test_a_bad_kg_row_names_the_kg_file(final_folder: Path) -> None:
    write(final_folder, "ratings_final.txt", ["0\t0\t1", "1\t1\t0"])
    write(final_folder, "kg_final.txt", ["0\t0\t3", "1\t0\t-4"])
    with pytest.raises(DataError) as info:
        read_folder(final_folder, cfg_for(final_folder, format="ripplenet"))
    assert str(info.value) == f"{final_folder / 'kg_final.txt'}:2: negative id [1, 0, -4]"


def test_npy_ids_beyond_64_bits_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "ratings_final.npy", np.array([[0, 0, 1], [2**63, 1, 0]], dtype=np.uint64))
    write(tmp_path, "kg_final.txt", ["0\t0\t3"])
    with pytest.raises(DataError, match=r"ratings_final\.npy: array row 2: id 9223372036854775808 does not fit"):
        read_folder(tmp_path, cfg_for(tmp_path))


def test_sparse_ids_are_renumbered_in_order(tmp_path: Path, caplog) -> None:
    """A user id of 10^9 or a KG id of 10^12 used to size tables by the id (GBs to TBs)."""
    write(tmp_path, "ratings_final.txt", ["0\t0\t1", "1000000000\t1\t0", "7\t2\t1", "1000000000\t0\t1"])
    write(tmp_path, "kg_final.txt", ["0\t5\t1000000000000", "2\t99999999999\t40", "1\t5\t40"])
    with caplog.at_level("WARNING"):
        raw = read_folder(tmp_path, cfg_for(tmp_path))
    assert (raw.n_users, raw.n_items, raw.n_entities, raw.n_relations) == (3, 3, 5, 2)
    assert raw.ratings.tolist() == [[0, 0, 1], [2, 1, 0], [1, 2, 1], [2, 0, 1]]    # order kept: 0 < 7 < 10^9
    assert raw.kg.tolist() == [[0, 0, 4], [2, 1, 3], [1, 0, 3]]                    # items first, then 40 < 10^12
    assert "user ids up to 1000000000 for 3 users: renumbered" in caplog.text
    assert "relation ids up to 99999999999" in caplog.text
    # dense ids are left as they are, gaps included
    write(tmp_path, "ratings_final.txt", ["0\t0\t1", "5\t1\t0"])
    write(tmp_path, "kg_final.txt", ["0\t0\t9"])
    raw = read_folder(tmp_path, cfg_for(tmp_path))
    assert (raw.n_users, raw.n_entities) == (6, 10)


def test_a_byte_order_mark_is_skipped(final_folder: Path) -> None:
    (final_folder / "ratings_final.txt").write_text("\ufeff0\t0\t1\n1\t1\t0\n", encoding="utf-8")
    raw = read_folder(final_folder, cfg_for(final_folder))
    assert raw.ratings.tolist() == [[0, 0, 1], [1, 1, 0]]


def test_an_npy_beside_the_txt_is_used_only_when_it_holds_the_same_rows(final_folder: Path, caplog) -> None:
    write(final_folder, "ratings_final.txt", ["0\t0\t1", "1\t1\t0", "1\t0\t1"])
    np.save(final_folder / "ratings_final.npy", np.array([[0, 0, 1], [1, 1, 0], [1, 0, 1]]))
    with caplog.at_level("WARNING"):
        raw = read_folder(final_folder, cfg_for(final_folder))
    assert raw.warnings == [] and caplog.text == ""
    assert sorted(Path(f).name for f in raw.files) == ["kg_final.txt", "ratings_final.npy", "ratings_final.txt"]
    write(final_folder, "ratings_final.txt", ["0\t0\t1", "1\t1\t1", "1\t0\t1"])     # edited; the .npy is stale
    with caplog.at_level("WARNING"):
        raw = read_folder(final_folder, cfg_for(final_folder))
    assert raw.ratings[:, 2].tolist() == [1, 1, 1]
    said = (f"{final_folder / 'ratings_final.txt'} and {final_folder / 'ratings_final.npy'} hold different rows "
            "(row 2 is [1, 1, 1] in the .txt, [1, 1, 0] in the .npy); ratings_final.txt is read and "
            "ratings_final.npy ignored")
    assert said in caplog.text and raw.warnings[0].startswith(said)
    assert sorted(Path(f).name for f in raw.files) == ["kg_final.txt", "ratings_final.txt"]
    write(final_folder, "ratings_final.txt", ["0\t0\t1", "1\t1\t0"])                  # a row fewer
    assert "(2 rows in the .txt, 3 in the .npy)" in read_folder(final_folder, cfg_for(final_folder)).warnings[0]


def test_repeated_pairs_are_reported(tmp_path: Path, caplog) -> None:
    write(tmp_path, "ratings_final.txt", ["0\t0\t1", "0\t1\t0", "0\t0\t1", "0\t0\t0"])
    write(tmp_path, "kg_final.txt", ["0\t0\t3"])
    with caplog.at_level("WARNING"):
        read_folder(tmp_path, cfg_for(tmp_path))
    assert "2 rating row(s) repeat a (user, item) pair" in caplog.text


def test_repeated_triples_and_a_stray_user_id_are_reported(tmp_path: Path, caplog) -> None:
    """One user id far beyond the rest (below the renumbering threshold) counts 5,001 users for
    four that rate; a KG row listed twice counts twice. Both said, neither silent."""
    write(tmp_path, "ratings_final.txt", ["0\t0\t1", "1\t1\t0", "2\t0\t0", "5000\t1\t1"])
    write(tmp_path, "kg_final.txt", ["0\t0\t3", "1\t0\t3", "0\t0\t3"])
    with caplog.at_level("WARNING"):
        raw = read_folder(tmp_path, cfg_for(tmp_path))
    assert raw.summary()["users"] == 5001
    assert ("ratings_final.txt: user ids run to 5,000 (row 4) but 4 users rate anything: the dataset counts "
            "5,001 users, most without a rating (a stray id?)") in caplog.text
    assert "kg_final.txt: 1 knowledge-graph row(s) repeat a triple already listed" in caplog.text
    assert len(raw.warnings) == 2
    write(tmp_path, "ratings_final.txt", ["0\t0\t1", "1\t1\t0", "2\t0\t0", "3\t1\t1"])
    write(tmp_path, "kg_final.txt", ["0\t0\t3", "1\t0\t3"])
    assert read_folder(tmp_path, cfg_for(tmp_path)).warnings == []


def test_kni_pickle_ids_beyond_64_bits(tmp_path: Path) -> None:
    data = {"train_data": np.array([[1, 10, 1], [2**64 - 1, 11, 0]], dtype=np.uint64),
            "test_data": np.array([[1, 11, 0]], dtype=np.uint64)}
    with open(tmp_path / "bc.pkl", "wb") as f:
        pickle.dump(data, f)
    with pytest.raises(DataError, match=r"dataset\['train_data'\] row 2: id 18446744073709551615 does not fit"):
        read_folder(tmp_path, cfg_for(tmp_path))


def test_each_reader_names_the_files_it_read_and_only_those(tmp_path: Path, movie_folder: Path,
                                                             book_folder: Path, recbole_folder: Path) -> None:
    """The provenance of a run is the files its rows came from: the raw, RecBole and pickle
    readers named none, so a README or a second dataset beside them was recorded as read."""
    pickles = subfolder(tmp_path, "pkl")
    write_pickle(pickles, kni_dataset())
    expected = {
        movie_folder: (ripplenet_raw.read, ["item_index2entity_id_rehashed.txt", "ratings.dat",
                                            "kg_part1_rehashed.txt", "kg_part2_rehashed.txt"]),
        book_folder: (ripplenet_raw.read, ["BX-Book-Ratings.csv", "item_index2entity_id_rehashed.txt",
                                           "kg_rehashed.txt"]),
        recbole_folder: (recbole.read, ["toy.inter", "toy.kg", "toy.link"]),
        pickles: (kni_pkl.read, ["bc.pkl"]),
    }
    for folder, (read, names) in expected.items():
        write(folder, "README.md", ["where these files come from"])
        raw = read(folder, cfg_for(folder))
        assert sorted(Path(f).name for f in raw.files) == sorted(names), folder
        assert all(Path(f).parent == folder for f in raw.files)


def test_a_utf8_bom_is_no_part_of_the_first_field(movie_folder: Path) -> None:
    plain = ripplenet_raw.read(movie_folder, cfg_for(movie_folder))
    path = movie_folder / "ratings.dat"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert ripplenet_raw.read(movie_folder, cfg_for(movie_folder)).ratings.tolist() == plain.ratings.tolist()
