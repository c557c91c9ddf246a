"""Faults around checkpoints, through the CLI: SIGKILL while a checkpoint is being written, and a checkpoint
damaged afterwards. Each resumed run must say where it resumed from and train exactly the missing steps.

One killed run is shared: it has complete checkpoints at steps 2 and 4 and dies inside the save of step 6."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FAST, REPO, TINY, run_cli
from tests.run_files import metric_rows
from tests.training.cli_hooks import PAUSE_MARKER
from translrec_dist.run_dir import RunDir

pytestmark = pytest.mark.slow
STEPS = 8
ARGS = [str(TINY), *FAST, f"train.max_steps={STEPS}", "train.checkpoint_every=2", "train.keep_checkpoints=3",
        "train.log_every=1", "eval.splits=[test]"]


def logged_steps(out: Path) -> list[int]:
    """Every logged training step in file order: a resumed run repeats the steps after its checkpoint."""
    return [r["step"] for r in metric_rows(out) if "loss" in r]


@pytest.fixture(scope="module")
def killed_in_save(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("killed") / "run"
    log = out.parent / "run.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "tests.training.cli_hooks", "--pause-in-save", "6", "train",
                                 *ARGS, f"output_dir={out}"], cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while PAUSE_MARKER not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)  # in the middle of writing step 6
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    root = out / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step_2", "step_4", "step_6.tmp"]
    assert (root / "step_6.tmp" / "model.safetensors").is_file()  # the ranks had written their files...
    assert not (root / "step_6.tmp" / "trainer_state.json").exists()  # ...but the save never completed
    assert logged_steps(out) == list(range(1, 7))
    return out


def resume(src: Path, dst: Path, truncate: str | None = None) -> tuple[str, float]:
    """A copy of the killed run (optionally with a checkpoint file cut in half) resumed with auto; its log, time."""
    shutil.copytree(src, dst)
    if truncate:
        victim = dst / "checkpoints" / truncate
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    start = time.monotonic()
    proc = run_cli(["train", *ARGS, f"output_dir={dst}", "train.resume_from=auto"])
    return proc.stderr, time.monotonic() - start


def test_sigkill_during_a_save_resumes_from_the_previous_complete_checkpoint(killed_in_save, tmp_path):
    out = tmp_path / "run"
    log, took = resume(killed_in_save, out)
    print(f"\n[fault] SIGKILL inside the save of step 6: resume + 4 steps + eval + export took {took:.1f} s")
    assert re.search(rf"resumed from {re.escape(str(out))}/checkpoints/step_4 at step 4\n", log), log[-3000:]
    assert "skipping checkpoint" not in log
    assert logged_steps(out) == [*range(1, 7), 5, 6, 7, 8]  # the second run trained exactly steps 5-8
    assert json.loads(RunDir(out).eval.read_text())["step"] == STEPS
    assert (out / "checkpoints" / "step_6" / "trainer_state.json").is_file()  # the step was saved again


def test_a_truncated_newest_checkpoint_is_skipped_for_the_one_before(killed_in_save, tmp_path):
    damaged = tmp_path / "run"
    log, took = resume(killed_in_save, damaged, truncate="step_4/model.safetensors")
    print(f"\n[fault] truncated model.safetensors of the newest checkpoint: resume + 6 steps took {took:.1f} s")
    newest = damaged / "checkpoints" / "step_4"
    assert re.search(rf"skipping checkpoint {re.escape(str(newest))}: model.safetensors has \d+ bytes, \d+ were "
                     rf"written", log), log[-3000:]
    assert re.search(rf"resumed from {re.escape(str(damaged))}/checkpoints/step_2 at step 2\n", log), log[-3000:]
    assert logged_steps(damaged) == [*range(1, 7), *range(3, 9)]  # the second run trained exactly steps 3-8
    assert json.loads(RunDir(damaged).eval.read_text())["step"] == STEPS
