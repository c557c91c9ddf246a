"""task=sequential streams its prepared user windows with 2 processes (CPU DDP): the ranks' windows are disjoint,
a run stopped mid-epoch then resumed takes exactly the remaining batches and ends with the weights of the
uninterrupted run, and the exported catalog is the one built from the raw data.

The three runs share one launch (tests/tasks/sequential_stream_worker.py) to keep CI time down."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import REPO, TINY
from tests.data.test_streaming_ddp import trace, weights
from tests.run_files import launch_two
from tests.tasks.sequential_stream_worker import STEPS_PER_EPOCH, STOP, common
from translrec_dist.cli import main
from translrec_dist.config.loader import load_config
from translrec_dist.run_dir import RunDir
from translrec_dist.tasks.sequential import catalog_of

pytestmark = pytest.mark.slow


def test_sequential_streams_disjoint_per_rank_and_resumes_exactly(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["prepare", str(TINY), *common(tmp_path), f"output_dir={full}"]) == 0  # the runs reuse it
    text = launch_two(REPO / "tests/tasks/sequential_stream_worker.py", tmp_path, 29751)
    full_result, stopped, resumed_result = json.loads((tmp_path / "results.json").read_text())
    assert stopped == {"stopped": True, "step": STOP} and "ndcg@10_masked" in resumed_result
    assert text.count("prepared data is up to date") == 3  # every run streamed the shards prepare wrote
    assert f"resumed from {RunDir(cut).checkpoint(STOP)} at step {STOP}" in text
    assert f"{2 * STEPS_PER_EPOCH - STOP} optimizer steps in this run ({STOP + 1}-{2 * STEPS_PER_EPOCH})" in text
    state = json.loads((RunDir(cut).checkpoint(STOP) / "trainer_state.json").read_text())
    assert state["data"]["epoch"] == 1 and state["data"]["batches_into_epoch"] == STOP - STEPS_PER_EPOCH  # mid-epoch

    whole = trace(full)
    for epoch in (0, 1):  # per epoch: every rank takes the same steps, on windows the other rank does not see
        ids = [[i for b in whole[r] if b[0] == epoch for i in b[2:]] for r in (0, 1)]
        assert len(ids[0]) == len(ids[1]) == STEPS_PER_EPOCH * 8
        assert not set(ids[0]) & set(ids[1]) and len(set(ids[0] + ids[1])) == 2 * STEPS_PER_EPOCH * 8

    resumed = trace(cut)  # the stopped run's batches, then the resumed run's
    for r in (0, 1):
        assert resumed[r][:STOP] == whole[r][:STOP]
        assert len(resumed[r]) == len(whole[r]) == 2 * STEPS_PER_EPOCH  # the second run took only the rest
        assert resumed[r] == whole[r]
    a, b = weights(full), weights(cut)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)

    # The catalog a streamed run exports (read from the prepared files) is the one built from the raw data.
    cfg = load_config(TINY, [*common(tmp_path), f"output_dir={full}"])
    assert json.loads((full / "final" / "catalog.json").read_text()) == catalog_of(cfg)
