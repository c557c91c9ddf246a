"""The thread count from affinity, cgroup quota (v1 and v2, nested, container paths), local ranks and load."""

from __future__ import annotations

import subprocess
import sys

import pytest

from translrec_dist import threads
from translrec_dist.threads import cgroup_cpu_limit, configure_threads, local_processes, plan_threads


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_nested_levels_tightest_wins(tmp_path):
    root = tmp_path / "cg"
    write(tmp_path / "self", "0::/slurm/job_7/step_0\n")
    write(root / "cpu.max", "max 100000\n")
    write(root / "slurm" / "job_7" / "cpu.max", "300000 100000\n")  # --cpus-per-task=3 on the job
    write(root / "slurm" / "job_7" / "step_0" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(tmp_path / "self", root) == 3.0
    write(root / "slurm" / "cpu.max", "150000 100000\n")
    assert cgroup_cpu_limit(tmp_path / "self", root) == 1.5


def test_cgroup_v2_container_path_not_under_the_mount_reads_the_mount_root(tmp_path):
    root = tmp_path / "cg"
    write(tmp_path / "self", "0::/docker/abc\n")  # the container sees its own cgroup as the mount root
    write(root / "cpu.max", "200000 100000\n")
    assert cgroup_cpu_limit(tmp_path / "self", root) == 2.0


def test_cgroup_v1_quota_and_unlimited(tmp_path):
    root = tmp_path / "cg"
    write(tmp_path / "self", "4:memory:/x\n2:cpu,cpuacct:/job\n")
    write(root / "cpu,cpuacct" / "job" / "cpu.cfs_quota_us", "-1\n")
    write(root / "cpu,cpuacct" / "job" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(tmp_path / "self", root) is None
    write(root / "cpu,cpuacct" / "job" / "cpu.cfs_quota_us", "400000\n")
    assert cgroup_cpu_limit(tmp_path / "self", root) == 4.0


def test_no_cgroup_files_means_no_limit(tmp_path):
    assert cgroup_cpu_limit(tmp_path / "missing", tmp_path) is None
    write(tmp_path / "self", "0::/\n")
    write(tmp_path / "cg" / "cpu.max", "garbage\n")
    assert cgroup_cpu_limit(tmp_path / "self", tmp_path / "cg") is None


@pytest.mark.parametrize("usable,procs,expected", [
    (16, 1, 16),     # one process: every CPU it may use
    (16, 4, 4),      # 4 ranks on the node share them
    (16, 3, 5),      # rounded down: no rank's threads spill onto another's core
    (1.5, 1, 1),     # a fractional quota rounds down, never to 0
    (2, 4, 1),       # more ranks than CPUs: one thread each
])
def test_plan_threads(usable, procs, expected):
    assert plan_threads(usable, procs).threads == expected


def test_local_processes_from_launcher_or_slurm():
    assert local_processes({"LOCAL_WORLD_SIZE": "4", "SLURM_NTASKS_PER_NODE": "8"}) == 4
    assert local_processes({"SLURM_NTASKS_PER_NODE": "8"}) == 8
    assert local_processes({"LOCAL_WORLD_SIZE": "bad"}) == 1
    assert local_processes({}) == 1


def test_configure_threads_respects_the_user_and_recomputes_for_a_child(monkeypatch):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 8.0)
    assert configure_threads({"OMP_NUM_THREADS": "3"}) is None  # the user's own count
    assert configure_threads({"TRANSLREC_AUTO_THREADS": "0"}) is None
    env = {"LOCAL_WORLD_SIZE": "2", "OMP_WAIT_POLICY": "ACTIVE"}
    plan = configure_threads(env)
    assert plan.threads == 4 and env["OMP_NUM_THREADS"] == "4"
    assert env["OMP_WAIT_POLICY"] == "ACTIVE" and "KMP_BLOCKTIME" not in env  # the user's policy kept
    opted = {"LOCAL_WORLD_SIZE": "2", "OMP_WAIT_POLICY": "ACTIVE", "TRANSLREC_SLEEPING_WAITS": "1"}
    configure_threads(opted)
    assert opted["OMP_WAIT_POLICY"] == "ACTIVE" and opted["KMP_BLOCKTIME"] == "0"  # still the user's policy
    # A child of that process (a launcher's rank) inherits OMP_NUM_THREADS=4 but it was ours: recompute.
    child = {**env, "LOCAL_WORLD_SIZE": "8"}
    assert configure_threads(child).threads == 1 and child["OMP_NUM_THREADS"] == "1"


def test_usable_cpus_is_the_smaller_of_affinity_and_quota(tmp_path, monkeypatch):
    write(tmp_path / "self", "0::/\n")
    write(tmp_path / "cg" / "cpu.max", "150000 100000\n")
    monkeypatch.setattr(threads, "affinity_cpus", lambda: 4)
    assert threads.usable_cpus(tmp_path / "self", tmp_path / "cg") == 1.5
    monkeypatch.setattr(threads, "affinity_cpus", lambda: 1)
    assert threads.usable_cpus(tmp_path / "self", tmp_path / "cg") == 1.0


def test_cli_sets_threads_before_torch_starts_openmp(tmp_path):
    """In a fresh interpreter: the CLI's choice reaches torch, and the wait policy is in the environment first."""
    code = ("import os, sys; from translrec_dist.threads import configure_threads; p = configure_threads(); "
            "assert 'torch' not in sys.modules; import torch; "
            "print(p and p.threads, torch.get_num_threads(), os.environ.get('OMP_WAIT_POLICY', 'unset'))")
    env = {"PATH": "/usr/bin:/bin", "LOCAL_WORLD_SIZE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    planned, actual, policy = out.split()
    assert planned == actual and policy == "unset"  # sleeping waits are opt-in
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "TRANSLREC_SLEEPING_WAITS": "1"}, check=True).stdout
    assert out.split()[2] == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "OMP_NUM_THREADS": "1"}, check=True).stdout
    assert out.split() == ["None", "1", "unset"]  # the user's OMP_NUM_THREADS: no plan, no wait policy imposed
