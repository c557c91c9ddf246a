"""Where the time of one training step goes (tiny config by default), with torch.profiler.

Sets up the real trainer (data, tokenizer, collator, model, AdamW, Accelerator), times the two phases of a
step (fetching + collating the micro-batches, then ``Trainer.train_step``: forward, backward, optimizer)
over many steps, then prints the profiler's top operators for a few steps.

    python bench/profile_step.py
    python bench/profile_step.py model.tiny=null model.name_or_path=/path/to/minilm train.micro_batch_size=16
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from translrec_dist.config.loader import load_config
from translrec_dist.program import task_for
from translrec_dist.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    cfg = load_config(REPO / "configs" / "tiny_cpu.yaml", ["output_dir=/tmp/translrec-profile", "train.overwrite=true",
                                                           "train.max_steps=1000",
                                                          "train.progress_bar=false", *sys.argv[1:]])
    trainer = Trainer(cfg, task_for(cfg)).setup()
    trainer.model.train()
    batches = trainer.step_batches()
    phases: dict[str, list[float]] = {"data": [], "train_step": []}

    def step(record: bool):
        t0 = time.perf_counter()
        with record_function("data"):
            micro_batches = next(batches)
        t1 = time.perf_counter()
        with record_function("train_step"):
            trainer.train_step(micro_batches)
        t2 = time.perf_counter()
        if record:
            for name, dt in zip(phases, (t1 - t0, t2 - t1), strict=True):
                phases[name].append(dt)

    for _ in range(10):
        step(False)
    for _ in range(100):
        step(True)
    total = sum(statistics.median(v) for v in phases.values())
    print(f"one step, micro-batch {cfg.train.micro_batch_size} x accum {cfg.train.grad_accum}, "
          f"{torch.get_num_threads()} threads (median of 100 steps): {1000 * total:.2f} ms")
    for name, values in phases.items():
        med = statistics.median(values)
        print(f"  {name:10} {1000 * med:8.2f} ms  {med / total:6.1%}")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            step(False)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
