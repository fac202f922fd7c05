"""Known datasets: published statistics, expected files, where to get them, how to find them.

Locating a dataset by name looks, in order, in ``$KNI_DATA_DIR``, in ``../shared/data``
(beside a checkout) and in the user cache, where ``kni data prepare NAME --source DIR``
places a copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    folders: tuple[str, ...]                 # folder names tried under each data root
    format: str
    published: dict = field(default_factory=dict)
    published_source: str = ""
    files: tuple[str, ...] = ()
    obtain: str = ""
    checksums: dict = field(default_factory=dict)   # file -> sha256
    paper: dict = field(default_factory=dict)       # the paper's settings: {section: {key: value}}
    urls: dict = field(default_factory=dict)        # file -> URL pinned to a commit (kni data download)


_GITHUB = "https://raw.githubusercontent.com"
_GRAPHSW = "9288f4031193f19133d1cb8390e0d5c6435bc850"
_MCCLK = "4b0d2843b73adbe816a7a5bb1788b4f4bcd777f4"
_RIPPLENET_FILES = ("ratings_final.txt or ratings_final.npy", "kg_final.txt or kg_final.npy")

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in [
    DatasetSpec(
        "bc", "Book-Crossing (the paper's C-Book)", ("book-crossing", "bc"), "ripplenet",
        {"users": 17860, "items": 14967, "interactions": 139746, "entities": 77903,
         "relations": 25, "triples": 151500}, "RippleNet (CIKM'18) Table 1",
        _RIPPLENET_FILES,
        "RippleNet's `src/preprocess.py --dataset book` output. Redistributed copies: "
        "https://github.com/mengruwu/graphsw (data/Book-Crossing/) and "
        "https://github.com/CCIIPLab/MCCLK (data/book/). Raw ratings: BX-Book-Ratings.csv from the "
        "Book-Crossing dataset (Ziegler et al., WWW'05); KG files from https://github.com/hwwang55/RippleNet "
        "(data/book/). KNI's own pickle bc.pkl is also read (format kni-pkl).",
        {"ratings_final.txt": "7955f57160abb3a74f7e7256b5ebe839739aee56faff0d46277fed45eac5abe7",
         "ratings_final.npy": "d223b814c1a2c313eb030767d8b828ffad6f6341111b1911e485e008885071ba",
         "kg_final.txt": "60a4a2c2e6f101fbbd5763c72be3ed4f565498e7f6c8660eb19fe598dc7158b2",
         "kg_final.npy": "192ad826df7042e6c6534cc172f75422dd043f97dd3ce10d50a9ed031fcac378"},
        {"model": {"attention": 1, "hop_n_sample": [1, 4], "max_degree": 1024, "temperature": 10.0},
         "train": {"l2": 1e-5}, "eval": {"n_eval": 40}},
        {"ratings_final.txt": f"{_GITHUB}/mengruwu/graphsw/{_GRAPHSW}/data/Book-Crossing/ratings_final.txt",
         "kg_final.txt": f"{_GITHUB}/CCIIPLab/MCCLK/{_MCCLK}/data/book/kg_final.txt"}),
    DatasetSpec(
        "lastfm", "Last.FM (KGCN's music)", ("lastfm", "music"), "ripplenet",
        {"users": 1872, "items": 3846, "interactions": 42346, "entities": 9366,
         "relations": 60, "triples": 15518}, "KGCN (WWW'19) Table 1",
        _RIPPLENET_FILES,
        "KGCN's `src/preprocess.py -d music` output. Copies: https://github.com/CCIIPLab/MCCLK (data/music/); "
        "raw files (user_artists.dat, kg.txt, item_index2entity_id.txt) in https://github.com/hwwang55/KGCN "
        "(data/music/).",
        {"ratings_final.txt": "a1589f7ff2f36ea25c946900e38c941eb6d8fae27422b32c73dc571d731e1c70",
         "ratings_final.npy": "a4f759c4c24d2aeaa2c42734a2ded85261c7bc8b09c85b5e06f0184624eff43e",
         "kg_final.txt": "ff58147005e774652ebf435e9a8c3f0c3e2ffe9a54087eab00fd9c5413040bc8",
         "kg_final.npy": "a79db52c857eadb5d0e9268cb97387236d16f948034898d74255eb614ce0f6c7"},
        {"model": {"attention": 1, "hop_n_sample": [1, 4], "max_degree": 1024, "temperature": 10.0},
         "train": {"l2": 1e-5}, "eval": {"n_eval": 40}},
        {"ratings_final.txt": f"{_GITHUB}/CCIIPLab/MCCLK/{_MCCLK}/data/music/ratings_final.txt",
         "kg_final.txt": f"{_GITHUB}/CCIIPLab/MCCLK/{_MCCLK}/data/music/kg_final.txt"}),
    DatasetSpec(
        "ml-1m", "MovieLens-1M (RippleNet's movie)", ("ml-1m", "movie", "movielens-1m"), "auto",
        {"users": 6036, "items": 2445, "interactions": 753772, "entities": 182011,
         "relations": 12, "triples": 1241995}, "RippleNet (CIKM'18) Table 1",
        _RIPPLENET_FILES + ("or ratings.dat + item_index2entity_id_rehashed.txt + kg_part1_rehashed.txt + "
                            "kg_part2_rehashed.txt", "or ml-1m.pkl"),
        "ratings.dat from https://grouplens.org/datasets/movielens/1m/; item_index2entity_id_rehashed.txt and "
        "kg_part1/2_rehashed.txt from https://github.com/hwwang55/RippleNet (data/movie/). KNI's ml-1m.pkl is in "
        "the authors' data release linked from https://github.com/Atomu2014/KNI.",
        paper={"model": {"attention": 2, "hop_n_sample": [1, 32], "max_degree": 512, "temperature": 1.0},
               "train": {"l2": 1e-7}, "eval": {"n_eval": 40}}),
    DatasetSpec(
        "ab", "Amazon-Book (the paper's A-Book)", ("ab", "amazon-book"), "auto",
        {}, "",
        ("ab.pkl", "or RecBole atomic files amazon-book.inter / .kg / .link"),
        "KNI's ab.pkl is in the authors' data release linked from https://github.com/Atomu2014/KNI; "
        "RecBole's Amazon-Book KG dataset (atomic files) from https://recbole.io/dataset_list.html.",
        paper={"model": {"attention": 2, "hop_n_sample": [1, 8], "max_degree": 128, "temperature": 100.0},
               "train": {"l2": 1e-7}, "eval": {"n_eval": 40}}),
    DatasetSpec(
        "ml-20m", "MovieLens-20M (the paper's Movie-20M)", ("ml-20m", "movielens-20m"), "auto",
        {"users": 59296, "items": 11895, "interactions": 9100000, "entities": 64067, "triples": 1200000},
        "docs/design.md (approximate, from the KNI paper)",
        ("ml-20m.pkl", "or RecBole atomic files ml-20m.inter / .kg / .link"),
        "KNI's ml-20m.pkl is in the authors' data release linked from https://github.com/Atomu2014/KNI; "
        "RecBole's ml-20m KG dataset (atomic files) from https://recbole.io/dataset_list.html.",
        paper={"model": {"attention": 2, "hop_n_sample": [1, 32], "max_degree": 128, "temperature": 1.0},
               "train": {"l2": 1e-8}, "eval": {"n_eval": 10}}),
    DatasetSpec(
        "synthetic", "Synthetic, with a planted knowledge graph", (), "synthetic",
        {}, "", (), "Generated on the fly from `dataset.synthetic` parameters; nothing to download."),
]}


def spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def user_data_root() -> Path:
    cache = os.environ.get("KNI_CACHE_DIR")
    return (Path(cache) if cache else Path.home() / ".cache" / "kni-workbench") / "data"


def data_roots() -> list[Path]:
    roots = []
    if os.environ.get("KNI_DATA_DIR"):
        roots.append(Path(os.environ["KNI_DATA_DIR"]))
    here = Path(__file__).resolve().parents[2]        # the checkout, for an editable install
    for base in (Path.cwd(), here):
        candidate = (base / ".." / "shared" / "data").resolve()
        if candidate not in roots:
            roots.append(candidate)
    roots.append(user_data_root())
    return roots


def locate(name: str) -> Path:
    """Folder holding dataset ``name``, or a DataError saying what is expected and how to get it."""
    from .formats import recognised
    s = spec(name)
    tried = []
    for root in data_roots():
        for folder in s.folders + (s.name,):
            path = root / folder
            if recognised(path):
                return path
            held = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
            tried.append(f"{path} (holds {', '.join(held[:5])}{', ...' if len(held) > 5 else ''}: no dataset's "
                         "files)" if held else str(path))
    files = "\n".join(f"  - {f}" for f in s.files)
    raise DataError(
        f"dataset {name!r} ({s.title}) not found. Looked in:\n" + "\n".join(f"  - {t}" for t in dict.fromkeys(tried))
        + f"\nExpected files:\n{files}\nHow to obtain it: {s.obtain}\n"
        + (f"Fetch it with `kni data download {name}`, or point" if s.urls else "Then point")
        + f" to it with KNI_DATA_DIR, `dataset.path`, or `kni data prepare {name} --source DIR`.")
