"""The GPU bench must be ready when a GPU machine is lent: check its plumbing on CPU (tiny model, 4 steps)."""

import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_gpu_script_syntax_and_cpu_dry_run():
    subprocess.run(["bash", "-n", str(REPO / "bench" / "gpu.sh")], check=True)
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_throughput.py"), "--dry-run", "--strategies",
                           "ddp", "--seqs", "64"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.split()[:2] == ["cross", "64"]]
    assert [(r[2], r[3], r[4]) for r in rows] == [("ddp", "dynamic", "bf16"), ("ddp", "max_length", "bf16"),
                                                  ("ddp", "dynamic", "fp32")]
    tokens = [float(r[6]) for r in rows]  # tokens/s counts real tokens: every run processed some
    assert all(t > 0 for t in tokens), tokens
    sequential = [line for line in proc.stdout.splitlines() if line.startswith("sequential ")]
    assert len(sequential) == 1, proc.stdout
    assert float(sequential[0].split()[6]) > 0, sequential  # the sequential cell really trained


@pytest.mark.slow
def test_retrieval_bench_compares_exact_and_approximate_index():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "retrieval.py"), "--ann", "--items", "3000", "--dim",
                           "32", "--repeats", "1", "--hnsw-m", "16"], capture_output=True, text=True, cwd=REPO,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()
            if line.startswith(("exact ", "faiss-hnsw "))}
    assert float(rows["exact"][2]) == 1.0 and 0.7 <= float(rows["faiss-hnsw"][2]) <= 1.0
    assert all(float(v) > 0 for r in rows.values() for v in r[:2])
