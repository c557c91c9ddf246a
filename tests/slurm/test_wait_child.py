"""slurm/wait_child.sh: the batch shell gets srun's real exit status even when a trap interrupts its `wait`.

No cluster needed: a background child stands in for srun, and the shell signals itself as SLURM would."""

from __future__ import annotations

import subprocess

from tests.conftest import REPO

WAIT_CHILD = REPO / "slurm" / "wait_child.sh"
# The child ends while a slow trap runs: bash's `wait` returns 138 (128 + USR1) although the child has ended.
SCENARIO = '''
source "$1"
trap 'sleep {trap_s}' USR1
( sleep 0.4; {child_exit} ) &
child=$!
( sleep 0.2; kill -USR1 $$ ) &
{waiting}
echo "rc=$rc"
'''
FIXED = "until wait_child $child; do :; done; rc=$child_rc"
# slurm/job.sh before the fix: a wait cut short by the trap, with the child gone by then, ended the loop.
NAIVE = 'while :; do wait $child; rc=$?; kill -0 $child 2>/dev/null || break; done'


def run(waiting: str, child_exit: str = "exit 3", trap_s: float = 0.6) -> str:
    script = SCENARIO.format(trap_s=trap_s, child_exit=child_exit, waiting=waiting)
    out = subprocess.run(["bash", "-c", script, "test", str(WAIT_CHILD)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_scenario_reproduces_the_race_of_a_plain_wait():
    assert run(NAIVE) == "rc=138"


def test_wait_child_returns_the_exit_status_when_the_child_ends_during_a_trap():
    assert run(FIXED) == "rc=3"
    assert run(FIXED, child_exit="exit 0") == "rc=0"


def test_wait_child_waits_on_when_the_trap_returns_before_the_child_ends():
    assert run(FIXED, trap_s=0) == "rc=3"


def test_a_child_killed_by_a_signal_keeps_its_own_status():
    assert run(FIXED, child_exit="kill -9 $BASHPID", trap_s=0) == "rc=137"
    assert run(FIXED, child_exit="kill -9 $BASHPID") == "rc=137"
