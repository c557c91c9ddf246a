"""Per-rank bytes of parameters, gradients and optimizer state under DDP and ZeRO-1/2/3 (2 CPU processes).

Each strategy trains a small BERT for two steps with 2 real processes (gloo); the run writes its memory report
from the engines (training/memory.py: ZeRO-3 partitions read from each parameter's ``ds_tensor``, optimizer
moments from the torch optimizer inside DeepSpeed, plus its fp32 master partition). Printed beside the
planner's estimate for the same model (fp32, as on CPU) and as a ratio to DDP. Target: ZeRO-3 <= 0.55x DDP.

    python bench/memory.py [--hidden 256 --layers 4 --port 29631]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from translrec_dist.config.loader import load_config  # noqa: E402
from translrec_dist.run_dir import RunDir  # noqa: E402
from translrec_dist.training.planner import estimate, model_size  # noqa: E402

STRATEGIES = ("ddp", "zero1", "zero2", "zero3")


def overrides(args, out: Path, strategy: str) -> list[str]:
    return ["data.synthetic.num_users=120", "data.synthetic.num_items=80", f"model.tiny.hidden_size={args.hidden}",
            f"model.tiny.num_hidden_layers={args.layers}", f"model.tiny.intermediate_size={4 * args.hidden}",
            "model.tiny.num_attention_heads=4", "model.tiny.vocab_size=1000", "data.max_length=64",
            "train.micro_batch_size=8", "train.max_steps=2", "train.progress_bar=false", "eval.every_steps=null",
            "eval.splits=[]", f"train.distributed={strategy}", f"output_dir={out}", "train.overwrite=true"]


def run(args, out: Path, strategy: str, port: int) -> dict:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "configs/accelerate/cpu_ddp.yaml"), "--num_processes", "2", "--main_process_port", str(port),
           "-m", "translrec_dist", "train", str(REPO / "configs/tiny_cpu.yaml"), *overrides(args, out, strategy)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{strategy} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(RunDir(out).memory.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--port", type=int, default=29631)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="translrec_mem_") as tmp:
        reports = {s: run(args, Path(tmp) / s, s, args.port + i) for i, s in enumerate(STRATEGIES)}
        cfg = load_config(REPO / "configs/tiny_cpu.yaml", overrides(args, Path(tmp) / "x", "ddp"))
    size = model_size(cfg)
    trained = reports["ddp"]["ranks"][0]["param_numel"]
    print(f"model: tiny BERT hidden={args.hidden} layers={args.layers}, {trained:,} parameters (the planner, which "
          f"reads model.tiny.vocab_size rather than the smaller trained vocabulary, counts {size.params:,}; its "
          f"estimates below use the trained count); 2 processes on CPU (gloo), fp32; bytes per rank (rank 0; "
          f"ranks differ by < 0.1%)")
    size = dataclasses.replace(size, params=trained)
    head = f"{'strategy':<9}{'params':>12}{'grads':>12}{'optimizer':>12}{'total':>12}{'planner':>12}{'vs DDP':>8}"
    print(head)
    ddp_total = None
    for s in STRATEGIES:
        r = reports[s]["ranks"][0]
        total = r["param_bytes"] + r["grad_bytes"] + r["optimizer_bytes"]
        ddp_total = ddp_total or total
        e = estimate(size, s, "none", 2, 1, mixed=False, activations=0.0)
        print(f"{s:<9}{r['param_bytes']:>12,}{r['grad_bytes']:>12,}{r['optimizer_bytes']:>12,}{total:>12,}"
              f"{int(e.params + e.grads + e.optimizer):>12,}{total / ddp_total:>7.2f}x")
    buckets = reports["ddp"]["ranks"][0]["ddp_bucket_bytes"]
    if buckets:
        z3_total = sum(reports["zero3"]["ranks"][0][k] for k in ("param_bytes", "grad_bytes", "optimizer_bytes"))
        print(f"DDP also holds {buckets:,} bytes of all-reduce buckets (gradient_as_bucket_view=False); counting "
              f"them, zero3 is {z3_total / (ddp_total + buckets):.2f}x DDP")
    z3 = reports["zero3"]["ranks"]
    print("zero3 parameter partition per rank: " + ", ".join(
        f"rank {r['rank']}: {r['param_partition_numel']:,} of {r['param_numel']:,}" for r in z3))


if __name__ == "__main__":
    main()
