"""2 processes (CPU DDP, gloo) streaming the prepared shards: ranks disjoint and covering the epoch, and a run
interrupted mid-epoch then resumed sees exactly the remaining batches and ends with the same weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import FAST, TINY, accelerate_launch, run_cli

pytestmark = pytest.mark.slow
ENV = {"ACCELERATE_USE_CPU": "true"}


def trace(run) -> dict[int, list[list[int]]]:
    """rank -> consumed batches, each as [epoch, batch index, example ids...]."""
    files = {r: run / "example_ids" / f"rank{r}.txt" for r in (0, 1)}
    return {r: [list(map(int, line.split())) for line in f.read_text().splitlines()] for r, f in files.items()}


def weights(run) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted((run / "final").glob("*.safetensors")):
        out.update({f"{f.name}:{k}": v for k, v in load_file(f).items()})
    assert out
    return out


def test_streaming_two_ranks_cover_epoch_and_resume_exactly(tmp_path):
    common = [*FAST, f"data.cache_dir={tmp_path / 'cache'}", "data.streaming=true", "data.num_shards=4",
              "data.shuffle_buffer=64", "data.record_example_ids=true", "train.epochs=2", "eval.splits=[test]"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    prepared = json.loads(run_cli(["prepare", str(TINY), *common, f"output_dir={full}"]).stdout.splitlines()[-1])
    manifest = json.loads((tmp_path / "cache" / prepared["prepared"].split("/")[-1] / "manifest.json").read_text())

    run_cli(["train", str(TINY), *common, f"output_dir={full}"], launcher=accelerate_launch(2, 29711, "--multi_gpu"),
            env=ENV)
    stopped = run_cli(["train", str(TINY), *common, f"output_dir={cut}", "train.stop_after_steps=17"],
                      launcher=accelerate_launch(2, 29712, "--multi_gpu"), env=ENV)
    assert '"stopped": true' in stopped.stdout
    before = trace(cut)
    run_cli(["train", str(TINY), *common, f"output_dir={cut}", "train.resume_from=auto"],
            launcher=accelerate_launch(2, 29713, "--multi_gpu"), env=ENV)

    # Coverage: in each epoch the two ranks' ids are disjoint, nothing is seen twice, and only the uneven
    # tail (less than a global batch plus one row per shard) is left for the next epoch's order.
    whole = trace(full)
    spe = len(whole[0]) // 2
    state = json.loads((full / "checkpoints" / f"step_{2 * spe}" / "trainer_state.json").read_text())
    assert state["data"]["steps_per_epoch"] == spe and state["world_size"] == 2
    n_train = manifest["splits"]["train"]["examples"]
    for epoch in (0, 1):
        ids = [[i for b in whole[r] if b[0] == epoch for i in b[2:]] for r in (0, 1)]
        assert len(ids[0]) == len(ids[1]) == spe * 8
        seen = ids[0] + ids[1]
        assert len(set(seen)) == len(seen) and set(seen) <= set(range(n_train))
        assert n_train - len(seen) < 16 + 4

    # Resume: the interrupted run stopped after 17 steps, the resumed one consumed exactly the rest, in the
    # same batches as the uninterrupted run, and the final weights are the same.
    resumed = trace(cut)
    for r in (0, 1):
        assert len(before[r]) == 17 and before[r] == whole[r][:17]
        assert resumed[r] == whole[r]
    a, b = weights(full), weights(cut)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
