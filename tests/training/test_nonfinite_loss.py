"""A diverged run (NaN loss) skips its optimizer steps on every rank, keeps the last good checkpoint and
exits non-zero with a message after train.max_bad_steps steps in a row."""

from __future__ import annotations

import pytest

from tests.conftest import FAST, TINY, accelerate_launch, run_cli
from translrec_dist.run_dir import RunDir


@pytest.mark.slow
def test_nan_loss_stops_two_processes_and_keeps_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    # lr=3e37: the first update pushes weights to ~1e38; step 1 has a finite loss, every later forward is NaN
    proc = run_cli(["train", str(TINY), *FAST, f"output_dir={out}", "train.lr=3e37", "train.warmup_ratio=0",
                    "train.max_steps=50", "train.log_every=1", "train.checkpoint_every=1", "train.max_bad_steps=3"],
                   launcher=accelerate_launch(2, 29831, "--multi_gpu"), env={"ACCELERATE_USE_CPU": "true"},
                   check=False, timeout=300)
    assert proc.returncode != 0
    assert "loss was NaN/inf for 3 consecutive optimizer steps (steps 2-4, train.max_bad_steps=3)" in proc.stderr
    assert f"The last good checkpoint is {out}/checkpoints/step_1" in proc.stderr
    # both ranks agreed on the stop (each prints the error), nothing after the last good step was written
    assert proc.stderr.count("translrec: error: loss was NaN/inf") == 2, proc.stderr[-3000:]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_1"]
    assert (out / "checkpoints" / "step_1" / "trainer_state.json").is_file()
    assert not (out / "final").exists() and not RunDir(out).eval.exists()
