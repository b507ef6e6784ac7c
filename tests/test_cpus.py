"""The bulk engine's default process count: the CPUs this process may use, not the host's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.engine import pool
from worker.engine.pool import usable_cpus


def cgroup(root: Path, cpu_max: str) -> Path:
    """A fake cgroup v2 `cpu.max` under `root`."""
    path = root / "sys" / "fs" / "cgroup" / "cpu.max"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cpu_max + "\n")
    return root


def test_v2_quota_rounds_up(tmp_path: Path) -> None:
    assert usable_cpus(cgroup(tmp_path, "150000 100000"), affinity=8) == 2


def test_v2_no_quota_is_the_affinity(tmp_path: Path) -> None:
    assert usable_cpus(cgroup(tmp_path, "max 100000"), affinity=6) == 6


def test_affinity_of_one_is_one(tmp_path: Path) -> None:
    assert usable_cpus(cgroup(tmp_path, "400000 100000"), affinity=1) == 1
    assert usable_cpus(tmp_path, affinity=1) == 1  # no cgroup files at all


def test_small_quota_still_gives_one(tmp_path: Path) -> None:
    assert usable_cpus(cgroup(tmp_path, "20000 100000"), affinity=4) == 1


@pytest.mark.parametrize("group", ["cpu", "cpu,cpuacct"])
def test_v1_quota(tmp_path: Path, group: str) -> None:
    base = tmp_path / "sys" / "fs" / "cgroup" / group
    base.mkdir(parents=True)
    (base / "cpu.cfs_quota_us").write_text("250000\n")
    (base / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(tmp_path, affinity=16) == 3
    (base / "cpu.cfs_quota_us").write_text("-1\n")  # v1 for "no quota"
    assert usable_cpus(tmp_path, affinity=16) == 16


def test_engine_default_follows_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without VOICEMAIL_BULK_PROCESSES the engine asks usable_cpus, not os.cpu_count()."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert pool.default_processes() == 1
