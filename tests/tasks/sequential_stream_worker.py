"""One streamed task=sequential run three ways in one launch (one process group), one after the other: uninterrupted
(ROOT/full), stopped mid-epoch by ``train.stop_after_steps`` (ROOT/cut), then resumed with ``train.resume_from=auto``
from the checkpoint the stop wrote. Each run builds its Trainer, data and model from scratch; the resumed one
starts from what it reads from disk.

``python -m accelerate.commands.launch ... sequential_stream_worker.py ROOT``; the main process writes the runs'
summaries to ROOT/results.json. Used by test_sequential_streaming.py: one launch instead of three.
"""

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

STEPS_PER_EPOCH, STOP = 5, 7  # 80 windows in 4 shards: 40 per rank, micro 8; the stop falls in epoch 1


def common(root: Path) -> list[str]:
    return [*FAST, *SEQUENTIAL, "train.epochs=2", "data.streaming=true", f"data.cache_dir={root / 'cache'}",
            "data.num_shards=4", "data.shuffle_buffer=16", "data.record_example_ids=true", "eval.splits=[test]"]


def main(root: Path, overrides: list[str] | None = None, stop: int = STOP) -> None:
    """Three runs in one process group: uninterrupted (``full``), stopped at step ``stop`` and resumed (``cut``);
    their summaries go to ``root/results.json``. ``overrides``: default this module's streamed settings."""
    setup_logging(debug=False)
    # One process group for the three runs: each run's end (trainer.end_run) would leave it.
    trainer.end_run = lambda accelerator: None
    results = []
    for out, extra in (("full", []), ("cut", [f"train.stop_after_steps={stop}"]), ("cut", ["train.resume_from=auto"])):
        cfg, task = load_run(TINY, [*(common(root) if overrides is None else overrides), f"output_dir={root / out}",
                                    *extra])
        results.append(trainer.train(cfg, task).summary())
        AcceleratorState._reset_state()
    if int(os.environ.get("RANK", "0")) == 0:
        (root / "results.json").write_text(json.dumps(results))
    shutdown_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
