import pytest

from translrec_dist.data.tables import read_interactions_dir, read_text_label
from translrec_dist.errors import DataError


def make_dir(tmp_path, inter: str, items: str):
    (tmp_path / "interactions.csv").write_text(inter)
    (tmp_path / "items.csv").write_text(items)
    return tmp_path


ITEMS = "item_id,title\n1,A\n2,B\n"


def test_reads_interactions_and_items(tmp_path):
    inter, items = read_interactions_dir(make_dir(tmp_path, "user_id,item_id,rating,timestamp\nu,1,5,10\n", ITEMS),
                                         need_rating=True)
    assert inter.item_id.tolist() == ["1"] and inter.rating.tolist() == [5.0] and len(items) == 2


@pytest.mark.parametrize("inter, items, expect", [
    ("user_id,item_id\nu,3\n", ITEMS, r"line 2: item_id 3 is not in"),
    ("user_id,item_id,rating\nu,1,five\n", ITEMS, r"line 2: column rating = 'five' is not a number"),
    ("user_id,rating\nu,1\n", ITEMS, "missing column"),
    ("user_id,item_id\nu,1\n", "item_id,title\n", "no rows"),
    ("", ITEMS, "empty"),
])
def test_bad_interactions_name_file_and_row(tmp_path, inter, items, expect):
    with pytest.raises(DataError, match=expect):
        read_interactions_dir(make_dir(tmp_path, inter, items), need_rating=False)


def test_non_utf8_is_reported(tmp_path):
    make_dir(tmp_path, "user_id,item_id\nu,1\n", ITEMS)
    (tmp_path / "items.csv").write_bytes(b"item_id,title\n1,caf\xe9\n")
    with pytest.raises(DataError, match=r"items.csv, line 2: not utf-8"):
        read_interactions_dir(tmp_path, need_rating=False)


def test_text_label_drops_empty_rows_and_rejects_bad_labels(tmp_path, caplog):
    p = tmp_path / "d.csv"
    p.write_text("text,label\nhello,1\n,0\n  ,1\nworld,0\n")
    df = read_text_label(p, max_bad_fraction=0.5)
    assert df.text.tolist() == ["hello", "world"]
    assert "dropped 2 rows with empty text" in caplog.text
    # empty rows are bad rows under data.max_bad_fraction: 2 of 4 stops the default budget
    with pytest.raises(DataError, match=r"2 of 4 rows are bad.*empty_text=2.*d\.csv, line 3: empty text"):
        read_text_label(p)
    p.write_text("text,label\nhello,1\nworld,2\n")
    with pytest.raises(DataError, match=r"line 3: label '2' is not 0 or 1"):
        read_text_label(p)
    with pytest.raises(DataError, match="not found"):
        read_text_label(tmp_path / "missing.csv")
