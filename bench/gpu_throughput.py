"""Fine-tune throughput of a bert-base-sized cross-encoder on one GPU: the table behind bench/gpu.sh.

Every cell is a real `translrec train` run (bf16, SDPA, synthetic data, nothing downloaded) of a BERT with
bert-base dimensions built from config. Columns: strategy (DDP, ZeRO-2, ZeRO-3 on one GPU), sequence length
(history length chosen so rows fill it), padding (dynamic vs every batch padded to max_length). Reported:
median samples/s and real tokens/s over the logged windows after the first, and model FLOPs utilisation
(6 x non-embedding parameters + attention, per real token, against the GPU's dense bf16 peak).

    python bench/gpu_throughput.py                 # on a GPU machine (~6 minutes on an H100)
    python bench/gpu_throughput.py --dry-run       # CPU, tiny sizes, seconds: checks the plumbing
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
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


def run(out: Path, dims: dict, seq: int, strategy: str, padded: bool, steps: int, batch: int, dry: bool) -> dict:
    overrides = [f"output_dir={out}", *[f"model.tiny.{k}={v}" for k, v in dims.items()],
                 f"data.max_length={seq}", f"data.history_length={4 if seq <= 128 else 10}",
                 f"train.max_steps={steps}", f"train.log_every={max(1, steps // 6)}", f"train.micro_batch_size={batch}",
                 "train.progress_bar=false", "eval.splits=[]", "eval.every_steps=null", "train.warmup_ratio=0",
                 "data.synthetic.num_users=3000", f"train.distributed={strategy}",
                 f"train.precision={'no' if dry else 'bf16'}", "train.deterministic=false"]
    if padded:
        overrides.append(f"data.pad_to_multiple_of={seq}")
    cmd = [sys.executable, "-m", "translrec_dist", "train", str(TINY), *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    logs = [json.loads(line) for line in RunDir(out).metrics.read_text().splitlines()]
    logs = [r for r in logs if "samples_per_s" in r][1:] or [r for r in logs if "samples_per_s" in r]
    return {k: statistics.median(r[k] for r in logs) for k in ("samples_per_s", "tokens_per_s")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny model, 4 steps: checks the plumbing")
    p.add_argument("--strategies", nargs="+", default=["ddp", "zero2", "zero3"])
    p.add_argument("--seqs", nargs="+", type=int, default=[128, 256])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args()
    dims = DRY if args.dry_run else BERT_BASE
    steps, batch = (4, 4) if args.dry_run else (args.steps, args.batch)
    device, peak = gpu_peak()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seq in args.seqs:
            for strategy in args.strategies:
                for padded in (True, False):
                    out = Path(tmp) / f"{seq}-{strategy}-{padded}"
                    r = run(out, dims, seq, strategy, padded, steps, batch, args.dry_run)
                    rows.append((seq, strategy, "max_length" if padded else "dynamic", r))
                    print(f"done: seq {seq} {strategy} {rows[-1][2]}: {r}", file=sys.stderr, flush=True)

    print(f"\nbert-base-sized cross-encoder, {device}, micro-batch {batch}, {steps} steps per cell"
          f"{' (DRY RUN: tiny model on CPU)' if args.dry_run else ', bf16, SDPA'}")
    print(f"{'seq':>4} {'strategy':8} {'padding':10} {'samples/s':>10} {'tokens/s':>10} {'MFU':>6}")
    for seq, strategy, padding, r in rows:
        if "error" in r:
            print(f"{seq:>4} {strategy:8} {padding:10} failed: {r['error'][:80]}")
            continue
        mfu = r["tokens_per_s"] * model_flops_per_token(dims, seq) / peak if peak else float("nan")
        print(f"{seq:>4} {strategy:8} {padding:10} {r['samples_per_s']:10.1f} {r['tokens_per_s']:10.0f} {mfu:6.1%}")
    if any("error" in r for *_, r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
