"""Fine-tune throughput on one GPU: the table behind bench/gpu.sh.

Every cell is a real `translrec train` run (synthetic data, SDPA, nothing downloaded) of a BERT with bert-base
dimensions built from config. Cells (about 7, under 8 minutes on an H100/H200):
- strategy: DDP vs ZeRO-2 vs ZeRO-3 on one GPU (bf16, dynamic padding), at the first sequence length;
- precision: bf16 vs fp32 (DDP, dynamic padding);
- padding: dynamic vs every batch padded to max_length (DDP, bf16);
- the other sequence lengths (DDP, bf16, dynamic);
- the sequential recommender (``task: sequential``, bert-base item encoder) when the package has that task,
  otherwise a "skipped" row: a placeholder until its GPU settings are tuned.
Reported: median samples/s and real tokens/s over the logged windows after the first, and MFU.

MFU = model FLOPs/s over the GPU's dense bf16 peak (989 TFLOP/s on H100/H200 SXM; fp32 cells too, so they
show what bf16 buys). Model FLOPs per real token = 6 x N + 12 x L x h x s: 6 x N for the forward (2 x N) and
backward (4 x N) matmuls over the N = L x (4h^2 + 2 h x ffn) non-embedding weights, plus the attention
scores and weighted values (QK^T and AV: 2 x 2 x s x h per layer forward, x3 with backward), s the
sequence length. Padding tokens are not counted: MFU measures useful work.

    python bench/gpu_throughput.py                 # on a GPU machine
    python bench/gpu_throughput.py --dry-run       # CPU, tiny sizes, seconds: checks the plumbing
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from translrec_dist.run_dir import RunDir

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny_cpu.yaml"
BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
             "max_position_embeddings": 512, "vocab_size": 30522}
DRY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
       "max_position_embeddings": 512, "vocab_size": 500}
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense tensor-core FLOP/s


def model_flops_per_token(dims: dict, seq: int) -> float:
    h, layers = dims["hidden_size"], dims["num_hidden_layers"]
    params = layers * (4 * h * h + 2 * h * dims["intermediate_size"])  # attention + MLP weights
    return 6 * params + 12 * layers * h * seq  # forward + backward, incl. attention scores/values


def gpu_peak() -> tuple[str, float | None]:
    import torch

    if not torch.cuda.is_available():
        return "cpu", None
    name = torch.cuda.get_device_name(0)
    return name, next((v for k, v in PEAK_BF16.items() if k in name), None)


def run(out: Path, dims: dict, seq: int, strategy: str, padded: bool, precision: str, steps: int, batch: int,
        task: str = "ctr", timeout: float | None = None) -> dict:
    overrides = [f"output_dir={out}", "train.overwrite=true", *[f"model.tiny.{k}={v}" for k, v in dims.items()],
                 f"data.max_length={seq}", f"data.history_length={4 if seq <= 128 else 10}",
                 f"train.max_steps={steps}", f"train.log_every={max(1, steps // 6)}", f"train.micro_batch_size={batch}",
                 "train.progress_bar=false", "eval.splits=[]", "eval.every_steps=null", "train.warmup_ratio=0",
                 "data.synthetic.num_users=3000", f"train.distributed={strategy}",
                 f"train.precision={'no' if precision == 'fp32' else precision}", "train.deterministic=false"]
    if task != "ctr":
        overrides.append(f"task={task}")
    if padded:
        overrides.append(f"data.pad_to_multiple_of={seq}")
    cmd = [sys.executable, "-m", "translrec_dist", "train", str(TINY), *overrides]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"stopped after {timeout:.0f} s: the table's time budget (--budget-s) ran out"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    logs = [json.loads(line) for line in RunDir(out).metrics.read_text().splitlines()]
    logs = [r for r in logs if "samples_per_s" in r][1:] or [r for r in logs if "samples_per_s" in r]
    return {k: statistics.median(r[k] for r in logs) for k in ("samples_per_s", "tokens_per_s")}


def cells(seqs: list[int], strategies: list[str]) -> list[tuple]:
    """(model, seq, strategy, padded, precision) of every cell; one question per cell beyond the first."""
    first, base = seqs[0], strategies[0]
    out = [("cross", first, s, False, "bf16") for s in strategies]
    out += [("cross", first, base, True, "bf16"), ("cross", first, base, False, "fp32")]
    out += [("cross", seq, base, False, "bf16") for seq in seqs[1:]]
    return out + [("sequential", first, base, False, "bf16")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny model, 4 steps: checks the plumbing")
    p.add_argument("--strategies", nargs="+", default=["ddp", "zero2", "zero3"])
    p.add_argument("--seqs", nargs="+", type=int, default=[128, 256])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--budget-s", type=float, default=450,
                   help="wall-clock budget: cells that would start after it are skipped, so the table prints in "
                        "under 8 minutes even if a cell is slow")
    args = p.parse_args()
    dims = DRY if args.dry_run else BERT_BASE
    steps, batch = (4, 4) if args.dry_run else (args.steps, args.batch)
    if args.dry_run:
        args.budget_s = max(args.budget_s, 3600)  # a loaded CPU: the dry run checks plumbing, not speed
    device, peak = gpu_peak()

    rows = []
    deadline = time.monotonic() + args.budget_s
    with tempfile.TemporaryDirectory() as tmp:
        for i, (model, seq, strategy, padded, precision) in enumerate(cells(args.seqs, args.strategies)):
            left = deadline - time.monotonic()
            if left < 20:
                r = {"skipped": f"time budget of {args.budget_s:.0f} s spent"}
            else:
                r = run(Path(tmp) / str(i), dims, seq, strategy, padded, precision, steps, batch,
                        "sequential" if model == "sequential" else "ctr", timeout=left)
            rows.append((model, seq, strategy, "max_length" if padded else "dynamic", precision, r))
            print(f"done: {rows[-1][:5]}: {r}", file=sys.stderr, flush=True)

    print(f"\nbert-base-sized encoder, {device}, micro-batch {batch}, {steps} steps per cell, SDPA"
          f"{' (DRY RUN: tiny model on CPU)' if args.dry_run else ''}")
    print(f"{'model':10} {'seq':>4} {'strategy':8} {'padding':10} {'precision':9} {'samples/s':>10} {'tokens/s':>10} "
          f"{'MFU':>6}")
    for model, seq, strategy, padding, precision, r in rows:
        head = f"{model:10} {seq:>4} {strategy:8} {padding:10} {precision:9}"
        if "error" in r or "skipped" in r:
            print(f"{head} {'failed: ' + r['error'][:80] if 'error' in r else 'skipped: ' + r['skipped']}")
            continue
        # MFU for the cross-encoder only: the sequential model's FLOPs per token differ (item encoder + SASRec).
        mfu = r["tokens_per_s"] * model_flops_per_token(dims, seq) / peak if peak and model == "cross" else None
        print(f"{head} {r['samples_per_s']:10.1f} {r['tokens_per_s']:10.0f} "
              f"{f'{mfu:6.1%}' if mfu is not None else '     -'}")
    # The sequential row is a placeholder: its failure is reported, not fatal.
    if any("error" in r for model, *_, r in rows if model == "cross"):
        sys.exit(1)


if __name__ == "__main__":
    main()
