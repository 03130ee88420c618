"""What the machine offers a run (CPU threads, memory) and what one training step will need.

Both are checked before any weight loads, so a recipe too large for the machine is refused with the
estimate instead of dying in an out-of-memory traceback after the run directory was created.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path

import torch

from psdkit.config.recipe import Recipe
from psdkit.contracts.guidance import StateSize
from psdkit.errors import RecipeError

GIB = 2**30


def available_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cpus, math.ceil(quota)) if quota else cpus)


def _cgroup_cpu_quota() -> float | None:
    """CPUs allowed by cgroup v2 (``cpu.max``) or v1 (``cfs_quota_us / cfs_period_us``); None if unlimited."""
    v2 = Path("/sys/fs/cgroup/cpu.max")
    try:
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        q, p = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        if q.is_file() and p.is_file():
            quota_us = int(q.read_text())
            return None if quota_us <= 0 else quota_us / int(p.read_text())
    except (OSError, ValueError):
        return None
    return None


def busy_cpus(samples: int = 5, interval_s: float = 0.01) -> int:
    """CPUs other processes keep busy right now: the median number of running tasks besides this one
    (``procs_running`` of /proc/stat, sampled ``samples`` times); 0 where it cannot be read."""
    counts = []
    for i in range(samples):
        try:
            line = next(x for x in Path("/proc/stat").read_text().splitlines() if x.startswith("procs_running"))
        except (OSError, StopIteration):
            return 0
        counts.append(max(int(line.split()[1]) - 1, 0))
        if i + 1 < samples:
            time.sleep(interval_s)
    return int(statistics.median(counts))


def threads_per_process(devices: int, accelerator: str) -> int:
    """Torch threads of one training process when ``trainer.threads`` is 0.

    The CPUs this process may use (affinity, cgroup quota) less those other processes keep busy now: more
    threads than free cores makes every step wait for descheduled threads (the quickstart on 2 cores with one
    competing process: 4.1 steps/s with 2 threads, 13.0 with 1; docs/benchmarks.md). CPU DDP processes share
    the CPUs evenly instead (they are each other's load).
    """
    if accelerator == "cpu" and devices > 1:
        return max(1, available_cpus() // devices)
    cpus = available_cpus()
    return max(1, cpus - min(busy_cpus(), cpus - 1))


def available_memory(use_gpu: bool) -> int | None:
    """Bytes a step can still allocate: free GPU memory, or available RAM (capped by a cgroup limit)."""
    if use_gpu:
        free, _ = torch.cuda.mem_get_info()
        return int(free)
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
        limit = Path("/sys/fs/cgroup/memory.max")
        used = Path("/sys/fs/cgroup/memory.current")
        if limit.is_file() and used.is_file() and limit.read_text().strip() != "max":
            found.append(int(limit.read_text()) - int(used.read_text()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def estimate_step_bytes(recipe: Recipe) -> tuple[int, str]:
    """Bytes one training step needs on one device, and how the estimate was made.

    Builds only the cheap components (representation, renderer, camera sampler: no weights) and
    multiplies the largest batch's pixels by the renderer's points per pixel and the representation's
    activation bytes per point; adds the representation's parameters with gradients and Adam moments.
    """
    comp = recipe.components
    field = comp["representation"].cls(comp["representation"].config)
    renderer = comp["renderer"].cls(comp["renderer"].config)
    camera = comp["camera"].cls(comp["camera"].config)
    b, h, w = camera.largest_batch()
    points = b * h * w * renderer.points_per_pixel()
    per_point = field.bytes_per_point()
    params = sum(p.numel() * p.element_size() for p in field.parameters()) * 4
    why = f"{b} views x {h}x{w} px x {renderer.points_per_pixel()} points x {per_point} B + parameters"
    return points * per_point + params, why


def estimate_strategy_bytes(recipe: Recipe) -> tuple[int, str, str]:
    """Bytes of the guidance strategy's own state on the device (PSD's replay pool), how they were counted and the
    key that sizes them, from the configs alone (``GuidanceStrategy.memory_estimate``)."""
    comp = recipe.components
    prior, guidance = comp["prior"], comp["guidance"]
    group = comp["camera"].cls(comp["camera"].config).views_per_group()
    labels = 3 if recipe.schema.prompt.view_dependent else 1
    size = StateSize(prior.cls.sample_shape(prior.config), labels, group)
    return guidance.cls.memory_estimate(guidance.config, size)


def check_step_memory(recipe: Recipe) -> None:
    """Refuse a recipe whose training step, with the strategy's own state, would not fit in the memory the device
    has now."""
    t = recipe.schema.trainer
    if t.memory_check == 0:
        return
    use_gpu = t.accelerator in ("gpu", "cuda") or (t.accelerator == "auto" and torch.cuda.is_available())
    have = available_memory(use_gpu)
    step, why = estimate_step_bytes(recipe)
    state, state_why, state_key = estimate_strategy_bytes(recipe)
    need = step + state
    if have is None or need <= t.memory_check * have:
        return
    if state > step:
        raise RecipeError(
            state_key,
            f"the strategy's state needs about {state / GIB:.1f} GiB ({state_why}) and one training step "
            f"{step / GIB:.1f} GiB, but the {'GPU' if use_gpu else 'machine'} has {have / GIB:.1f} GiB available. "
            f"Lower {state_key} (trainer.memory_check=0 skips this check)",
        )
    raise RecipeError(
        "camera.config",
        f"one training step needs about {need / GIB:.1f} GiB ({why}) but the "
        f"{'GPU' if use_gpu else 'machine'} has {have / GIB:.1f} GiB available. Reduce the camera's "
        "batch_size, height/width (and milestones) or renderer.config.num_samples "
        "(trainer.memory_check=0 skips this check)",
    )
