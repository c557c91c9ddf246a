"""index / recommend / explain on a tiny retrieval export, and their answers to bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import run_cli
from tests.tiny_exports import write_export
from translrec_dist.errors import DataError
from translrec_dist.program import load_recommender

RETRIEVAL = ["task=retrieval", "model.pooling=mean", "model.temperature=0.2"]


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """A tiny retrieval export (random weights, written in-process: what is tested is serving, not training)."""
    return write_export(tmp_path_factory.mktemp("serve") / "final", *RETRIEVAL)


@pytest.mark.slow
def test_index_and_recommend_cli(export: Path, tmp_path: Path):
    new = tmp_path / "new_items.csv"
    pd.DataFrame({"item_id": ["new1"], "title": ["Galaxy Robot Starship"], "category": ["scifi"],
                  "description": ["A laser planet"]}).to_csv(new, index=False)
    proc = run_cli(["index", "--model", str(export), "--items", str(new)])
    assert json.loads(proc.stdout)["items"] == 61
    proc = run_cli(["recommend", "--model", str(export), "--user", "3", "--top-k", "5", "--exclude-seen"])
    recs = json.loads(proc.stdout)
    assert len(recs) == 5 and {"item_id", "title", "score"} <= set(recs[0])
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)

    rec = load_recommender(export, device="cpu")
    seen = set(rec.user_history("3"))
    assert not seen & {r["item_id"] for r in recs}
    # the new item was indexed from its text alone: its vector is the item tower on that text
    row = int(np.flatnonzero(rec.item_ids == "new1")[0])
    text = "Galaxy Robot Starship . scifi . A laser planet"
    torch.testing.assert_close(rec.embeddings[row], rec.scorer.encode([text], "items")[0], rtol=1e-4, atol=1e-5)
    by_history = rec.recommend(history=[text], top_k=3)
    assert len(by_history) == 3


@pytest.mark.slow
def test_bad_input_gives_one_clear_message(export: Path, tmp_path: Path):
    rec = load_recommender(export, device="cpu", index=False)
    with pytest.raises(DataError, match="unknown user"):
        rec.recommend(user="no-such-user")
    with pytest.raises(DataError, match="no history"):
        rec.recommend(history=["", "  "])
    empty = tmp_path / "empty.csv"
    pd.DataFrame({"item_id": ["e1", "e2"], "title": ["fine", ""]}).to_csv(empty, index=False)
    proc = run_cli(["index", "--model", str(export), "--items", str(empty)], check=False)
    assert proc.returncode == 2 and "line 3" in proc.stderr and "empty text" in proc.stderr
    assert "Traceback" not in proc.stderr

    # an index built by another model (here: the same files with different weights)
    other = tmp_path / "other"
    shutil.copytree(export, other)
    rec.build_index()
    rec.save_index(other / "index")
    from safetensors.torch import load_file, save_file

    weights = load_file(str(other / "model.safetensors"))
    save_file({k: v + 0.01 for k, v in weights.items()}, str(other / "model.safetensors"))
    proc = run_cli(["recommend", "--model", str(other), "--user", "3"], check=False)
    assert proc.returncode == 2 and "different model" in proc.stderr and "Traceback" not in proc.stderr


def test_explain_ranks_history_items_by_score_drop(export: Path):
    rec = load_recommender(export, device="cpu", index=False)
    result = rec.explain("3", "5")
    drops = [h["drop"] for h in result["history"]]
    assert drops == sorted(drops, reverse=True)
    assert len(drops) == min(4, len(rec.user_history("3")))  # data.history_length=4 items are shown
    _, _, text = rec.source()
    item_vec = rec.scorer.encode([text["5"]], "items")[0]
    shown = rec.user_history("3")[::-1][:4]
    for h in result["history"]:
        rest = [i for i in shown if i != h["item_id"]]
        query = " ; ".join(text[i] for i in rest)
        expected = float(rec.scorer.encode([query], "users")[0] @ item_vec)
        assert h["score_without"] == pytest.approx(expected, abs=1e-5)
        assert h["drop"] == pytest.approx(result["score"] - expected, abs=1e-5)
