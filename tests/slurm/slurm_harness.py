"""Helpers for the SLURM tests: submit a slurm/ script to the local cluster, wait for it, find its workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.conftest
from tests.conftest import FAST, REPO, TINY, run_cli  # noqa: E402, F401 (run_cli: for conftest)

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
DONE_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
               "PREEMPTED"}


@dataclass
class Cluster:
    root: Path
    env: dict

    def submit(self, script: str, args: list[str], *, log: Path, procs_per_node: int, cpus: int = 2,
               env: dict | None = None) -> str:
        """sbatch a script of slurm/ on the CPU-only test cluster; returns the job id."""
        cmd = ["sbatch", "--parsable", "--gpus-per-node=0", f"--cpus-per-task={cpus}", f"--output={log}",
               str(REPO / "slurm" / script), *args]
        full_env = {**self.env, "TRANSLREC_NPROC_PER_NODE": str(procs_per_node), **(env or {})}
        out = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=REPO, timeout=60)
        assert out.returncode == 0, f"sbatch failed: {out.stderr}"
        return out.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict:
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, env=self.env,
                             timeout=30)
        return dict(f.split("=", 1) for f in out.stdout.split() if "=" in f)

    def wait(self, job_id: str, log: Path, timeout: float, poll=None) -> dict:
        """Poll until the job is finished (a requeued job is not); ``poll(info)`` runs on every round."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.job(job_id)
            if poll:
                poll(info)
            if info.get("JobState") in DONE_STATES:
                return info
            time.sleep(0.5)
        subprocess.run(["scancel", job_id], env=self.env, timeout=30)
        raise AssertionError(f"job {job_id} not done after {timeout} s: {self.job(job_id)}\n{tail(log)}")


def tail(log: Path, n: int = 6000) -> str:
    return f"--- {log} ---\n{log.read_text()[-n:]}" if log.exists() else f"(no log at {log})"


def run_args(base_export: Path, out: Path, *extra: str) -> list[str]:
    return [str(TINY), *FAST, f"model.init_from={base_export}", f"output_dir={out}", *extra]


def find_worker(out: Path, local_rank: int) -> int:
    """PID of the training process with this LOCAL_RANK writing to ``out`` (the workers carry it on argv)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if (f"output_dir={out}".encode() in argv and b"translrec_dist" in argv and b"accelerate.commands.launch"
                not in argv and f"LOCAL_RANK={local_rank}".encode() in environ):
            return int(proc.name)
    raise AssertionError(f"no training process with LOCAL_RANK={local_rank} for {out}")


def kill_worker(out: Path, local_rank: int) -> int:
    pid = find_worker(out, local_rank)
    os.kill(pid, signal.SIGKILL)
    return pid
