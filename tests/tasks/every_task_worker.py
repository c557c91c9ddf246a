"""Train every built-in task, one after the other, under one strategy in one launch (one process group).

``python -m accelerate.commands.launch ... every_task_worker.py STRATEGY OUT_ROOT``: each task's run goes to
OUT_ROOT/TASK. Used by test_every_task_distributed.py: one launch per strategy instead of one per task.
"""

from __future__ import annotations

import sys
from pathlib import Path

from accelerate.state import AcceleratorState, PartialState

from tests.conftest import FAST, TINY
from translrec_dist.config import load_config
from translrec_dist.training.distributed import shutdown_process_group
from translrec_dist.training.trainer import train

TASKS = {"ctr": [], "rating": [], "retrieval": ["model.pooling=mean", "model.temperature=0.2"],
         "mlm": ["eval.splits=[valid]"]}
STEPS = ["train.max_steps=4", "train.grad_accum=2", "train.log_every=1", "train.checkpoint_every=null"]


def main(strategy: str, root: Path) -> None:
    # One process group for all the tasks: each run's end_training() would destroy it.
    for state in (PartialState, AcceleratorState):
        state.destroy_process_group = lambda self, group=None: None
    for task, extra in TASKS.items():
        cfg = load_config(TINY, [*FAST, f"task={task}", *extra, *STEPS, f"train.distributed={strategy}",
                                 f"output_dir={root / task}"])
        train(cfg)
        AcceleratorState._reset_state()  # the next task gets its own Accelerator and DeepSpeed plugin
    shutdown_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
