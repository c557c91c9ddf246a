"""Shared test helpers: train the tiny config through the CLI, and read a run's files through ``RunDir`` (the
one module that names them), so no test spells "metrics.jsonl" or "eval.json"."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import FAST, TINY, run_cli
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
