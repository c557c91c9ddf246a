"""Real (random-weight) exports of the tiny config, written in-process in about a second: for tests of the commands
that load an export (predict, index, recommend) where what is tested is not the training."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import FAST, TINY
from translrec_dist.config import load_config
from translrec_dist.data.tokenize import train_wordpiece
from translrec_dist.models.export import write_export as save
from translrec_dist.tasks import get_task

WORDS = ["red apple pie", "blue sky song", "green tea cup", "old film noir", "fast car race"] * 4


def write_export(out: Path, *overrides: str) -> Path:
    """A real (random-weight) export of the tiny config, written in-process: no training needed."""
    cfg = load_config(TINY, [*FAST, f"output_dir={out.parent}", *overrides])
    tokenizer = train_wordpiece(WORDS, cfg.model.tiny.vocab_size, cfg.data.max_length)
    model = get_task(cfg.task).build_model(cfg, tokenizer)
    save(out, model.state_dict(), model, tokenizer, cfg)
    return out
