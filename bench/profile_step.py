"""Where the time of one training step goes (tiny config by default), with torch.profiler.

Builds the run's real components (data, tokenizer, collator, model, AdamW), times the phases of a step
(batch fetch + collate, forward, backward, optimizer) over many steps, then prints the profiler's top
operators for a few steps.

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

from translrec_dist.config import load_config
from translrec_dist.data import build_tokenizer, load_text_splits
from translrec_dist.data.collate import PadCollator
from translrec_dist.data.loader import train_loader
from translrec_dist.data.tokenize import tokenize_frame
from translrec_dist.models.cross_encoder import build_model
from translrec_dist.training.loop import build_optimizer, loss_fn

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    cfg = load_config(REPO / "configs" / "tiny_cpu.yaml", ["output_dir=/tmp/translrec-profile", *sys.argv[1:]])
    torch.manual_seed(cfg.seed)
    texts = load_text_splits(cfg)
    tokenizer = build_tokenizer(cfg, texts)
    ds = tokenize_frame(texts.frames["train"], tokenizer, cfg.data.max_length)
    model = build_model(cfg, tokenizer).train()
    optimizer = build_optimizer(cfg, model)
    loader = iter(train_loader(ds, PadCollator(tokenizer.pad_token_id), micro=cfg.train.micro_batch_size, accum=1,
                               rank=0, world=1, seed=cfg.seed, epoch=0))
    phases: dict[str, list[float]] = {"data": [], "forward": [], "backward": [], "optimizer": []}

    def step(record: bool):
        t0 = time.perf_counter()
        with record_function("data"):
            batch = next(loader)
        t1 = time.perf_counter()
        with record_function("forward"):
            loss = loss_fn(cfg.task, model(**batch), batch["labels"])
        t2 = time.perf_counter()
        with record_function("backward"):
            loss.backward()
        t3 = time.perf_counter()
        with record_function("optimizer"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        if record:
            for name, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                phases[name].append(dt)

    for _ in range(10):
        step(False)
    for _ in range(100):
        step(True)
    total = sum(statistics.median(v) for v in phases.values())
    print(f"one step, micro-batch {cfg.train.micro_batch_size}, {torch.get_num_threads()} threads "
          f"(median of 100 steps): {1000 * total:.2f} ms")
    for name, values in phases.items():
        med = statistics.median(values)
        print(f"  {name:10} {1000 * med:8.2f} ms  {med / total:6.1%}")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            step(False)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
