"""A real SLURM for the tests: tests/slurm/cluster.sh brings up munged, slurmctld and two slurmd (n1, n2)
on this host for the session and stops them by PID afterwards. Needs root (to install the Debian packages
if missing) or an existing installation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_harness import CLUSTER, FAST, TINY, Cluster, run_cli


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
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


@pytest.fixture(scope="session")
def base_export(tmp_path_factory) -> Path:
    """One tiny export every SLURM run starts from (model.init_from): the same vocabulary and initial
    weights in every run, so runs in different modes can be compared number for number."""
    out = tmp_path_factory.mktemp("base") / "run"
    run_cli(["train", str(TINY), *FAST, "train.max_steps=1", "eval.splits=[test]", f"output_dir={out}"])
    return out / "final"
