"""Shared test helpers: train the tiny config through the CLI, and read a run's files through ``RunDir`` (the
one module that names them), so no test spells "metrics.jsonl" or "eval.json"."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import FAST, REPO, TINY, accelerate_launch, run_cli
from translrec_dist.run_dir import RunDir


def train(out: Path, *overrides: str, check: bool = True, launcher: list[str] | None = None,
          env: dict | None = None) -> subprocess.CompletedProcess:
    """``translrec train`` of the tiny config (FAST sizes) into ``out``, in a real subprocess."""
    return run_cli(["train", str(TINY), *FAST, f"output_dir={out}", *overrides], check=check, launcher=launcher,
                   env=env)


def metric_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in RunDir(run).metrics.read_text().splitlines()]


def losses(run: Path) -> dict[int, float]:
    """step -> logged training loss; fails on a duplicated or unordered step (a resume that replayed steps)."""
    rows = [r for r in metric_rows(run) if "loss" in r]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)), f"duplicate or unordered steps in {run}: {steps}"
    return {r["step"]: r["loss"] for r in rows}


def eval_result(run: Path) -> dict:
    return json.loads(RunDir(run).eval.read_text())


def launch_two(worker: Path, arg: Path, port: int, log: Path | None = None) -> str:
    """``worker ARG`` in 2 CPU processes under accelerate (DDP); its output (kept in ``log``, default
    ``ARG/launch.log``), after checking it exited 0."""
    log = log or arg / "launch.log"
    cmd = accelerate_launch(2, port, "--multi_gpu") + [str(worker), str(arg)]
    with open(log, "w") as f:  # a file, not a pipe: a full pipe would stall one rank inside a collective
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=600,
                              env={**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1",
                                   "PYTHONPATH": str(REPO)})
    text = log.read_text()
    assert proc.returncode == 0, text[-6000:]
    return text
