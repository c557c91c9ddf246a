"""Readers: real MovieLens-100k (RecBole atomic files from the recbole wheel) and each raw format in miniature."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from translrec_dist.config.schema import DataConfig
from translrec_dist.data.filtering import kcore
from translrec_dist.data.readers.source import read_source


def recbole_ml100k() -> Path:
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("recbole is not installed (pip install --no-deps recbole==1.2.1 ships MovieLens-100k)")
    path = Path(spec.submodule_search_locations[0]) / "dataset_example" / "ml-100k"
    if not (path / "ml-100k.inter").is_file():
        pytest.skip(f"{path} has no ml-100k.inter")
    return path


def test_recbole_ml100k_real_files():
    src = read_source(DataConfig(format="recbole", path=str(recbole_ml100k())), need_rating=True)
    inter, items = src.interactions, src.items
    assert len(inter) == 100_000 and inter["user_id"].nunique() == 943 and len(items) == 1682
    assert src.report["bad_rows"] == {}
    assert list(items.columns) == ["item_id", "movie_title", "release_year", "class"]
    toy = items.set_index("item_id").loc["1"]
    assert toy.tolist() == ["Toy Story", "1995", "Animation Children's Comedy"]
    assert inter["rating"].between(1, 5).all() and inter["timestamp"].dtype == float
    first = inter.iloc[0]
    assert (first["user_id"], first["item_id"], first["rating"], first["timestamp"]) == ("196", "242", 3.0, 881250949.0)
    core = kcore(inter, 20)
    assert (core["user_id"].value_counts().min() >= 20) and (core["item_id"].value_counts().min() >= 20)


def test_recbole_without_a_path_fingerprints_the_bundled_files(tmp_path):
    """The demo config (data.path null) reads the wheel's files; the model card's data fingerprint must find them."""
    from types import SimpleNamespace

    from translrec_dist.data.prepare import source_files

    bundled = recbole_ml100k()
    cfg = SimpleNamespace(data=DataConfig(format="recbole"))
    assert {f.name for f in source_files(cfg)} >= {"ml-100k.inter", "ml-100k.item"}
    assert all(f.parent == bundled for f in source_files(cfg))


def write(path: Path, text: str, encoding="utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def test_movielens_100k_raw(tmp_path):
    flags = ["0"] * 19
    flags[1] = flags[5] = "1"  # Action, Comedy
    write(tmp_path / "u.data", "1\t10\t4\t881250949\n1\t11\t3\t881250950\n2\t10\t5\t881250951\n")
    write(tmp_path / "u.item", "10|Café (1995)|01-Jan-1995||http://x|" + "|".join(flags) + "\n"
          + "11|Other (1996)|01-Jan-1996||http://y|" + "|".join(["1"] + ["0"] * 18) + "\n", encoding="latin-1")
    src = read_source(DataConfig(format="movielens", path=str(tmp_path)), need_rating=True)
    items = src.items.set_index("item_id")
    assert items.loc["10", "title"] == "Café (1995)"  # Latin-1 decoded
    assert items.loc["10", "genres"] == "Action, Comedy" and items.loc["11", "genres"] == "unknown"
    assert len(src.interactions) == 3 and src.interactions["rating"].tolist() == [4.0, 3.0, 5.0]


def test_movielens_1m_raw(tmp_path):
    write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    write(tmp_path / "movies.dat", "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
          "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n", encoding="latin-1")
    src = read_source(DataConfig(format="movielens", path=str(tmp_path)), need_rating=False)
    assert src.items.set_index("item_id").loc["661", "genres"] == "Animation, Children's, Musical"
    assert src.interactions["item_id"].tolist() == ["1193", "661"]


def test_movielens_latest_with_tags(tmp_path):
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n")
    write(tmp_path / "movies.csv", 'movieId,title,genres\n1,"Toy Story, The (1995)",Adventure|Animation\n'
          "3,Grumpier Old Men (1995),Comedy|Romance\n")
    write(tmp_path / "tags.csv", "userId,movieId,tag,timestamp\n2,1,pixar,1\n3,1,Pixar,2\n2,1,fun,3\n")
    src = read_source(DataConfig(format="movielens", path=str(tmp_path)), need_rating=True)
    items = src.items.set_index("item_id")
    assert items.loc["1", "title"] == "Toy Story, The (1995)"  # quoted comma kept
    assert items.loc["1", "tags"] == "pixar, fun" and items.loc["3", "tags"] == ""
    assert items.loc["1", "genres"] == "Adventure, Animation"


def amazon_files(directory: Path, reviews: list[str], meta: list[str], zipped: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".jsonl.gz" if zipped else ".jsonl"
    for name, lines in (("All_Beauty", reviews), ("meta_All_Beauty", meta)):
        data = ("\n".join(lines) + "\n").encode()
        (directory / f"{name}{suffix}").write_bytes(gzip.compress(data) if zipped else data)
    return directory / f"All_Beauty{suffix}"


AMAZON_REVIEWS = [json.dumps({"rating": 5.0, "title": "ok", "text": "good", "asin": "B1", "parent_asin": "P1",
                              "user_id": "U1", "timestamp": 1588687728923}),
                  json.dumps({"rating": 3.0, "asin": "B2", "parent_asin": "P2", "user_id": "U1",
                              "timestamp": 1588687729923})]
AMAZON_META = [json.dumps({"parent_asin": "P1", "title": "Soap", "features": ["mild", "vegan"],
                           "description": [], "categories": ["Beauty", "Bath"], "store": "Acme",
                           "main_category": "All Beauty"}),
               json.dumps({"parent_asin": "P2", "title": "Brush", "store": None})]


@pytest.mark.parametrize("zipped", [False, True])
def test_amazon_2023(tmp_path, zipped):
    path = amazon_files(tmp_path, AMAZON_REVIEWS, AMAZON_META, zipped)
    src = read_source(DataConfig(format="amazon", path=str(path)), need_rating=True)
    items = src.items.set_index("item_id")
    assert items.loc["P1", "features"] == "mild; vegan" and items.loc["P1", "categories"] == "Beauty; Bath"
    assert items.loc["P2", "store"] == "" and src.interactions["item_id"].tolist() == ["P1", "P2"]


def test_generic_table_with_column_mapping(tmp_path):
    pd.DataFrame({"reviewer": ["a", "a", "b"], "asin": ["x", "y", "x"], "stars": [5, 1, 4],
                  "when": ["2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z", "1577836800"]}).to_parquet(
        tmp_path / "interactions.parquet")
    write(tmp_path / "items.jsonl", '{"asin": "x", "name": "X"}\n{"asin": "y", "name": "Y"}\n')
    cfg = DataConfig(format="table", path=str(tmp_path),
                     columns={"user_id": "reviewer", "item_id": "asin", "rating": "stars", "timestamp": "when"})
    src = read_source(cfg, need_rating=True)
    assert src.interactions["timestamp"].tolist() == [1577836800.0, 1577923200.0, 1577836800.0]
    assert src.items.columns.tolist() == ["item_id", "name"]
