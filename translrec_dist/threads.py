"""torch's intra-op thread count from the CPUs this process may really use (stdlib only: runs before torch loads).

Why: torch starts one OpenMP thread per CPU it sees, and every parallel region ends in a barrier. When other
processes hold the cores (a shared workstation, a non-exclusive SLURM partition, several ranks on one node),
each op waits for its descheduled thread: on 2 cores at load 4 the tiny quick start ran 28x slower than idle.
So the count is the smaller of the CPUs in the affinity mask (taskset, SLURM's cpuset binding) and the cgroup CPU
quota (containers, ``--cpus-per-task`` under cgroup enforcement), divided among this node's ranks
(``LOCAL_WORLD_SIZE``). With ``TRANSLREC_SLEEPING_WAITS=1`` (shared cores) OpenMP threads also sleep instead of
spinning at a barrier (``OMP_WAIT_POLICY=PASSIVE``); it is off by default because it slowed the idle quick start
1.76x. Either only takes effect when set before the OpenMP runtime starts, i.e. before torch is imported: call
``configure_threads`` first thing.

The load of the machine does not lower the count. Measured beside two busy loops on the shared 2-core VM
(bench/threads.py, docs/benchmarks.md): with sleeping waits, two threads took 30, 75 and 70 s where one thread
took 134, 130 and 65 s (the scheduler shares cores per thread, not per process); spinning waits were what
collapsed.

The user's choice wins: an ``OMP_NUM_THREADS`` in the environment, or ``TRANSLREC_AUTO_THREADS=0`` to leave
everything as torch would set it.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
OFF_SWITCH = "TRANSLREC_AUTO_THREADS"
# The count this module chose, so that a child process (a launcher's rank) recomputes it instead of taking the
# parent's as the user's own OMP_NUM_THREADS.
CHOSEN = "TRANSLREC_CHOSEN_THREADS"
_configured: ThreadPlan | None = None  # this process's plan, returned by a second call
# Sleep at OpenMP barriers instead of spinning: GNU libgomp (torch's pip wheels) and Intel/LLVM libomp.
WAIT_SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
WAIT_SWITCH = "TRANSLREC_SLEEPING_WAITS"  # =1: OpenMP threads sleep at barriers (shared cores)


@dataclass(frozen=True)
class ThreadPlan:
    threads: int
    usable_cpus: float  # affinity and cgroup quota together
    local_processes: int

    def describe(self) -> str:
        return (f"torch threads: {self.threads} (usable CPUs {self.usable_cpus:g}, local processes "
                f"{self.local_processes}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')})")


def affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS has no affinity API
        return os.cpu_count() or 1


def cgroup_cpu_limit(proc_cgroup: Path = Path("/proc/self/cgroup"),
                     root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup quota of this process (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), None if none.

    Limits nest, so every level from the process's cgroup up to the mount root counts, and the tightest wins.
    Inside a container the listed path is often not below the mount: then the mount root is the process's own.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0" and controllers == "":
            limits += [_v2_limit(d) for d in _levels(root, path)]
        elif "cpu" in controllers.split(","):
            for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                if mount.is_dir():
                    limits += [_v1_limit(d) for d in _levels(mount, path)]
                    break
    limits = [x for x in limits if x is not None]
    return min(limits) if limits else None


def _levels(mount: Path, path: str) -> list[Path]:
    """The cgroup's directory and its parents up to the mount (only the mount if the path is not below it)."""
    parts = [p for p in path.strip().split("/") if p]
    dirs = [mount.joinpath(*parts[:i]) for i in range(len(parts), 0, -1)]
    return [d for d in dirs if d.is_dir()] + [mount]


def _v2_limit(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _v1_limit(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def usable_cpus(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> float:
    quota = cgroup_cpu_limit(proc_cgroup, root)
    cpus = affinity_cpus()
    return float(cpus) if quota is None else min(float(cpus), quota)


def plan_threads(usable: float, local_processes: int) -> ThreadPlan:
    """Whole CPUs per local process: a fractional quota rounds down (a thread beyond it is throttled), and ranks
    sharing a node do not put two threads on one core."""
    return ThreadPlan(max(1, math.floor(usable / max(1, local_processes))), usable, local_processes)


def local_processes(environ=os.environ) -> int:
    for name in ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"):
        try:
            return max(1, int(environ[name]))
        except (KeyError, ValueError):
            continue
    return 1


def configure_threads(environ=os.environ) -> ThreadPlan | None:
    """Set OpenMP's thread count and wait policy for this process; None when the user decided (see module doc).

    Before torch is imported the environment is enough; after, ``torch.set_num_threads`` lowers the count (a
    program that already chose fewer keeps its choice). A second call in the same process returns the first plan.
    """
    global _configured
    if _configured is not None and environ is os.environ:
        return _configured
    if environ.get(OFF_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if "OMP_NUM_THREADS" in environ and environ["OMP_NUM_THREADS"] != environ.get(CHOSEN):
        return None
    plan = plan_threads(usable_cpus(), local_processes(environ))
    # Sleeping waits are opt-in: on an idle 2-core machine they made the quick start 1.76x slower (104 s against
    # 59 s, measured after the merge), while they win beside other jobs (docs/benchmarks.md).
    if environ.get(WAIT_SWITCH, "0").strip().lower() in ("1", "true", "yes", "on"):
        for name, value in WAIT_SETTINGS.items():
            environ.setdefault(name, value)
    environ["OMP_NUM_THREADS"] = environ[CHOSEN] = str(plan.threads)
    torch = sys.modules.get("torch")
    if environ is os.environ:
        _configured = plan
        if torch is not None and torch.get_num_threads() > plan.threads:  # a program that chose fewer keeps them
            torch.set_num_threads(plan.threads)
    log.debug(plan.describe())
    return plan
