"""A real SLURM for the tests, and helpers to submit slurm/ scripts to it.

The ``slurm`` session fixture runs tests/slurm/cluster.sh (munged, slurmctld, two slurmd n1/n2 on this host;
installs the Debian packages as root if missing) and stops the daemons by PID afterwards. The fixtures live
here and test modules import them by name, so that only tests/slurm/test_*.py start a cluster."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import FAST, REPO, TINY, run_cli
from translrec_dist.run_dir import RunDir

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



@pytest.fixture(scope="session", name="slurm")
def slurm_fixture(tmp_path_factory):
    if shutil.which("sbatch") is None and os.geteuid() != 0:
        pytest.skip("SLURM is not installed and this is not root (tests/slurm/cluster.sh installs it as root)")
    root = tmp_path_factory.mktemp("slurm")
    start = subprocess.run(["bash", str(CLUSTER), "start", str(root)], capture_output=True, text=True, timeout=600)
    if start.returncode != 0:
        subprocess.run(["bash", str(CLUSTER), "stop", str(root)], timeout=60)
        raise AssertionError(f"cluster.sh start failed:\n{start.stdout}\n{start.stderr}")
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf"), "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "TRANSLREC_CPU": "1", "TRANSLREC_PYTHON": sys.executable,
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    yield Cluster(root, env)
    subprocess.run(["scancel", "--user", os.environ.get("USER", "root")], env=env, timeout=30)
    subprocess.run(["bash", str(CLUSTER), "stop", str(root)], timeout=120)


@pytest.fixture(scope="session", name="base_export")
def base_export_fixture(tmp_path_factory) -> Path:
    """One tiny export every SLURM run starts from (model.init_from): the same vocabulary and initial
    weights in every run, so runs in different modes can be compared number for number."""
    out = tmp_path_factory.mktemp("base") / "run"
    run_cli(["train", str(TINY), *FAST, "train.max_steps=1", "eval.splits=[test]", f"output_dir={out}"])
    return RunDir(out).final

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
