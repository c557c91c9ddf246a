import numpy as np
import pandas as pd
import pytest

from translrec_dist.config.schema import DataConfig
from translrec_dist.data.examples import build_examples, chronological_order, render_item_texts, split_text_label
from translrec_dist.errors import ConfigError


def items(n=20):
    return pd.DataFrame({"item_id": [str(i) for i in range(n)], "title": [f"title{i}" for i in range(n)],
                         "genre": ["g" + str(i % 3) for i in range(n)]})


def test_equal_timestamps_keep_file_order_not_item_id():
    # user a: items 9, 3, 5 all at t=10 in file order; sorting by item id would give 3, 5, 9.
    inter = pd.DataFrame({"user_id": ["a", "b", "a", "a"], "item_id": ["9", "1", "3", "5"],
                          "timestamp": [10.0, 5.0, 10.0, 10.0]})
    ordered = chronological_order(inter)
    assert ordered[ordered.user_id == "a"].item_id.tolist() == ["9", "3", "5"]


def test_leave_one_out_split_history_and_negatives():
    rng = np.random.default_rng(0)
    rows = [("u", str(i), 5.0, float(t)) for t, i in enumerate(rng.permutation(20)[:8])]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    cfg = DataConfig(history_length=3, negatives_per_positive=2, item_text="{title}", history_separator=" | ")
    ex = build_examples(inter, items(), cfg, "click", seed=1)
    seq = inter.item_id.tolist()
    test, valid, train = ex.splits["test"], ex.splits["valid"], ex.splits["train"]
    # last interaction -> test, the one before -> valid, each with 2 negatives
    assert test.item_id.iloc[0] == seq[-1] and valid.item_id.iloc[0] == seq[-2]
    assert len(test) == 3 and test.label.tolist() == [1.0, 0.0, 0.0]
    # history is the 3 most recent items before the target, newest first
    assert test.text.iloc[0] == " | ".join(f"title{i}" for i in seq[-2:-5:-1])
    # negatives are never items the user interacted with
    negs = pd.concat([train, valid, test]).query("label == 0").item_id
    assert not set(negs) & set(seq) and len(negs) == 2 * (len(train) // 3 + 2)
    # example ids are unique across splits
    ids = pd.concat([train, valid, test]).example_id
    assert ids.is_unique


def test_negative_sampling_is_seeded():
    inter = pd.DataFrame({"user_id": ["u"] * 6, "item_id": [str(i) for i in range(6)],
                          "timestamp": np.arange(6.0)})
    cfg = DataConfig(negatives_per_positive=3, item_text="{title}")
    a = build_examples(inter, items(), cfg, "click", seed=7).splits["train"]
    b = build_examples(inter, items(), cfg, "click", seed=7).splits["train"]
    c = build_examples(inter, items(), cfg, "click", seed=8).splits["train"]
    assert a.item_id.tolist() == b.item_id.tolist() and a.item_id.tolist() != c.item_id.tolist()


def test_threshold_labels_and_rating_task():
    inter = pd.DataFrame({"user_id": ["u"] * 5, "item_id": list("01234"), "rating": [5, 1, 4, 2, 5.0],
                          "timestamp": np.arange(5.0)})
    cfg = DataConfig(negatives_per_positive=0, positive_threshold=4, eval_items_per_user=1, item_text="{title}")
    train = build_examples(inter, items(), cfg, "click", seed=0).splits["train"]
    assert train.label.tolist() == [0.0, 1.0]  # items 1 (rating 1) and 2 (rating 4); item 0 has no history
    rating = build_examples(inter, items(), cfg, "rating", seed=0).splits["train"]
    assert rating.label.tolist() == [1.0, 4.0]


def test_item_template_and_truncation():
    cfg = DataConfig(item_text="{title} ({genre})", max_field_chars=4)
    assert render_item_texts(items(2), cfg).tolist() == ["titl (g0)", "titl (g1)"]
    with pytest.raises(ConfigError, match="year"):
        render_item_texts(items(2), DataConfig(item_text="{title} {year}"))


def test_text_label_split_and_resampling():
    df = pd.DataFrame({"text": [f"t{i}" for i in range(100)], "label": [1.0] * 10 + [0.0] * 90,
                       "line": np.arange(100) + 2})
    splits = split_text_label(df, DataConfig(valid_fraction=0.1, test_fraction=0.1, resample="oversample"), 0)
    assert len(splits["valid"]) == 10 and len(splits["test"]) == 10
    train = splits["train"]
    assert (train.label == 1).sum() == (train.label == 0).sum()  # balanced by oversampling
    held_out = set(splits["valid"].text) | set(splits["test"].text)
    assert not held_out & set(train.text)  # no leakage from resampling


def test_a_missing_template_column_says_how_to_fix_it_in_training_and_for_new_items():
    """The same template renders an export's new items (translrec index --items, which takes no overrides):
    the message names the template, so the file can be given its columns."""
    import pandas as pd

    from translrec_dist.config.schema import DataConfig
    from translrec_dist.data.examples import render_item_texts
    from translrec_dist.errors import ConfigError

    items = pd.DataFrame({"item_id": ["n1"], "title": ["Galaxy Robot"]})
    with pytest.raises(ConfigError) as e:
        render_item_texts(items, DataConfig(item_text="{title}. Genres: {genres}"))
    message = str(e.value)
    assert "field {genres} is not an items column; available: title" in message
    assert "translrec index --items" in message and "'{title}. Genres: {genres}'" in message
