"""Train every built-in task, one after the other, under one strategy in one launch (one process group).

``python -m accelerate.commands.launch ... every_task_worker.py STRATEGY OUT_ROOT``: each task's run goes to
OUT_ROOT/TASK. Used by test_every_task_distributed.py: one launch per strategy instead of one per task.
"""

from __future__ import annotations

import sys
from pathlib import Path

from accelerate.state import AcceleratorState

from tests.conftest import FAST, TINY
from tests.training.cli_hooks import sgd_optimizer
from translrec_dist.program import load_run
from translrec_dist.training import trainer
from translrec_dist.training.distributed import shutdown_process_group
from translrec_dist.training.optim import build_optimizer

# sequential: the encoder trains (top_layers), so ZeRO-3 partitions it inside the sequence model, and the catalog
# refresh, validation (every 2 steps) and the final evaluation all run through the engine's forward. Plain SGD and
# no dropout or clipping, so its weights can be compared across strategies (tests/training/test_equivalence.py).
# 81 users: the ranks' evaluation shares differ by one user, 6 batches of 8 against 5 unless padded (a hang under
# ZeRO-3). max_history=12: the position table (12 x 16) is above ZeRO-3's persistence threshold (10 x hidden), so
# it is partitioned too, and it is read outside its own module's forward.
SEQUENTIAL = ["model.sequence.hidden=16", "model.sequence.inner=32", "model.sequence.layers=1", "data.max_history=12",
              "model.sequence.item_repr=text+id", "model.sequence.encoder=top_layers", "model.sequence.train_layers=1",
              "model.sequence.refresh_every=2", "model.sequence.dropout=0", "model.sequence.attn_dropout=0",
              "model.sequence.adaptor_dropout=0", "model.tiny.hidden_dropout_prob=0",
              "model.tiny.attention_probs_dropout_prob=0", "data.cold_item_fraction=0.2", "data.synthetic.num_users=81",
              "eval.micro_batch_size=8", "eval.every_steps=2", "train.lr=0.5", "train.schedule=constant",
              "train.warmup_ratio=0", "train.max_grad_norm=null"]
TASKS = {"ctr": [], "rating": [], "retrieval": ["model.pooling=mean", "model.temperature=0.2"],
         "mlm": ["eval.splits=[valid]"], "sequential": SEQUENTIAL}
PLAIN_SGD = {"sequential"}
STEPS = ["train.max_steps=4", "train.grad_accum=2", "train.log_every=1", "train.checkpoint_every=null"]


def main(strategy: str, root: Path) -> None:
    # One process group for all the tasks: each run's end (trainer.end_run) would leave it.
    trainer.end_run = lambda accelerator: None
    for task, extra in TASKS.items():
        cfg, run_task = load_run(TINY, [*FAST, f"task={task}", *extra, *STEPS, f"train.distributed={strategy}",
                                        f"output_dir={root / task}"])
        trainer.build_optimizer = sgd_optimizer if task in PLAIN_SGD else build_optimizer
        trainer.train(cfg, run_task)
        AcceleratorState._reset_state()  # the next task gets its own Accelerator and DeepSpeed plugin
    shutdown_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
