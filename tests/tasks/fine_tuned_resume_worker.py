"""One task=sequential run whose item encoder fine-tunes (top layer over cached lower-layer states, a frozen
warm-up, a sample of items re-encoded per step) three ways in one launch: uninterrupted (ROOT/full), stopped by
``train.stop_after_steps`` (ROOT/cut), then resumed with ``train.resume_from=auto``. The main process writes the
runs' summaries to ROOT/results.json. Used by test_fine_tuned_resume.py."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import FAST
from tests.tasks.sequential_stream_worker import main as run_full_cut_resume
from tests.tasks.test_sequential_task import SEQUENTIAL

STOP = 5
FINE_TUNED = ["model.sequence.item_repr=text+id", "model.sequence.encoder=top_layers", "model.sequence.train_layers=1",
              "model.sequence.encoder_lr=1e-3", "model.sequence.encoder_frozen_steps=3",
              "model.sequence.encode_items_per_step=20", "model.sequence.refresh_every=4", "model.sequence.distill=0.5"]


def common() -> list[str]:
    return [*FAST, *SEQUENTIAL, *FINE_TUNED, "train.epochs=2", "eval.splits=[test]"]


def main(root: Path) -> None:
    run_full_cut_resume(root, common(), STOP)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
