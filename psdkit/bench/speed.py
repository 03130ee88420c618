"""``psdkit bench speed``: time the real training step of a recipe, split by component.

Runs the recipe's own components in a Lightning Trainer (the code ``psdkit fit`` runs, without checkpoints,
logs or exports) in four phases: warm-up steps (compilation happens here), plain steps (the headline
ms/step), instrumented steps (per-component forward and backward times, with device synchronisation), and,
for strategies with a learnable negative embedding, plain steps that alternate with and without its update
(the update's cost is the median difference between neighbouring steps with and without it; alternating
keeps both at the same stage of training, whose render cost changes as the occupancy grid fills in).
``--random-weights`` first builds the recipe's real architectures with random weights
(psdkit.bench.random_weights), so nothing is downloaded.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from psdkit.bench.instrument import ComponentTimer, synchronize
from psdkit.config.recipe import Recipe
from psdkit.contracts import GuidanceStrategy
from psdkit.errors import RecipeError
from psdkit.run.build import build_components
from psdkit.run.callbacks import ValidationGrid
from psdkit.run.fit import peak_memory_mb
from psdkit.run.resources import threads_per_process
from psdkit.system import PSDSystem


class _Phases(L.Callback):
    """Times each step and switches instrumentation and the negative-embedding update per phase."""

    def __init__(self, timer: ComponentTimer, warmup: int, steps: int) -> None:
        self.timer, self.warmup, self.steps = timer, warmup, steps
        self.step_ms: dict[str, list[float]] = {
            "warmup": [],
            "plain": [],
            "instrumented": [],
            "update_on": [],
            "update_off": [],
        }
        self._t0 = self._t_opt = 0.0

    def phase(self, step: int) -> str:
        """The phase of global step ``step``."""
        if step < self.warmup:
            return "warmup"
        k = (step - self.warmup) // self.steps
        if k < 2:
            return ("plain", "instrumented")[k]
        return "update_off" if step % 2 else "update_on"

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        phase = self.phase(trainer.global_step)
        self.timer.active = phase == "instrumented"
        pl_module.guidance.__dict__.pop("updating", None)  # the strategy's own schedule
        if phase == "update_off":
            pl_module.guidance.updating = lambda step, max_steps: False
        self._t0 = self.timer.now()

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.timer.add("forward (total)", (self.timer.now() - self._t0) * 1000)
        self.timer.begin_backward()

    def on_after_backward(self, trainer, pl_module) -> None:
        self.timer.end_backward()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._t_opt = self.timer.now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = self.timer.now()
        self.timer.add("optimizer step", (now - self._t_opt) * 1000)
        self.step_ms[self.phase(trainer.global_step - 1)].append((now - self._t0) * 1000)


def _instrument(timer: ComponentTimer, system: PSDSystem) -> None:
    comp = system.components
    timer.wrap(system.renderer, "forward", "render")
    timer.wrap(system.renderer, "refresh", "occupancy grid refresh")
    timer.wrap(comp.prior, "encode_images", "encode")
    timer.wrap(
        comp.prior, "predict_noise", lambda: "prior, with grad (e_n update)" if torch.is_grad_enabled() else "prior"
    )
    timer.wrap(comp.prior, "decode", "decode")
    if comp.reward is not None:
        timer.wrap(comp.reward, "forward", "reward")


def bench_speed(recipe: Recipe, steps: int, warmup: int, device: str | None = None) -> dict[str, Any]:
    """Time ``steps`` training steps of ``recipe`` per phase; returns the report (see module docstring)."""
    t = recipe.schema.trainer
    torch.set_num_threads(t.threads or threads_per_process(1, t.accelerator))
    L.seed_everything(recipe.schema.seed, workers=False, verbose=False)
    has_update = recipe.components["guidance"].cls.updating is not GuidanceStrategy.updating
    n_phases = 4 if has_update else 2
    total = warmup + steps * n_phases
    if total > t.max_steps:
        why = f"the bench runs {total} steps (--warmup + {n_phases} x --steps); lower --steps or raise it"
        raise RecipeError("trainer.max_steps", why, t.max_steps)
    t_build = time.perf_counter()
    system = PSDSystem(build_components(recipe), recipe.schema)
    build_s = time.perf_counter() - t_build
    accelerator = device or t.accelerator
    trainer = L.Trainer(
        max_steps=total,
        max_epochs=-1,
        accelerator=accelerator,
        devices=1,
        precision=t.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    dev = trainer.strategy.root_device
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    timer = ComponentTimer(dev)
    _instrument(timer, system)
    prepare_s = _time_prepare(system, dev)
    phases = _Phases(timer, warmup, steps)
    trainer.callbacks.append(phases)  # type: ignore[attr-defined]  # Trainer.callbacks: a list property
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(system)
    synchronize(dev)
    timer.unwrap()
    cams = system.components.camera.sample(0, torch.Generator().manual_seed(0), 1)  # the views of one step
    report = _report(recipe, phases, timer, steps, build_s, dev) | {"views": len(cams), "render_size": cams.height}
    report["prepare_s"] = prepare_s[0]
    return report | _projection(recipe, trainer, system, report["ms_per_step"], prepare_s[0])


def _time_prepare(system: PSDSystem, dev: torch.device) -> list[float]:
    """Wrap the strategy's one-time work before step 0 (PSD's replay pool); its seconds land in the list."""
    seconds = [0.0]
    real = system.guidance.prepare

    def timed(progress: bool = False) -> None:
        start = time.perf_counter()
        real(progress)
        synchronize(dev)
        seconds[0] += time.perf_counter() - start

    system.guidance.prepare = timed  # type: ignore[method-assign]
    return seconds


def _projection(
    recipe: Recipe, trainer: L.Trainer, system: PSDSystem, ms_per_step: float, prepare_s: float
) -> dict[str, Any]:
    """The run's projected training time: the strategy's one-time work, plain steps, and the periodic checkpoint
    and validation grid of ``psdkit fit`` (each timed once here), every ``trainer.val_every`` steps."""
    t, out = recipe.schema.trainer, recipe.schema.output
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        trainer.save_checkpoint(Path(tmp) / "last.ckpt", weights_only=False)
        ckpt_s = time.perf_counter() - start
        ckpt_bytes = (Path(tmp) / "last.ckpt").stat().st_size
        start = time.perf_counter()
        ValidationGrid(Path(tmp), 1, t.val_views, out.eval_resolution).save(system, trainer.global_step)
        grid_s = time.perf_counter() - start
    periodic = t.max_steps // min(t.val_every, t.max_steps)
    seconds = prepare_s + ms_per_step * t.max_steps / 1000 + periodic * (ckpt_s + grid_s)
    return {
        "checkpoint_s": ckpt_s,
        "checkpoint_bytes": ckpt_bytes,
        "strategy_state_bytes": sum(v.numel() * v.element_size() for v in system.guidance.state_dict().values()),
        "validation_grid_s": grid_s,
        "projected_s": seconds,
        "projected_minutes": seconds / 60,
    }


def _report(
    recipe: Recipe, phases: _Phases, timer: ComponentTimer, steps: int, build_s: float, dev: torch.device
) -> dict[str, Any]:
    ms = phases.step_ms
    plain = statistics.median(ms["plain"])
    inst_total = sum(ms["instrumented"]) / steps
    parts = {k: v / steps for k, v in sorted(timer.ms.items(), key=lambda kv: -kv[1]) if k != "forward (total)"}
    fwd_total = timer.ms.get("forward (total)", 0.0) / steps
    named_fwd = sum(v for k, v in parts.items() if k.endswith("(forward)"))
    parts["other forward (strategy arithmetic, cameras, logging)"] = max(fwd_total - named_fwd, 0.0)
    parts["other (Lightning loop, hooks)"] = max(inst_total - sum(parts.values()), 0.0)
    s = recipe.schema
    report: dict[str, Any] = {
        "recipe": s.name,
        "device": _device_name(dev),
        "torch": torch.__version__,
        "prior": recipe.components["prior"].info.name,
        "reward": recipe.components["reward"].info.name if "reward" in recipe.components else None,
        "guidance": recipe.components["guidance"].info.name,
        "steps": steps,
        "ms_per_step": plain,
        "steps_per_s": 1000.0 / plain,
        "warmup_ms": ms["warmup"],
        "first_step_extra_s": (ms["warmup"][0] - plain) / 1000 if ms["warmup"] else None,
        "build_s": build_s,
        "peak_memory_mb": peak_memory_mb(),
        "max_steps": s.trainer.max_steps,
        "instrumented_ms_per_step": inst_total,
        "breakdown_ms": parts,
    }
    if ms["update_off"]:
        # median of neighbour-pair differences: robust to a jump in render cost (occupancy grid) mid-phase
        pairs = [a - b for a, b in zip(ms["update_on"], ms["update_off"])]
        report.update(
            ms_per_step_with_neg_update=statistics.median(ms["update_on"]),
            ms_per_step_without_neg_update=statistics.median(ms["update_off"]),
            neg_update_ms=statistics.median(pairs),
        )
    return report


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU ({torch.get_num_threads()} threads)"


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.1f}{unit}"


def _duration(seconds: float) -> str:
    """``12.3 s``, ``4.5 min`` or ``2.1 h``."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def format_report(r: dict[str, Any]) -> str:
    """Markdown: the headline figures, then the per-component table."""
    lines = [
        f"recipe {r['recipe']} ({r['guidance']}, prior {r['prior']}, reward {r['reward']}) on {r['device']}, "
        f"torch {r['torch']}",
        "",
        "| figure | value |",
        "|---|---|",
        f"| time per step (median of {r['steps']} uninstrumented steps) | {r['ms_per_step']:.1f} ms |",
        f"| steps per second | {r['steps_per_s']:.2f} steps/s |",
        f"| one checkpoint, one validation grid (every trainer.val_every steps) | {r['checkpoint_s']:.2f} s, "
        f"{r['validation_grid_s']:.2f} s |",
        f"| one checkpoint's size (of it the strategy's state: PSD's e_n and replay pool) | "
        f"{r['checkpoint_bytes'] / 2**20:.1f} MiB ({r['strategy_state_bytes'] / 2**20:.1f} MiB) |",
        f"| the strategy's one-time work before step 0 (PSD's replay pool) | {_duration(r['prepare_s'])} |",
        f"| projected training time for {r['max_steps']} steps (one-time work + uninstrumented steps + checkpoints"
        f" + grids) | {_duration(r['projected_s'])} |",
        f"| first step's extra time (compilation, allocation) | {_fmt(r['first_step_extra_s'], ' s')} |",
        f"| build (weights load) | {r['build_s']:.1f} s |",
        f"| peak memory | {r['peak_memory_mb']:.0f} MiB |",
    ]
    if "neg_update_ms" in r:
        lines.append(
            f"| negative-embedding update (alternate steps with and without it) | {r['neg_update_ms']:.1f} ms/step |"
        )
    lines += [
        "",
        f"Instrumented steps (device synchronised around each part): {r['instrumented_ms_per_step']:.1f} ms/step",
        "",
        "| part | time (ms/step) |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.2f} |" for k, v in r["breakdown_ms"].items()]
    return "\n".join(lines)
