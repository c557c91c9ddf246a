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
    bin_dir.mkdir(exist_ok=True)
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
    assert "NPROC_PER_NODE must be a whole number" in proc.stderr
    assert not marker.exists()


def node_stubs(tmp_path: Path) -> Path:
    """srun runs its command here (one node); every python call other than config-get / run-status is printed."""
    bin_dir = stub_bin(tmp_path)
    (bin_dir / "srun").write_text('#!/bin/sh\nwhile [ "${1#--}" != "$1" ]; do shift; done\nexec "$@"\n')
    (bin_dir / "py").write_text(f'#!/bin/sh\ncase "$3" in config-get|run-status) exec {sys.executable} "$@";; esac\n'
                                'echo PY "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return bin_dir


def run_node(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PATH": f"{node_stubs(tmp_path)}:{os.environ['PATH']}", "TRANSLREC_PYTHON": "py",
            "SLURM_JOB_ID": "7", "SLURM_NNODES": "12", "SLURM_JOB_NODELIST": "n[1-12]", "TRANSLREC_CPU": "1",
            "SLURMD_NODENAME": "n10", **env}
    return subprocess.run(["bash", str(REPO / "slurm" / "job.sh"), str(TINY), f"output_dir={tmp_path / 'run'}"],
                          env=full, capture_output=True, text=True, timeout=120, cwd=tmp_path)


@pytest.mark.parametrize(("node_id", "rank"), [("010", "10"), ("09", "9"), ("0", "0")])
def test_job_sh_reads_the_node_rank_in_base_10_on_each_node(tmp_path, node_id, rank):
    """010 is node 10 for SLURM and accelerate; bash arithmetic alone would read octal 8 (and fail on 09)."""
    proc = run_node(tmp_path, SLURM_NODEID=node_id, SLURM_NNODES="012", TRANSLREC_NPROC_PER_NODE="02")
    assert proc.returncode == 0, proc.stderr
    assert f"is node rank {rank} of 12" in proc.stdout
    assert f"--machine_rank {rank} " in proc.stdout and "--num_machines 12 --num_processes 24 " in proc.stdout
    if rank != "0":  # a node other than the first waits for the master first
        assert "check-master" in proc.stdout


@pytest.mark.parametrize("value", [*INJECTIONS[:2], "1e3", "", "9" * 40])
def test_job_sh_refuses_a_node_rank_that_is_not_a_number_on_that_node(tmp_path, value):
    marker = tmp_path / "MARKER"
    proc = run_node(tmp_path, SLURM_NODEID=value.format(marker=marker))
    assert proc.returncode == 2, proc.stderr
    line = next(x for x in proc.stderr.splitlines() if x.startswith("translrec: SLURM_NODEID="))
    assert "is not a whole number" in line and len(line) < 120  # a long value is cut, not repeated
    assert not marker.exists()
    assert "PY -m accelerate" not in proc.stdout


def test_job_sh_reads_leading_zeros_in_base_10_and_refuses_a_port_out_of_range(tmp_path):
    proc = run_job(tmp_path, TRANSLREC_NPROC_PER_NODE="08", SLURM_NNODES="09", TRANSLREC_MASTER_PORT="029999")
    assert proc.returncode == 0, proc.stderr
    assert "processes=72 (9 x 8)" in proc.stdout and "master=n1:29999" in proc.stdout
    proc = run_job(tmp_path, TRANSLREC_MASTER_PORT="70000")
    assert proc.returncode == 2 and "TRANSLREC_MASTER_PORT=70000 is not a TCP port" in proc.stderr


def multinode(tmp_path: Path, *args: str, nproc: str = "03") -> subprocess.CompletedProcess:
    env = {**os.environ, "NPROC_PER_NODE": nproc, "PYTHON": "echo"}  # echo prints the accelerate command line
    return subprocess.run(["bash", str(REPO / "launch" / "multinode.sh"), *args, str(TINY)], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_multinode_sh_reads_leading_zeros_in_base_10_like_accelerate(tmp_path):
    proc = multinode(tmp_path, "010", "09", "127.0.0.1", "029500")
    assert proc.returncode == 0, proc.stderr
    assert "--num_machines 10 --machine_rank 9 --num_processes 30 " in proc.stdout
    assert "--main_process_port 29500 " in proc.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("2", "09x", "h", "29500"), "NODE_RANK must be a whole number, got '09x'"),
    (("a[$(touch MARKER)]", "0", "h", "29500"), "NNODES must be a whole number"),
    (("2", "0", "h", "$(touch MARKER)"), "MASTER_PORT must be a whole number"),
    (("2", "2", "h", "29500"), "NODE_RANK=2 must be below NNODES=2"),
    (("0", "0", "h", "29500"), "NNODES must be at least 1"),
    (("2", "0", "h", "65536"), "MASTER_PORT=65536 is not a TCP port")])
def test_multinode_sh_refuses_each_bad_number_by_name(tmp_path, args, message):
    proc = multinode(tmp_path, *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "MARKER").exists() and "accelerate" not in proc.stdout


@pytest.mark.parametrize(("nproc", "ok"), [("04", True), ("0", False), ("08x", False), ("$(touch MARKER)", False)])
def test_train_sh_reads_nproc_in_base_10(tmp_path, nproc, ok):
    py = tmp_path / "py"
    py.write_text('#!/bin/sh\ncase "$1" in -c) echo 0;; *) echo PY "$@";; esac\n')  # no GPUs; print the launch
    py.chmod(0o755)
    env = {**os.environ, "PYTHON": str(py), "MASTER_PORT": "029501"}
    proc = subprocess.run(["bash", str(REPO / "launch" / "train.sh"), str(TINY), "--nproc", nproc], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    if ok:
        assert proc.returncode == 0, proc.stderr
        assert "--num_processes 4 --main_process_port 29501 " in proc.stdout
    else:
        assert proc.returncode == 2 and "--nproc must be a positive integer" in proc.stderr, proc.stderr
        assert not (tmp_path / "MARKER").exists()
