"""Under TRANSLREC_CI=1 (set by .ci/run) a skipped test fails with its reason; elsewhere it stays a skip."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

SKIPPING = '''
import pytest

def test_needs_something_missing():
    pytest.skip("frobnicator is not installed")
'''


def run_pytest(tmp_path, ci: bool) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRANSLREC_CI": "1" if ci else "0"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def test_a_skip_fails_in_ci_and_names_its_reason(tmp_path):
    proc = run_pytest(tmp_path, ci=True)
    assert proc.returncode == 1, proc.stdout
    assert "1 failed" in proc.stdout and "frobnicator is not installed" in proc.stdout


def test_a_skip_is_a_skip_outside_ci(tmp_path):
    proc = run_pytest(tmp_path, ci=False)
    assert proc.returncode == 0, proc.stdout
    assert "1 skipped" in proc.stdout
