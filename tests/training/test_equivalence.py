"""1 process, DDP, ZeRO-2 and ZeRO-3 (2 real CPU processes each) end with the same weights after a few plain SGD
steps, through the CLI.

SGD, not AdamW: AdamW's first steps are about lr * sign(grad), so a missing gradient average, a loss scaled twice
by the accumulation or a rank that skips its all-reduce barely moves them; an SGD step is lr * grad, and each of
those bugs moves the weights by about one update (checked below to be >= 1e-3, three orders above the tolerance).
No clipping (it would rescale a doubled gradient back) and no dropout (each process count draws other masks)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import FAST, REPO, TINY, run_cli
from tests.run_files import losses
from tests.training.test_zero_distributed import ENV

pytestmark = pytest.mark.slow
STEPS = 4
TOL = 1e-6
COMMON = [*FAST, f"train.max_steps={STEPS}", "train.grad_accum=2", "train.log_every=1", "train.lr=0.1",
          "train.schedule=constant", "train.warmup_ratio=0", "train.max_grad_norm=null", "train.checkpoint_every=null",
          "model.tiny.hidden_dropout_prob=0", "model.tiny.attention_probs_dropout_prob=0", "model.head_dropout=0",
          "eval.splits=[test]"]
SGD_TRAIN = ["--sgd", "train", str(TINY), *COMMON]
TWO = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
       str(REPO / "configs" / "accelerate" / "cpu_ddp.yaml"), "--num_processes", "2"]
# name: (launcher, extra overrides); every global batch is 16 examples x 2 accumulation steps
RUNS = {"one": ([sys.executable], ["train.micro_batch_size=16", "train.checkpoint_every=1",
                                   f"train.keep_checkpoints={STEPS}"]),
        "ddp": ([*TWO, "--main_process_port", "29641"], ["train.micro_batch_size=8"]),
        "zero2": ([*TWO, "--main_process_port", "29642"], ["train.micro_batch_size=8", "train.distributed=zero2"]),
        "zero3": ([*TWO, "--main_process_port", "29643"], ["train.micro_batch_size=8", "train.distributed=zero3"])}


def weights(export: Path) -> dict[str, torch.Tensor]:
    return {f"{f}/{k}": v for f in ("model.safetensors", "head.safetensors")
            for k, v in load_file(str(export / f)).items()}


def checkpoint_weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"step_{step}" / "model.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("equivalence")
    for name, (launcher, extra) in RUNS.items():
        run_cli([*SGD_TRAIN, *extra, f"output_dir={root / name}"], launcher=launcher, env=ENV,
                module="tests.training.cli_hooks")
    return {name: root / name for name in RUNS}


def test_every_strategy_ends_with_the_weights_of_one_process(runs):
    first, last = checkpoint_weights(runs["one"], 1), checkpoint_weights(runs["one"], STEPS)
    moved = max((last[k] - first[k]).abs().max().item() for k in first)
    assert moved >= 1e-3, f"SGD barely moved the weights ({moved:.1e}): the tolerance would prove nothing"
    one = weights(runs["one"] / "final")
    for name in ("ddp", "zero2", "zero3"):
        other = weights(runs[name] / "final")
        assert other.keys() == one.keys(), name
        worst = max((other[k] - one[k]).abs().max().item() for k in one)
        print(f"\n[equivalence] {name}: max |w - w(1 process)| = {worst:.1e} (updates moved weights by {moved:.1e})")
        assert worst <= TOL, f"{name}: max |w - w(1 process)| = {worst:.2e} after {STEPS} SGD steps"
        assert list(losses(runs[name]).values()) == pytest.approx(list(losses(runs["one"]).values()), abs=TOL), name


def test_memory_report_names_each_strategy(runs):
    expected = {"one": ("ddp", 1), "ddp": ("ddp", 2), "zero2": ("zero2", 2), "zero3": ("zero3", 2)}
    for name, (strategy, world) in expected.items():
        report = json.loads((runs[name] / "memory.json").read_text())
        assert (report["strategy"], report["world_size"]) == (strategy, world), name
