"""task=retrieval end to end on the tiny model: training, evaluation, 2-process cross-rank negatives."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import FAST, TINY, accelerate_launch, run_cli
from translrec_dist.run_dir import RunDir

pytestmark = pytest.mark.slow  # trains through the CLI (serving: tests/serving/test_http.py)

RETRIEVAL = ["task=retrieval", "model.pooling=mean", "model.temperature=0.2"]


@pytest.fixture(scope="module")
def retrieval_run(tmp_path_factory) -> Path:
    """One trained tiny retrieval model shared by the tests of this module and of test_serving."""
    out = tmp_path_factory.mktemp("retrieval") / "run"
    run_cli(["train", str(TINY), *FAST, *RETRIEVAL, "train.epochs=6", "eval.splits=[valid,test]",
             "eval.every_steps=100", "eval.best_metric=ndcg@10", f"output_dir={out}"])
    return out


def test_retrieval_trains_and_reports_full_catalog_metrics(retrieval_run: Path):
    result = json.loads(RunDir(retrieval_run).eval.read_text())
    for key in ("ndcg@10", "recall@10", "ndcg@50", "recall@50", "mrr", "ndcg@10_masked", "mrr_masked", "num_cold"):
        assert key in result
    assert ("cold_ndcg@10" in result) == (result["num_cold"] > 0)  # cold_* only when there are cold targets
    assert result["num_items"] == 60 and result["num_examples"] == 80
    # 60 items: a random ranking has recall@10 ~ 1/6 and ndcg@10 ~ .07; the synthetic categories are learnable
    assert result["ndcg@10_masked"] > 0.15
    assert result["valid"]["ndcg@10"] > 0
    best = json.loads((retrieval_run / "checkpoints" / "best" / "trainer_state.json").read_text())
    assert best["metric"] == "ndcg@10" and best["step"] % 100 == 0
    # the exported model is the best validated one: the last step's, or the restored best state
    assert result["valid"]["ndcg@10"] >= best["value"] - 1e-9
    assert result["step"] == result["valid"]["step"]
    assert (retrieval_run / "final" / "model.safetensors").is_file()


@pytest.mark.slow
def test_two_processes_with_gathered_negatives_evaluate_like_one(tmp_path: Path):
    out = tmp_path / "ddp"
    args = ["train", str(TINY), *FAST, *RETRIEVAL, "train.gather_negatives=true", "train.max_steps=6",
            f"output_dir={out}"]
    run_cli(args, launcher=accelerate_launch(2, 29913, "--multi_gpu"),
            env={"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"})
    distributed = json.loads(RunDir(out).eval.read_text())
    # the same export scored by one process: the catalog slices of the two ranks were put back in order
    proc = run_cli(["evaluate", str(TINY), *FAST, *RETRIEVAL, f"output_dir={out}"])
    single = json.loads(proc.stdout)
    for key in ("ndcg@10", "recall@50", "mrr", "ndcg@10_masked", "mrr_masked"):
        assert single[key] == pytest.approx(distributed[key], abs=1e-6), key
    assert single["num_examples"] == distributed["num_examples"] == 80
    assert os.path.isfile(out / "final" / "config.json")
