"""launch/multinode.sh and slurm/job.sh check every number taken from the environment before bash arithmetic,
which would otherwise run a command substitution hidden in it (``a[$(cmd)]``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY

INJECTIONS = ["$(touch {marker})", "a[$(touch {marker})]", "1+1", "08x", "-1"]


def stub_bin(tmp_path: Path) -> Path:
    """scontrol and srun stand-ins: srun prints the launch line instead of starting anything."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/sh\n[ \"$1 $2\" = 'show hostnames' ] && echo n1\nexit 0\n")
    (bin_dir / "srun").write_text("#!/bin/sh\necho SRUN \"$@\"\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return bin_dir


def run_job(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PATH": f"{stub_bin(tmp_path)}:{os.environ['PATH']}", "TRANSLREC_PYTHON": sys.executable,
            "SLURM_JOB_ID": "7", "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "n[1-2]", "TRANSLREC_CPU": "1", **env}
    return subprocess.run(["bash", str(REPO / "slurm" / "job.sh"), str(TINY), f"output_dir={tmp_path / 'run'}"],
                          env=full, capture_output=True, text=True, timeout=120, cwd=tmp_path)


@pytest.mark.parametrize("variable", ["TRANSLREC_NPROC_PER_NODE", "SLURM_RESTART_COUNT", "SLURM_NNODES",
                                      "SLURM_JOB_ID", "TRANSLREC_MASTER_PORT"])
@pytest.mark.parametrize("value", INJECTIONS[:2])
def test_job_sh_refuses_non_numbers_before_arithmetic(tmp_path, variable, value):
    marker = tmp_path / "MARKER"
    proc = run_job(tmp_path, **{variable: value.format(marker=marker)})
    assert proc.returncode == 2, proc.stderr
    assert f"translrec: {variable}=" in proc.stderr and "is not a whole number" in proc.stderr
    assert not marker.exists()
    assert "SRUN" not in proc.stdout


def test_job_sh_accepts_numbers_and_computes_the_world_size(tmp_path):
    proc = run_job(tmp_path, TRANSLREC_NPROC_PER_NODE="3", SLURM_RESTART_COUNT="0", TRANSLREC_MASTER_PORT="29999")
    assert proc.returncode == 0, proc.stderr
    assert "processes=6 (2 x 3)" in proc.stdout and "master=n1:29999" in proc.stdout
    assert "--num_processes 6" in proc.stdout


@pytest.mark.parametrize("value", INJECTIONS)
def test_multinode_sh_refuses_a_non_numeric_nproc(tmp_path, value):
    marker = tmp_path / "MARKER"
    env = {**os.environ, "NPROC_PER_NODE": value.format(marker=marker), "PYTHON": "false"}
    proc = subprocess.run(["bash", str(REPO / "launch" / "multinode.sh"), "1", "0", "127.0.0.1", "29500", str(TINY)],
                          env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "NPROC_PER_NODE must be a positive integer" in proc.stderr
    assert not marker.exists()
