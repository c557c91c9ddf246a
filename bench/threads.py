"""The tiny config's training time idle, beside two busy loops, and beside two other torch trainings.

Each setup is a thread policy (environment of the measured process and of its torch neighbours):
``before`` leaves torch's defaults (one OpenMP thread per CPU, spin-waiting: the package before
translrec_dist/threads.py), ``after`` is the package's own choice (its CPU share, sleeping waits), ``one``/``two``
force 1 or 2 sleeping threads.
Neighbours run the same setup as the measured process: on a shared machine everyone runs the same package.

Arms run rotated (setup x neighbours, in a new order each repetition) so a drifting background load hits every
arm; each arm records the 1-minute load average at its start. Reported per arm: median wall time of the whole
``translrec train`` command (start-up and data preparation included, what a user waits for), the training
loop's samples/s, and the factor against the same setup's idle wall time.

    python bench/threads.py                        # before/after, 300 steps, 2 repetitions
    python bench/threads.py --setups before after one two --steps 200 --reps 3
    python bench/threads.py --quick                # test-sized: 20 steps, idle and busy, one repetition
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from translrec_dist.run_dir import RunDir

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny_cpu.yaml"
THREAD_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT", "TRANSLREC_AUTO_THREADS",
               "TRANSLREC_CHOSEN_THREADS")
SETUPS = {
    "before": {"TRANSLREC_AUTO_THREADS": "0"},
    "after": {},
    "one": {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"},
    "two": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
}
NEIGHBOURS = ("idle", "busy", "torch")
BUSY_LOOP = "while True: pass"


def setup_env(setup: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    return {**env, **SETUPS[setup]}


def train_cmd(out: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "translrec_dist", "train", str(TINY), f"output_dir={out}", "train.overwrite=true",
            f"train.max_steps={steps}", "train.log_every=10", "train.progress_bar=false", "eval.splits=[]",
            "eval.every_steps=null", "train.warmup_ratio=0"]


def start_neighbours(kind: str, setup: str, work: Path) -> list[subprocess.Popen]:
    if kind == "idle":
        return []
    if kind == "busy":
        cmds = [[sys.executable, "-c", BUSY_LOOP]] * 2
    else:  # long enough to outlast the measured run; killed when it ends
        cmds = [train_cmd(work / f"neighbour{i}", 100_000) for i in range(2)]
    procs = [subprocess.Popen(c, env=setup_env(setup), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              cwd=REPO) for c in cmds]
    time.sleep(3 if kind == "busy" else 12)  # torch neighbours: past their imports, into training
    return procs


def measure(setup: str, kind: str, steps: int, work: Path, timeout: float) -> dict:
    neighbours = start_neighbours(kind, setup, work)
    load = os.getloadavg()[0]
    out = work / f"{setup}-{kind}"
    try:
        start = time.perf_counter()
        try:
            proc = subprocess.run(train_cmd(out, steps), env=setup_env(setup), capture_output=True, text=True,
                                  cwd=REPO, timeout=timeout)
        except subprocess.TimeoutExpired:  # recorded as the limit: the factor is then a lower bound (">")
            return {"wall_s": float(timeout), "samples_per_s": float("nan"), "load": load, "timed_out": True}
        wall = time.perf_counter() - start
    finally:
        for p in neighbours:
            p.kill()
            p.wait()
    if proc.returncode != 0:
        raise SystemExit(f"{setup}/{kind} failed:\n{proc.stderr[-3000:]}")
    logs = [json.loads(line) for line in RunDir(out).metrics.read_text().splitlines()]
    rates = [r["samples_per_s"] for r in logs if "samples_per_s" in r][1:] or [float("nan")]
    return {"wall_s": wall, "samples_per_s": statistics.median(rates), "load": load}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setups", nargs="+", default=["before", "after"], choices=list(SETUPS))
    p.add_argument("--neighbours", nargs="+", default=list(NEIGHBOURS), choices=list(NEIGHBOURS))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="seed of the arms' rotation")
    p.add_argument("--timeout", type=float, default=900, help="seconds one measured run may take (then: >limit)")
    p.add_argument("--quick", action="store_true", help="20 steps, idle and busy, one repetition (for tests)")
    args = p.parse_args()
    if args.quick:
        args.steps, args.reps, args.neighbours = 20, 1, ["idle", "busy"]
    arms = [(s, n) for s in args.setups for n in args.neighbours]
    results: dict[tuple[str, str], list[dict]] = {a: [] for a in arms}
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="threads-bench-") as tmp:
        for rep in range(args.reps):
            order = arms[:]
            rng.shuffle(order)
            for setup, kind in order:
                r = measure(setup, kind, args.steps, Path(tmp), args.timeout)
                results[(setup, kind)].append(r)
                print(f"# rep {rep} {setup:6s} {kind:5s} wall {r['wall_s']:7.1f} s  samples/s "
                      f"{r['samples_per_s']:7.1f}  load {r['load']:.2f}", file=sys.stderr, flush=True)
    print(f"steps {args.steps}, repetitions {args.reps}, {os.cpu_count()} CPUs; wall = median of the whole command")
    print(f"{'setup':8s} {'beside':6s} {'wall_s':>8s} {'samples/s':>10s} {'x idle':>7s} {'loads at start':>16s}")
    for setup, kind in arms:
        rows = results[(setup, kind)]
        wall = statistics.median(r["wall_s"] for r in rows)
        idle = results.get((setup, "idle"))
        factor = wall / statistics.median(r["wall_s"] for r in idle) if idle else float("nan")
        loads = ",".join(f"{r['load']:.1f}" for r in rows)
        capped = ">" if any(r.get("timed_out") for r in rows) else " "
        print(f"{setup:8s} {kind:6s} {capped}{wall:7.1f} {statistics.median(r['samples_per_s'] for r in rows):10.1f} "
              f"{capped}{factor:6.2f} {loads:>16s}")


if __name__ == "__main__":
    main()
