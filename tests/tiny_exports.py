"""Real (random-weight) exports of the tiny config, written in-process in about a second: for tests of the commands
that load an export (predict, index, recommend, serve) where what is tested is not the training."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import FAST, TINY
from translrec_dist.data.tokenize import train_wordpiece
from translrec_dist.program import load_run
from translrec_dist.program import write_export as save
from translrec_dist.run_dir import RunDir
from translrec_dist.tasks.base import DataContext

WORDS = ["red apple pie", "blue sky song", "green tea cup", "old film noir", "fast car race"] * 4
# A tiny sequential model (the sequence transformer's own sizes; the item encoder is the tiny BERT).
SEQUENTIAL = ["task=sequential", "model.sequence.hidden=16", "model.sequence.inner=32", "model.sequence.layers=1",
              "data.max_history=8"]


def write_export(out: Path, *overrides: str) -> Path:
    """A real (random-weight) export of the tiny config, written in-process: no training needed. A task whose
    model is shaped by its data (sequential: the catalog and its text vectors) builds that data first."""
    cfg, task = load_run(TINY, [*FAST, f"output_dir={out.parent / (out.name + '_run')}", *overrides])
    data = None
    if cfg.task == "sequential":
        run = RunDir(cfg.output_dir)
        data = task.build_data(cfg, DataContext(run, True, 1, False, lambda: None))
        tokenizer = data.tokenizer
    else:
        tokenizer = train_wordpiece(WORDS, cfg.model.tiny.vocab_size, cfg.data.max_length)
    model = task.build_model(cfg, tokenizer, data)
    save(out, model.state_dict(), model, tokenizer, cfg, data)
    return out
