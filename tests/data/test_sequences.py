from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from translrec_dist.data.sequences import PAD, build_sequence_data, eval_histories, training_windows

ITEMS = pd.DataFrame({"item_id": list("abcdefgh"), "title": list("ABCDEFGH")})


def interactions():
    # u: a b c d e f (c and d share a timestamp: file order kept); v: b a g h; w: a b (too short to split)
    rows = [("u", i, t) for i, t in zip("abdcef", [1, 2, 3, 3, 4, 5], strict=True)]
    rows += [("v", i, t) for i, t in zip("bagh", [1, 2, 3, 4], strict=True)] + [("w", "a", 1), ("w", "b", 2)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_leave_one_out_sequences_keep_valid_and_test_items_out_of_training(tiny_cfg):
    data = build_sequence_data(interactions(), ITEMS, tiny_cfg("task=sequential"))
    assert list(data.item_ids) == list("abcdefgh")  # catalog in file order
    train = dict(zip(data.train_users, [s.tolist() for s in data.train], strict=True))
    assert train == {"u": [0, 1, 3, 2], "v": [1, 0], "w": [0, 1]}  # u's e (valid) and f (test) are not there
    test = data.evals["test"].set_index("user_id")
    valid = data.evals["valid"].set_index("user_id")
    assert test.loc["u", "label"] == 5 and test.loc["u", "history"] == [0, 1, 3, 2, 4]
    assert valid.loc["u", "label"] == 4 and valid.loc["u", "history"] == [0, 1, 3, 2]
    assert test.loc["v", "label"] == 7 and bool(test.loc["v", "cold"])  # h never trained
    assert "w" not in test.index
    assert data.popularity.tolist() == [3, 3, 1, 1, 0, 0, 0, 0]


def test_cold_items_leave_every_training_sequence_but_stay_evaluated(tiny_cfg):
    cfg = tiny_cfg("task=sequential", "data.synthetic.num_items=60", "data.cold_item_fraction=0.2")
    from translrec_dist.data.stages import read_source

    data = build_sequence_data(*read_source(cfg), cfg)
    assert data.cold_items.sum() == 12 and data.num_items == 60
    trained = np.concatenate(data.train)
    assert not data.cold_items[trained].any()
    assert (data.popularity[data.cold_items] == 0).all()
    test = data.evals["test"]
    cold_targets = data.cold_items[test["label"].to_numpy()]
    assert cold_targets.any() and test["cold"].to_numpy()[cold_targets].all()
    # Same seed, same held-out items; another seed, others.
    again = build_sequence_data(*read_source(cfg), cfg)
    assert (again.cold_items == data.cold_items).all()


def test_windows_train_every_position_once_and_cover_long_sequences():
    seq = np.arange(10)
    w = training_windows([seq, np.array([3, 4])], max_history=4)
    targets = [t for row in w for t, i in zip(row[1:], row[:-1], strict=True) if t != PAD and i != PAD]
    assert sorted(targets) == sorted([*range(1, 10), 4])  # every item but the first of a sequence, once
    assert w.tolist()[0] == [5, 6, 7, 8, 9]  # newest window first, right-aligned
    assert w.tolist()[-1] == [PAD, PAD, PAD, 3, 4]
    # Inputs precede targets: no position sees its own target.
    assert all(row[k] < row[k + 1] for row in w[:-1] for k in range(4) if row[k] != PAD)
    shorter = training_windows([seq], max_history=4, stride=2)
    assert len(shorter) > 3 and shorter.tolist()[0] == [5, 6, 7, 8, 9]


def test_eval_histories_are_right_aligned_and_truncated():
    frame = pd.DataFrame({"history": [[1, 2, 3, 4, 5], [7]]})
    assert eval_histories(frame, 3).tolist() == [[3, 4, 5], [PAD, PAD, 7]]


def test_sequential_config_errors_name_the_key(tiny_cfg):
    import pytest

    from translrec_dist.errors import ConfigError

    for bad, key in [("data.cold_item_fraction=1.0", "data.cold_item_fraction"),
                     ("data.max_history=0", "data.max_history"), ("model.sequence.heads=3", "model.sequence.hidden"),
                     ("model.sequence.adaptor=big", "model.sequence.adaptor"),
                     ("model.sequence.unknown_id=learned", "model.sequence.unknown_id")]:  # without id_dropout
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            tiny_cfg("task=sequential", bad)
    assert tiny_cfg("task=sequential", "data.streaming=true").data.streaming  # streams prepared windows
    ids = tiny_cfg("task=sequential", "model.tiny=null", "model.sequence.item_repr=id")  # SASRec reads no text
    assert ids.model.name_or_path is None and ids.model.tiny is None


def write_inter_only(directory, users: int = 30, items: int = 20):
    """A RecBole folder with NAME.inter and no NAME.item (ids only), seeded."""
    import numpy as np

    rng = np.random.default_rng(0)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(users):
        for t, i in enumerate(rng.choice(items, size=6, replace=False)):
            lines.append(f"u{u}\ti{i}\t4\t{t}")
    directory.mkdir()
    (directory / "ids.inter").write_text("\n".join(lines) + "\n")
    return directory


def test_id_only_sequences_need_no_item_file(tiny_cfg, tmp_path):
    """model.sequence.item_repr=id reads no text, so a RecBole folder without NAME.item is enough; a model that
    reads item text still refuses it."""
    from translrec_dist.data.stages import read_source
    from translrec_dist.errors import DataError

    path = write_inter_only(tmp_path / "ids")
    ids = tiny_cfg("task=sequential", "model.tiny=null", "model.sequence.item_repr=id", "data.format=recbole",
                   f"data.path={path}")
    inter, items = read_source(ids)
    assert len(inter) == 180 and set(items["item_id"]) == set(inter["item_id"]) and list(items.columns) == ["item_id"]
    data = build_sequence_data(inter, items, ids)
    assert data.num_items == items["item_id"].nunique()
    text = tiny_cfg("task=sequential", "data.format=recbole", f"data.path={path}")
    with pytest.raises(DataError, match=r"has no ids.item beside it"):
        read_source(text)
