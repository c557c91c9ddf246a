"""One task=sequential run whose item encoder fine-tunes (top layer over cached lower-layer states, a frozen
warm-up, a sample of items re-encoded per step) three ways in one launch: uninterrupted (ROOT/full), stopped by
``train.stop_after_steps`` (ROOT/cut), then resumed with ``train.resume_from=auto``. The main process writes the
runs' summaries to ROOT/results.json. Used by test_fine_tuned_resume.py."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from accelerate.state import AcceleratorState

from tests.conftest import FAST, TINY
from tests.tasks.test_sequential_task import SEQUENTIAL
from translrec_dist.cli import setup_logging
from translrec_dist.program import load_run
from translrec_dist.training import trainer
from translrec_dist.training.distributed import shutdown_process_group

STOP = 5
FINE_TUNED = ["model.sequence.item_repr=text+id", "model.sequence.encoder=top_layers", "model.sequence.train_layers=1",
              "model.sequence.encoder_lr=1e-3", "model.sequence.encoder_frozen_steps=3",
              "model.sequence.encode_items_per_step=20", "model.sequence.refresh_every=4", "model.sequence.distill=0.5"]


def common() -> list[str]:
    return [*FAST, *SEQUENTIAL, *FINE_TUNED, "train.epochs=2", "eval.splits=[test]"]


def main(root: Path) -> None:
    setup_logging(debug=False)
    trainer.end_run = lambda accelerator: None  # one process group for the three runs
    results = []
    for out, extra in (("full", []), ("cut", [f"train.stop_after_steps={STOP}"]), ("cut", ["train.resume_from=auto"])):
        results.append(trainer.train(*load_run(TINY, [*common(), f"output_dir={root / out}", *extra])).summary())
        AcceleratorState._reset_state()
    if int(os.environ.get("RANK", "0")) == 0:
        (root / "results.json").write_text(json.dumps(results))
    shutdown_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
