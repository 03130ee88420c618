"""What a run may use: threads from affinity, cgroup quota and the load now; memory estimates."""

from __future__ import annotations

from pathlib import Path

import pytest

import psdkit.run.resources as res
from psdkit.config.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("cpus", "quota", "busy", "devices", "accelerator", "threads"),
    [
        (2, None, 0, 1, "auto", 2),  # an idle laptop: every core
        (2, None, 1, 1, "auto", 1),  # one competing job: the free core only
        (2, None, 5, 1, "auto", 1),  # overloaded: never below one
        (16, 2.5, 0, 1, "auto", 3),  # a CI container: the cgroup quota, rounded up
        (16, None, 3, 1, "cpu", 13),
        (8, None, 0, 4, "cpu", 2),  # CPU DDP: the processes share the cores (they are each other's load)
    ],
)
def test_thread_count(monkeypatch, cpus, quota, busy, devices, accelerator, threads):
    monkeypatch.setattr(res.os, "sched_getaffinity", lambda pid: set(range(cpus)))
    monkeypatch.setattr(res, "_cgroup_cpu_quota", lambda: quota)
    monkeypatch.setattr(res, "busy_cpus", lambda: busy)
    assert res.threads_per_process(devices, accelerator) == threads


def test_busy_cpus_reads_this_machine():
    assert 0 <= res.busy_cpus(samples=3, interval_s=0.0) < 4096


def test_memory_estimate_grows_with_the_step():
    base = load_recipe(ROOT / "recipes" / "quickstart.yaml")
    small, _ = res.estimate_step_bytes(base)
    wide, why = res.estimate_step_bytes(load_recipe(ROOT / "recipes" / "quickstart.yaml", ["camera.config.width=64"]))
    deep, _ = res.estimate_step_bytes(
        load_recipe(ROOT / "recipes" / "quickstart.yaml", ["renderer.config.num_samples=64"])
    )
    assert small < wide and small < deep and "4 views x 32x64 px x 32 points" in why
    milestone = "camera.config.milestones=[{step: 100, height: 128, width: 128, batch_size: 2}]"
    late, why = res.estimate_step_bytes(load_recipe(ROOT / "recipes" / "quickstart.yaml", [milestone]))
    assert "2 views x 128x128 px" in why and late > small, "the largest milestone sizes the estimate"
