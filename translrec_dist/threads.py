"""torch's intra-op thread count from the CPUs this process may really use (stdlib only: runs before torch loads).

Why: torch starts one OpenMP thread per CPU it sees, and every parallel region ends in a barrier. When other
processes hold the cores (a shared workstation, a non-exclusive SLURM partition, several ranks on one node),
each op waits for its descheduled thread: on 2 cores at load 4 the tiny quick start ran 28x slower than idle.
So the count is the smallest of: the CPUs in the affinity mask (taskset, SLURM's cpuset binding), the cgroup CPU
quota (containers, ``--cpus-per-task`` under cgroup enforcement), and the cores other processes leave free
(sampled from /proc/stat at start), divided among this node's ranks (``LOCAL_WORLD_SIZE``). OpenMP threads are
told to sleep instead of spinning at a barrier (``OMP_WAIT_POLICY=PASSIVE``), which only takes effect when set
before the OpenMP runtime starts, i.e. before torch is imported: call ``configure_threads`` first thing.

The user's choice wins: an ``OMP_NUM_THREADS`` in the environment, or ``TRANSLREC_AUTO_THREADS=0`` to leave
everything as torch would set it.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
OFF_SWITCH = "TRANSLREC_AUTO_THREADS"
# The count this module chose, so that a child process (a launcher's rank) recomputes it instead of taking the
# parent's as the user's own OMP_NUM_THREADS.
CHOSEN = "TRANSLREC_CHOSEN_THREADS"
# Sleep at OpenMP barriers instead of spinning: GNU libgomp (torch's pip wheels) and Intel/LLVM libomp.
_configured: ThreadPlan | None = None  # this process's plan: its own load must not count in a second call
WAIT_SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


@dataclass(frozen=True)
class ThreadPlan:
    threads: int
    usable_cpus: float  # affinity and cgroup quota together
    local_processes: int
    load: float | None  # CPUs other processes kept busy when this process started
    reason: str  # what decided the count, for the log line

    def describe(self) -> str:
        load = "unknown" if self.load is None else f"{self.load:.2f}"
        return (f"torch threads: {self.threads} ({self.reason}; usable CPUs {self.usable_cpus:g}, "
                f"local processes {self.local_processes}, load {load})")


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


def plan_threads(usable: float, local_processes: int, load: float | None, machine_cpus: float | None = None
                 ) -> ThreadPlan:
    """Whole CPUs per local process (a fractional quota rounds down: a thread beyond it is throttled), then fewer
    if other processes already keep cores busy: a thread that must share a core stalls every barrier.

    ``load``: busy CPUs of the whole machine (or VM) out of ``machine_cpus`` (default ``usable``); a container
    given 4 of a host's 64 CPUs is not crowded by 30 busy ones elsewhere.
    """
    share = max(1, math.floor(usable / max(1, local_processes)))
    threads, reason = share, "CPU share"
    if load is not None and share > 1:
        # Our own other ranks, starting at the same moment, are in LOCAL_WORLD_SIZE already.
        others = max(0.0, load - (local_processes - 1))
        free = min(usable, (machine_cpus or usable) - others)
        by_load = max(1, round(free / max(1, local_processes)))
        if by_load < share:
            threads, reason = by_load, "cores busy with other processes"
    return ThreadPlan(threads, usable, local_processes, load, reason)


def local_processes(environ=os.environ) -> int:
    for name in ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"):
        try:
            return max(1, int(environ[name]))
        except (KeyError, ValueError):
            continue
    return 1


def current_load(stat: Path = Path("/proc/stat"), interval: float = 0.1) -> float | None:
    """CPUs kept busy by other processes now: /proc/stat over ``interval`` seconds (this process sleeps through
    it). The 1-minute load average lags: a job started 10 s ago counts for a sixth, one that ended 10 s ago
    for most of itself; it is the fallback where /proc/stat is missing."""
    def ticks() -> tuple[int, int]:
        fields = [int(x) for x in stat.read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle  # guest time is already inside user time

    try:
        total0, idle0 = ticks()
        time.sleep(interval)
        total1, idle1 = ticks()
        cpus = os.cpu_count() or 1
        return cpus * (1 - (idle1 - idle0) / (total1 - total0)) if total1 > total0 else 0.0
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


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
    plan = plan_threads(usable_cpus(), local_processes(environ), current_load(), os.cpu_count())
    for name, value in WAIT_SETTINGS.items():
        environ.setdefault(name, value)
    environ["OMP_NUM_THREADS"] = environ[CHOSEN] = str(plan.threads)
    torch = sys.modules.get("torch")
    if environ is os.environ:
        _configured = plan
        if torch is not None and torch.get_num_threads() > plan.threads:  # a program that chose fewer keeps them
            torch.set_num_threads(plan.threads)
    (log.info if plan.reason != "CPU share" else log.debug)(plan.describe())
    return plan
