"""What a job may use of the machine and what it costs it: the CPUs its compute threads
follow, and peak memory as the summaries and benchmarks report it.

One place decides how many compute threads torch, ONNX Runtime and GDAL run: ``--threads``
(the environment variable :data:`THREADS_VARIABLE`), else ``OMP_NUM_THREADS`` where it is
set (torchrun and Dask workers set it), else the CPUs this process may use: its CPU
affinity, capped by the cgroup's CPU quota (a container or a SLURM job given 2 of 64 cores
runs 2 threads, not 64). Two jobs on one machine then share its cores instead of each
oversubscribing them.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import sys
from pathlib import Path

log = logging.getLogger(__name__)

#: ``s2pipe --threads N`` (or this variable): the compute threads of each job.
THREADS_VARIABLE = "S2PIPE_THREADS"
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _v2_quota(text: str | None) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` (``"max 100000"`` or ``"200000 100000"``)."""
    parts = (text or "").split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_quota(quota: str | None, period: str | None) -> float | None:
    try:
        q, p = int(quota or ""), int(period or "")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPU quota of this process's cgroup and its parents, in CPUs (None: no quota).

    cgroup v2: ``cpu.max`` of the process's group and each group above it (the smallest
    wins); cgroup v1: ``cpu.cfs_quota_us / cpu.cfs_period_us`` of its ``cpu`` controller.
    """
    limits: list[float] = []
    for line in (_read(proc_cgroup) or "").splitlines():
        hier, _, rest = line.partition(":")
        controllers, _, group = rest.partition(":")
        group = group.strip("/")
        if hier == "0" and controllers == "":  # v2: walk up from the process's own group
            parts = group.split("/") if group else []
            for i in range(len(parts), -1, -1):
                q = _v2_quota(_read(root.joinpath(*parts[:i], "cpu.max")))
                if q is not None:
                    limits.append(q)
        elif "cpu" in controllers.split(","):
            for mount in (root / "cpu", root / "cpu,cpuacct", root / controllers):
                base = mount / group if (mount / group / "cpu.cfs_quota_us").exists() else mount
                q = _v1_quota(_read(base / "cpu.cfs_quota_us"), _read(base / "cpu.cfs_period_us"))
                if q is not None:
                    limits.append(q)
                    break
    if not limits and (root / "cpu.max").exists():  # a container's own namespace root
        q = _v2_quota(_read(root / "cpu.max"))
        if q is not None:
            limits.append(q)
    return min(limits) if limits else None


def usable_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """CPUs this process may run on: its affinity, capped by the cgroup quota rounded down
    (at least 1; 1.5 CPUs of quota run 1 thread, as Go's automaxprocs does)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_limit(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def _positive(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    try:
        n = int(value)
    except ValueError:
        return None
    return n if n >= 1 else None


def thread_count() -> int:
    """Compute threads for this job: ``--threads`` / :data:`THREADS_VARIABLE`, else
    ``OMP_NUM_THREADS``, else :func:`usable_cpus`."""
    return _positive(THREADS_VARIABLE) or _positive("OMP_NUM_THREADS") or usable_cpus()


def set_threads(threads: int | None) -> None:
    """Make ``threads`` the compute threads of every job this process (and the processes
    it starts) runs; None keeps what :func:`thread_count` finds."""
    if threads is not None:
        os.environ[THREADS_VARIABLE] = str(max(1, int(threads)))


def apply_threads() -> int:
    """Size torch's intra-op thread pool (when torch is loaded) and return the count that
    ONNX Runtime sessions take too: :func:`thread_count` where ``--threads`` was given,
    else torch's own count capped by it (torch counts the machine's cores, not the
    affinity or the cgroup quota; a caller that set fewer threads keeps them)."""
    n = thread_count()
    torch = sys.modules.get("torch")
    if torch is None:
        return n
    have = torch.get_num_threads()
    want = n if _positive(THREADS_VARIABLE) else min(have, n)
    if want != have:
        log.debug("torch: %d compute threads (was %d)", want, have)
        torch.set_num_threads(want)
    return want


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB.

    Linux's VmHWM: ``getrusage`` would also count the parent's memory at ``fork`` time
    for a process started by another (large) Python process.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
