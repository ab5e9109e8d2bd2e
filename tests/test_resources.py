"""resources: the CPUs a job may use, from affinity, cgroup quotas and --threads."""

from __future__ import annotations

import os

import pytest

from s2pipe.raster.profiles import gdal_env
from s2pipe.resources import THREADS_VARIABLE, apply_threads, cgroup_cpu_limit, thread_count, usable_cpus


def _cgroup(tmp_path, proc_line, files):
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    proc = tmp_path / "proc_cgroup"
    proc.write_text(proc_line)
    return root, proc


@pytest.mark.parametrize("text, cpus", [("max 100000\n", None), ("200000 100000\n", 2.0),
                                        ("150000 100000", 1.5), ("garbage", None), ("", None)])
def test_v2_cpu_max_at_the_namespace_root(tmp_path, text, cpus):
    root, proc = _cgroup(tmp_path, "0::/\n", {"cpu.max": text})
    assert cgroup_cpu_limit(root, proc) == cpus


def test_v2_smallest_quota_of_the_group_and_its_parents(tmp_path):
    root, proc = _cgroup(tmp_path, "0::/job/step\n", {"cpu.max": "max 100000",
                                                      "job/cpu.max": "300000 100000",
                                                      "job/step/cpu.max": "max 100000"})
    assert cgroup_cpu_limit(root, proc) == 3.0


def test_v1_cfs_quota(tmp_path):
    root, proc = _cgroup(tmp_path, "4:memory:/x\n3:cpu,cpuacct:/\n",
                         {"cpu,cpuacct/cpu.cfs_quota_us": "50000", "cpu,cpuacct/cpu.cfs_period_us": "100000"})
    assert cgroup_cpu_limit(root, proc) == 0.5
    root, proc = _cgroup(tmp_path / "b", "3:cpu,cpuacct:/\n",
                         {"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"})
    assert cgroup_cpu_limit(root, proc) is None


def test_usable_cpus_caps_affinity_by_the_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    root, proc = _cgroup(tmp_path, "0::/\n", {"cpu.max": "max 100000"})
    assert usable_cpus(root, proc) == affinity
    root, proc = _cgroup(tmp_path / "b", "0::/\n", {"cpu.max": "50000 100000"})
    assert usable_cpus(root, proc) == 1  # less than one CPU of quota still runs one thread
    root, proc = _cgroup(tmp_path / "c", "0::/\n", {"cpu.max": f"{100000 * (affinity + 5)} 100000"})
    assert usable_cpus(root, proc) == affinity


def test_threads_option_then_omp_then_the_machine(monkeypatch):
    monkeypatch.delenv(THREADS_VARIABLE, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert thread_count() == usable_cpus()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_count() == 3
    monkeypatch.setenv(THREADS_VARIABLE, "1")
    assert thread_count() == 1
    monkeypatch.delenv("GDAL_NUM_THREADS", raising=False)
    assert gdal_env().options["GDAL_NUM_THREADS"] == "1"


def test_apply_threads_sizes_torch(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(THREADS_VARIABLE, "1")
        assert apply_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv(THREADS_VARIABLE, str(usable_cpus()))  # --threads wins, up or down
        assert apply_threads() == usable_cpus() == torch.get_num_threads()
        monkeypatch.delenv(THREADS_VARIABLE)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(1)  # a caller's own choice below the machine's is kept
        assert apply_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_cli_threads_option(monkeypatch):
    from click.testing import CliRunner

    from cli import cli

    monkeypatch.setenv(THREADS_VARIABLE, "5")  # restored after the test
    result = CliRunner().invoke(cli, ["--threads", "0", "info", "--help"])
    assert result.exit_code == 2 and "--threads" in result.output
    result = CliRunner().invoke(cli, ["--threads", "2", "info", "--help"])
    assert result.exit_code == 0
    assert os.environ[THREADS_VARIABLE] == "2"
