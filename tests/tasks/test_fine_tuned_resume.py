"""task=sequential with a fine-tuned item encoder (top layer over cached lower-layer states), 2 processes (CPU DDP):
a run stopped after a few steps and resumed ends with the weights of the uninterrupted run, the encoder's
included, and the resumed run reads the lower layers' states its first part cached."""

from __future__ import annotations

import json
import re

import pytest
import torch

from tests.conftest import REPO, TINY
from tests.data.test_streaming_ddp import weights
from tests.run_files import launch_two
from tests.tasks.fine_tuned_resume_worker import STOP, common
from translrec_dist.config.loader import load_config
from translrec_dist.run_dir import RunDir
from translrec_dist.tasks.sequential import catalog_of, item_encoder

pytestmark = pytest.mark.slow


def test_fine_tuned_sequential_run_resumes_to_the_uninterrupted_weights(tmp_path):
    text = launch_two(REPO / "tests/tasks/fine_tuned_resume_worker.py", tmp_path, 29753)
    full_result, stopped, resumed = json.loads((tmp_path / "results.json").read_text())
    assert stopped == {"stopped": True, "step": STOP} and "ndcg@10_masked" in resumed
    cut = tmp_path / "cut"
    total = int(re.search(r"training (\d+) steps", text).group(1))
    assert total > STOP + 3  # the resumed part trains the encoder after its warm-up and refreshes
    assert f"resumed from {RunDir(cut).checkpoint(STOP)} at step {STOP}" in text
    assert f"{total - STOP} optimizer steps in this run ({STOP + 1}-{total})" in text
    # each run's main process encoded the lower layers once; the resumed run read the stopped run's file
    assert text.count("through 1 frozen layers") == 2
    assert len(list(RunDir(cut).layer_states.iterdir())) == 1

    a, b = weights(tmp_path / "full"), weights(cut)
    assert a.keys() == b.keys() and any(k.startswith("model.safetensors:") for k in a)  # the trained encoder
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    # against the encoder the run started from: the frozen layer is unchanged, the top layer trained
    cfg = load_config(TINY, [*common(), f"output_dir={cut}"])
    start = item_encoder(cfg, catalog_of(cfg)["texts"])[0].state_dict()
    lower = [k for k in start if k.startswith("encoder.layer.0.")]
    top = [k for k in start if k.startswith("encoder.layer.1.")]
    assert lower and top
    for k in lower:
        torch.testing.assert_close(b[f"model.safetensors:{k}"], start[k], rtol=0, atol=0, msg=k)
    assert any(not torch.allclose(b[f"model.safetensors:{k}"], start[k]) for k in top)
