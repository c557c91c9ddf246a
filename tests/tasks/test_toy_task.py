"""A task defined and registered here, outside the package, trains end to end through ``translrec train``.

The toy task predicts a number from a bag of token ids with its own data, model, loss, evaluator, export
and trainer hook: none of the package's modules name it, so adding a task needs no edit to the trainer. A new
task implements the training role and only the roles it needs (``TrainOnlyToy``: no export adapter, no scorer).
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tests.conftest import FAST, TINY
from translrec_dist.cli import main
from translrec_dist.data.collate import PadCollator
from translrec_dist.data.loader import eval_loader
from translrec_dist.data.tokenize import train_wordpiece
from translrec_dist.errors import ConfigError
from translrec_dist.program import read_export
from translrec_dist.run_dir import RunDir
from translrec_dist.tasks.base import DataContext, Task, TaskData
from translrec_dist.tasks.registry import register_task, unregister_task
from translrec_dist.training.hooks import Hook

HOOK_RUNS: list[int] = []


class CountTokens(nn.Module):
    """Predicts how many times token 'a' occurs: one weight per vocabulary entry, summed over the row."""

    def __init__(self, vocab: int):
        super().__init__()
        self.weight = nn.Embedding(vocab, 1)
        nn.init.zeros_(self.weight.weight)

    def forward(self, input_ids, attention_mask, **_unused) -> torch.Tensor:
        return (self.weight(input_ids).squeeze(-1) * attention_mask).sum(-1)


class EveryTwoSteps(Hook):
    def should_run(self, step: int) -> bool:
        return step % 2 == 0

    def run(self, trainer, step: int) -> None:
        HOOK_RUNS.append(step)


class ToyTask(Task):
    name = "toy_count"

    def validate(self, cfg) -> None:
        if cfg.data.max_length < 16:
            raise ConfigError(f"data.max_length: the toy task needs >= 16 ({cfg.source})")

    def build_data(self, cfg, ctx: DataContext) -> TaskData:
        rng = np.random.default_rng(cfg.seed)
        words = [" ".join(rng.choice(["a", "b", "c"], size=rng.integers(1, 8))) for _ in range(400)]
        tokenizer = ctx.tokenizer(lambda: train_wordpiece(words, 100, cfg.data.max_length))

        def split(rows):
            enc = tokenizer([words[i] for i in rows], truncation=True, max_length=cfg.data.max_length)
            labels = [float(words[i].split().count("a")) for i in rows]
            return datasets.Dataset.from_dict({"example_id": list(rows), "label": labels, **enc})

        splits = {"train": split(range(320)), "test": split(range(320, 400))}
        collate = PadCollator(tokenizer.pad_token_id)

        @torch.no_grad()
        def evaluate(model, name: str, accelerator) -> dict:
            loader = eval_loader(splits[name], collate, batch_size=64, rank=accelerator.process_index,
                                 world=accelerator.num_processes)
            errors = [((model(**b) - b["labels"]) ** 2)[b["example_id"] >= 0] for b in loader]
            return {"mse": float(torch.cat(errors).mean()), "num_examples": len(splits[name])}

        return TaskData(tokenizer, splits["train"], collate, evaluate)

    def build_model(self, cfg, tokenizer, data=None, state_dict=None):
        return CountTokens(len(tokenizer))

    def hidden_size(self, model) -> int:
        return 1

    def loss(self, model, batch):
        return nn.functional.mse_loss(model(**batch), batch["labels"])

    def hooks(self, cfg, data):
        return [EveryTwoSteps()]

    def write_export(self, out_dir: Path, state_dict: dict, model, cfg, data=None) -> None:
        save_file({k: v.contiguous() for k, v in state_dict.items()}, str(out_dir / "toy.safetensors"))
        (out_dir / "config.json").write_text("{}")

    def read_export(self, model_dir: Path, cfg):
        weights = load_file(str(model_dir / "toy.safetensors"))
        model = CountTokens(weights["weight.weight"].shape[0])
        model.load_state_dict(weights)
        return model


@pytest.fixture
def toy_task():
    register_task(ToyTask())
    HOOK_RUNS.clear()
    yield
    unregister_task("toy_count")


def test_a_task_registered_outside_the_package_trains_end_to_end(toy_task, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", str(TINY), *FAST, "task=toy_count", "train.max_steps=6", "train.lr=0.05", "train.log_every=1",
            "train.warmup_ratio=0", "eval.splits=[test]", f"output_dir={out}"]
    assert main(args) == 0
    run = RunDir(out)
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result == json.loads(run.eval.read_text()) and result["step"] == 6 and result["num_examples"] == 80
    losses = [r["loss"] for r in map(json.loads, run.metrics.read_text().splitlines()) if "loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0] / 2  # it learns to count
    assert HOOK_RUNS == [2, 4, 6]  # the task's own hook ran on its own schedule
    model, tokenizer, cfg, task = read_export(run.final)  # the task's export reader, through the registry
    assert cfg.task == "toy_count" and isinstance(task, ToyTask)
    enc = tokenizer(["a a a b", "c"], padding=True, return_tensors="pt")
    three_a, no_a = model(**enc).tolist()
    assert three_a > no_a + 0.5  # the export counts like the trained model


def test_unknown_and_misconfigured_tasks_are_config_errors(toy_task, tmp_path, capsys):
    assert main(["train", str(TINY), "task=toy_cont", f"output_dir={tmp_path / 'a'}"]) == 2
    assert "Did you mean task=toy_count?" in capsys.readouterr().err
    assert main(["train", str(TINY), "task=toy_count", "data.max_length=8", f"output_dir={tmp_path / 'b'}"]) == 2
    err = capsys.readouterr().err
    assert "data.max_length" in err and not (tmp_path / "b" / "config.yaml").exists()


class TrainOnlyToy(ToyTask):
    """The training role alone: no export adapter (the base ``Task.write_export``), no scorer."""

    name = "toy_train_only"
    write_export = Task.write_export
    read_export = Task.read_export


def test_a_task_with_only_the_training_role_trains_and_evaluates(tmp_path, capsys):
    register_task(TrainOnlyToy())
    try:
        out = tmp_path / "run"
        assert main(["train", str(TINY), *FAST, "task=toy_train_only", "train.max_steps=4", "train.lr=0.05",
                     "eval.splits=[test]", f"output_dir={out}"]) == 0
        run = RunDir(out)
        assert json.loads(run.eval.read_text())["step"] == 4 and run.complete_checkpoints()
        assert not run.final.exists()  # nothing to export
        assert main(["serve", "--model", str(out)]) == 2  # and nothing to serve: an error, not a traceback
        capsys.readouterr()
    finally:
        unregister_task("toy_train_only")
