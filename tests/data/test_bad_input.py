"""The bad-input policy: structural errors stop with file + line; row-level problems are counted by kind,
left out, reported, and stop the run above data.max_bad_fraction."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from translrec_dist.config.schema import DataConfig
from translrec_dist.data.readers.source import read_source
from translrec_dist.errors import DataError

HEADER = "user_id,item_id,rating,timestamp\n"
GOOD = "".join(f"u{i % 3},i{i % 4},4,{1000 + i}\n" for i in range(8))
ITEMS = "item_id,title\ni0,Zero\ni1,One\ni2,Two\ni3,Three\n"


def table_dir(tmp_path: Path, inter: bytes | str, items: bytes | str = ITEMS) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, content in (("interactions.csv", inter), ("items.csv", items)):
        (tmp_path / name).write_bytes(content.encode() if isinstance(content, str) else content)
    return tmp_path


def read(path: Path, fmt="interactions", allow=1.0):
    return read_source(DataConfig(format=fmt, path=str(path), max_bad_fraction=allow), need_rating=True)


def assert_row_policy(path: Path, kind: str, where: str, fmt="interactions", n=1):
    """Allowed: the bad row is left out and counted with its file:line. Default budget: the run stops."""
    src = read(path, fmt)
    assert src.report["bad_rows"] == {kind: n}
    assert src.report["bad_row_examples"][kind][0].startswith(where)
    with pytest.raises(DataError, match=f"{kind}=1.*data.max_bad_fraction|max_bad_fraction.*{kind}"):
        read(path, fmt, allow=0.001)
    return src


def test_truncated_gzip(tmp_path):
    review = json.dumps({"user_id": "U", "parent_asin": "P", "rating": 5, "timestamp": 1}) + "\n"
    data = gzip.compress((review * 2000).encode())
    (tmp_path / "Cat.jsonl.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "meta_Cat.jsonl.gz").write_bytes(gzip.compress(b'{"parent_asin": "P", "title": "t"}\n'))
    with pytest.raises(DataError, match=r"Cat\.jsonl\.gz: the gzip stream is broken after line \d+.*truncated"):
        read(tmp_path / "Cat.jsonl.gz", "amazon")


def test_jsonl_line_not_json(tmp_path):
    good = [json.dumps({"user_id": f"U{i}", "parent_asin": "P", "rating": 5, "timestamp": i}) for i in range(5)]
    (tmp_path / "Cat.jsonl").write_text("\n".join([*good[:2], '{"user_id": "U9", "rating": ', *good[2:]]) + "\n")
    (tmp_path / "meta_Cat.jsonl").write_text('{"parent_asin": "P", "title": "t"}\n')
    src = assert_row_policy(tmp_path / "Cat.jsonl", "not_json", f"{tmp_path / 'Cat.jsonl'}, line 3", fmt="amazon")
    assert len(src.interactions) == 5


def test_csv_row_with_wrong_field_count(tmp_path):
    path = table_dir(tmp_path, HEADER + GOOD + "u1,i1,4\n" + GOOD)
    src = assert_row_policy(path, "wrong_field_count", f"{path / 'interactions.csv'}, line 10")
    assert len(src.interactions) == 16


def test_missing_required_column(tmp_path):
    path = table_dir(tmp_path, "user,item_id,rating\nu,i0,1\n")
    with pytest.raises(DataError, match=r"interactions\.csv: missing column\(s\) user_id; found user, item_id"):
        read(path)
    with pytest.raises(DataError, match="no rating column"):
        read(table_dir(tmp_path, "user_id,item_id\nu,i0\n"))


def test_non_numeric_rating(tmp_path):
    path = table_dir(tmp_path, HEADER + GOOD + "u1,i1,five,2000\n")
    assert_row_policy(path, "bad_rating", f"{path / 'interactions.csv'}, line 10")


def test_unparseable_timestamp(tmp_path):
    path = table_dir(tmp_path, HEADER + "u1,i1,4,2021-03-04T05:06:07Z\n" + GOOD + "u1,i2,4,yesterday\n")
    src = assert_row_policy(path, "bad_timestamp", f"{path / 'interactions.csv'}, line 11")
    assert src.interactions["timestamp"].iloc[0] == 1614834367.0  # ISO 8601 parses


def test_duplicate_item_ids(tmp_path):
    path = table_dir(tmp_path, HEADER + GOOD, ITEMS + "i1,One\ni2,Deux\n")
    src = assert_row_policy(path, "duplicate_item_conflict", f"{path / 'items.csv'}, line 7")
    assert src.report["notes"] == {"duplicate_item_identical": 1}
    assert src.items.set_index("item_id").loc["i2", "title"] == "Two"  # first kept


def test_interaction_without_item_metadata(tmp_path):
    path = table_dir(tmp_path, HEADER + GOOD + "u1,i99,4,2000\n")
    src = assert_row_policy(path, "item_without_metadata", f"{path / 'interactions.csv'}, line 10")
    assert "i99" not in set(src.interactions["item_id"])


def test_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"items\.csv: the file is empty"):
        read(table_dir(tmp_path, HEADER + GOOD, ""))


def test_non_utf8_bytes(tmp_path):
    path = table_dir(tmp_path, (HEADER + GOOD).encode() + b"u1,i1,4,2000\n" + "u\xe9,i1,4,2001\n".encode("latin-1"))
    assert_row_policy(path, "not_utf8", f"{path / 'interactions.csv'}, line 11")


def test_budget_counts_all_kinds_over_all_rows_read(tmp_path):
    """2 bad of 14 rows read (10 interactions + 4 items) = 14.3%: stops at 0.1, passes at 0.15."""
    path = table_dir(tmp_path, HEADER + GOOD + "u1,i1,x,1\nu1,i99,4,2\n")
    with pytest.raises(DataError, match="2 of 14 rows are bad.*bad_rating=1, item_without_metadata=1"):
        read(path, allow=0.1)
    src = read(path, allow=0.15)
    assert src.report["bad_rows"] == {"bad_rating": 1, "item_without_metadata": 1} and len(src.interactions) == 8


@pytest.mark.slow
def test_prepare_command_stops_with_file_and_line(tmp_path):
    from tests.conftest import TINY, run_cli

    path = table_dir(tmp_path / "src", HEADER + GOOD + "u1,i1,five,2000\n")
    proc = run_cli(["prepare", str(TINY), "data.format=interactions", f"data.path={path}",
                    f"output_dir={tmp_path / 'run'}"], check=False)
    assert proc.returncode == 2
    assert f"{path / 'interactions.csv'}, line 10: column rating = 'five' is not a number" in proc.stderr
    assert not (tmp_path / "run" / "prepared").exists() or not list((tmp_path / "run" / "prepared").glob("*/"))
