"""task=retrieval streams its user histories from prepared shards with 2 processes (CPU DDP): the ranks' examples
are disjoint, and a run interrupted then resumed takes exactly the remaining batches and ends with the weights of
the uninterrupted run."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import FAST, TINY, accelerate_launch, run_cli
from tests.data.test_streaming_ddp import ENV, trace, weights
from translrec_dist.run_dir import RunDir

pytestmark = pytest.mark.slow
STEPS, STOP = 8, 3


def test_retrieval_streams_disjoint_per_rank_and_resumes_exactly(tmp_path):
    common = [*FAST, "task=retrieval", "model.pooling=mean", "model.temperature=0.2", "data.streaming=true",
              f"data.cache_dir={tmp_path / 'cache'}", "data.num_shards=4", "data.shuffle_buffer=64",
              "data.record_example_ids=true", f"train.max_steps={STEPS}", "eval.splits=[test]"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    prepared = json.loads(run_cli(["prepare", str(TINY), *common, f"output_dir={full}"]).stdout.splitlines()[-1])
    assert prepared["catalog_examples"] == 60 and prepared["train_shards"] == 4

    run_cli(["train", str(TINY), *common, f"output_dir={full}"], launcher=accelerate_launch(2, 29731, "--multi_gpu"),
            env=ENV)
    stopped = run_cli(["train", str(TINY), *common, f"output_dir={cut}", f"train.stop_after_steps={STOP}"],
                      launcher=accelerate_launch(2, 29732, "--multi_gpu"), env=ENV)
    assert json.loads(stopped.stdout.splitlines()[-1]) == {"stopped": True, "step": STOP}
    before = trace(cut)
    resumed_run = run_cli(["train", str(TINY), *common, f"output_dir={cut}", "train.resume_from=auto"],
                          launcher=accelerate_launch(2, 29733, "--multi_gpu"), env=ENV)
    assert f"resumed from {RunDir(cut).checkpoint(STOP)} at step {STOP}" in resumed_run.stderr

    whole = trace(full)
    ids = [[i for b in whole[r] for i in b[2:]] for r in (0, 1)]
    assert len(ids[0]) == len(ids[1]) == STEPS * 8
    assert not set(ids[0]) & set(ids[1]) and len(set(ids[0] + ids[1])) == 2 * STEPS * 8  # disjoint, none twice

    resumed = trace(cut)
    for r in (0, 1):
        assert len(before[r]) == STOP and before[r] == whole[r][:STOP]
        assert len(resumed[r]) - len(before[r]) == STEPS - STOP  # the second run took only the remaining steps
        assert resumed[r] == whole[r]
    a, b = weights(full), weights(cut)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
