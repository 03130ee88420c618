"""Sweeps whose parameters are recipe overrides (dotted keys), validated before anything runs.

A sweep file is W&B's sweep format plus a ``recipe:`` key::

    recipe: recipes/quickstart.yaml
    method: grid                        # grid | random (local and W&B) | bayes (W&B only)
    metric: {name: heldout_rewards/analytic-heldout, goal: maximize}
    parameters:
      guidance.config.guidance_scale: {values: [10.0, 20.0]}
      guidance.config.negative.lr: {min: 0.04, max: 0.4, distribution: log_uniform_values}
      seed: {values: [0, 1, 2]}

``--local grid|random`` expands and runs it here; otherwise the sweep is created on W&B and trials
run with ``psdkit agent SWEEP_ID``. The metric name is a key of metrics.json, nested keys joined by
``/``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import random
import shutil
from pathlib import Path
from typing import Any, Literal

from psdkit.config.recipe import check_run_name, load_recipe, read_yaml
from psdkit.config.schema import build_config, knob
from psdkit.errors import PsdkitError, RecipeError, RunDirError, TrainingInterrupted


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One swept recipe key: a list of values, or a range."""

    values: list[Any] | None = None
    """Values to try."""
    value: Any = None
    """A single fixed value."""
    min: float | None = None
    """Low end of a range."""
    max: float | None = None
    """High end of a range."""
    distribution: Literal["uniform", "int_uniform", "log_uniform_values"] = "uniform"
    """How a range is sampled."""

    def __post_init__(self) -> None:
        given = [self.values is not None, self.value is not None, self.min is not None or self.max is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of: values, value, or min and max")
        if (self.min is None) != (self.max is None):
            raise ValueError("a range needs both min and max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if self.distribution == "log_uniform_values" and self.min is not None and self.min <= 0:
            raise ValueError("log_uniform_values needs min > 0")

    def candidates(self) -> list[Any]:
        """Values that must each validate (a range's two ends)."""
        if self.values is not None:
            return list(self.values)
        if self.value is not None:
            return [self.value]
        return [self.min, self.max]

    def sample(self, rng: random.Random) -> Any:
        """One random draw."""
        if self.values is not None:
            return rng.choice(self.values)
        if self.value is not None:
            return self.value
        lo, hi = self.bounds()
        if self.distribution == "int_uniform":
            return rng.randint(int(lo), int(hi))
        if self.distribution == "log_uniform_values":
            return math.exp(rng.uniform(math.log(lo), math.log(hi)))
        return rng.uniform(lo, hi)

    def bounds(self) -> tuple[float, float]:
        """(min, max) of a range."""
        if self.min is None or self.max is None:
            raise ValueError("not a range")
        return self.min, self.max


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """What a sweep optimizes."""

    name: str
    """A metrics.json key, nested keys joined by '/' (e.g. heldout_rewards/analytic-heldout)."""
    goal: Literal["maximize", "minimize"] = "maximize"
    """Direction."""


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A sweep file."""

    recipe: str
    """Recipe file, relative to the sweep file."""
    parameters: dict[str, ParamSpec]
    """Dotted recipe keys to vary."""
    metric: MetricSpec
    """The metric to report and optimize."""
    method: Literal["grid", "random", "bayes"] = "grid"
    """Search method (bayes: W&B only)."""
    name: str = "sweep"
    """Sweep name; local trials go to <output.root>/<name>/trial-NNN."""
    count: int | None = knob(None, ge=1, le=100_000)
    """Trials for random search."""
    seed: int = 0
    """Seed of the local random search."""
    program: str | None = None
    """Ignored (W&B compatibility)."""


def load_sweep(path: str | Path) -> tuple[SweepSpec, Path]:
    """Read and validate a sweep file; every value is checked against the recipe schema.

    Returns the spec and the recipe's resolved path.
    """
    path = Path(path)
    spec = build_config(SweepSpec, read_yaml(path), "")
    recipe = (path.parent / spec.recipe).resolve()
    load_recipe(recipe)  # the recipe itself must be valid
    for key, param in spec.parameters.items():
        for i, value in enumerate(param.candidates()):
            try:
                load_recipe(recipe, to_overrides({key: value}))
            except RecipeError as err:
                raise RecipeError(f"parameters.{key}[{i}]", f"invalid for recipe {recipe.name}: {err}") from err
    return spec, recipe


def expand(spec: SweepSpec, method: str, count: int | None = None) -> list[dict[str, Any]]:
    """The trials of a local sweep: every combination (grid) or ``count`` distinct random draws.

    Random search draws without replacement: a space of only discrete values yields each combination at
    most once (so ``count`` above its size gives the whole space), and repeated draws of ranges are redrawn.
    """
    keys = sorted(spec.parameters)
    if method == "grid":
        ranged = [k for k in keys if spec.parameters[k].values is None and spec.parameters[k].value is None]
        if ranged:
            raise RecipeError(f"parameters.{ranged[0]}", "a grid needs `values` (ranges only work with random)")
        return _product(spec, keys)
    n = count or spec.count
    if n is None:
        raise RecipeError("count", "a random sweep needs count (in the file or --count)")
    rng = random.Random(spec.seed)
    if all(spec.parameters[k].values is not None or spec.parameters[k].value is not None for k in keys):
        space = _product(spec, keys)
        return [space[i] for i in rng.sample(range(len(space)), min(n, len(space)))]
    trials: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(100 * n):
        trial = {k: spec.parameters[k].sample(rng) for k in keys}
        if json.dumps(trial, sort_keys=True, default=str) not in seen:
            seen.add(json.dumps(trial, sort_keys=True, default=str))
            trials.append(trial)
        if len(trials) == n:
            break
    return trials


def _product(spec: SweepSpec, keys: list[str]) -> list[dict[str, Any]]:
    return [dict(zip(keys, combo)) for combo in itertools.product(*(spec.parameters[k].candidates() for k in keys))]


def to_overrides(params: dict[str, Any]) -> list[str]:
    """``key=value`` overrides; values are JSON, which the override parser reads as YAML flow syntax."""
    return [f"{k}={json.dumps(v)}" for k, v in params.items()]


def metric_value(metrics: dict[str, Any], name: str) -> float | None:
    """Look up ``a/b/c`` in nested metrics (keys may themselves contain '/', e.g. reward names)."""
    node: Any = metrics
    parts = name.split("/")
    while parts:
        for i in range(len(parts), 0, -1):
            key = "/".join(parts[:i])
            if isinstance(node, dict) and key in node:
                node, parts = node[key], parts[i:]
                break
        else:
            return None
    return float(node) if isinstance(node, (int, float)) else None


SWEEP_MARKER = ".psdkit-sweep"
"""File that marks a directory as a local sweep's (``--overwrite`` only removes those)."""


def sweep_dir(spec: SweepSpec, recipe: Path, out_root: Path | None, extra: list[str] | None) -> Path:
    """``<out or the recipe's output.root>/<sweep name>``."""
    check_run_name(spec.name, "name")
    return (out_root or Path(load_recipe(recipe, extra).schema.output.root)) / spec.name


def prepare_sweep_dir(root: Path, trials: list[dict[str, Any]], overwrite: bool, resume: bool) -> dict[int, Any]:
    """Check (and for ``overwrite`` empty) the sweep's directory; returns the finished trials to keep.

    Raises:
        RunDirError: the directory exists without ``overwrite``/``resume``, is not a sweep's, or holds a sweep
            whose trials differ from these (the sweep file changed).
    """
    exists = root.is_dir() and any(root.iterdir())
    if exists and not (root / SWEEP_MARKER).is_file():
        raise RunDirError(f"{root} exists and is not a psdkit sweep directory (no {SWEEP_MARKER}); set another name")
    if not exists or overwrite:
        if exists:
            shutil.rmtree(root)
        root.mkdir(parents=True, exist_ok=True)
        (root / SWEEP_MARKER).write_text("")
        return {}
    if not resume:
        raise RunDirError(
            f"sweep directory {root} already exists; --resume finishes it (skips finished trials), --overwrite "
            f"replaces it, or set another name: in the sweep file or --out"
        )
    done = _finished_trials(root / "sweep.json")
    for entry in done:
        i = entry.get("trial")
        if not isinstance(i, int) or i >= len(trials) or entry.get("params") != json.loads(json.dumps(trials[i])):
            raise RunDirError(
                f"{root}: trial {i} was run with other parameters than the sweep file now gives; "
                "resume with the original sweep file, or --overwrite"
            )
    return {e["trial"]: e for e in done if e.get("metric") is not None}


def _finished_trials(path: Path) -> list[dict[str, Any]]:
    """The trials a sweep.json records (none if there is no file yet)."""
    if not path.is_file():
        return []
    try:
        trials = json.loads(path.read_text()).get("trials", [])
    except (ValueError, AttributeError) as err:
        raise RunDirError(
            f"{path} is not a sweep record ({type(err).__name__}); --overwrite starts the sweep over"
        ) from err
    if not isinstance(trials, list) or not all(isinstance(t, dict) for t in trials):
        raise RunDirError(f"{path}: `trials` is not a list of trials; --overwrite starts the sweep over")
    return trials


def run_local(
    spec: SweepSpec,
    recipe: Path,
    method: str,
    count: int | None,
    out_root: Path | None = None,
    extra: list[str] | None = None,
    overwrite: bool = False,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """Run every trial in this process; writes ``<root>/<name>/sweep.json``. Failed trials are recorded.

    A resumed sweep keeps finished trials, continues an interrupted trial from its checkpoint and runs the rest.
    """
    from psdkit.run.fit import FitOptions, fit
    from psdkit.run.rundir import usable_checkpoint

    trials = expand(spec, method, count)
    root = sweep_dir(spec, recipe, out_root, extra)
    finished = prepare_sweep_dir(root, trials, overwrite, resume)
    results: list[dict[str, Any]] = []
    for i, params in enumerate(trials):
        if i in finished:
            results.append(finished[i])
            continue
        overrides = [*(extra or []), *to_overrides(params), f"name={spec.name}-{i:03d}"]
        entry: dict[str, Any] = {"trial": i, "params": params}
        run_dir = root / f"trial-{i:03d}"
        again = resume and usable_checkpoint(run_dir / "checkpoints") is not None
        opts = FitOptions(run_dir=run_dir, overwrite=True, resume=str(run_dir) if again else None)
        try:
            res = fit(load_recipe(recipe, overrides), opts)
            assert res is not None, "a local sweep runs on one process"
            entry.update(run_dir=str(res.run_dir), metric=metric_value(res.metrics, spec.metric.name))
        except TrainingInterrupted as err:  # Ctrl+C / SIGTERM stops the sweep, not just this trial
            entry.update(error=str(err), metric=None)
            _write(root, spec, [*results, entry])
            raise
        except PsdkitError as err:
            entry.update(error=str(err), metric=None)
        results.append(entry)
        _write(root, spec, results)
    return results


def _write(root: Path, spec: SweepSpec, results: list[dict[str, Any]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"metric": dataclasses.asdict(spec.metric), "trials": results}, indent=2, default=str)
    tmp = root / ".sweep.json.tmp"
    tmp.write_text(text)
    os.replace(tmp, root / "sweep.json")


def wandb_config(spec: SweepSpec, recipe: Path) -> dict[str, Any]:
    """The sweep as W&B expects it: trials run ``psdkit agent`` with the recipe as a fixed parameter."""
    params: dict[str, Any] = {
        k: {
            f: v
            for f, v in dataclasses.asdict(p).items()
            if v is not None and not (f == "distribution" and p.min is None)
        }
        for k, p in spec.parameters.items()
    }
    params["_recipe"] = {"value": str(recipe)}
    return {
        "name": spec.name,
        "method": spec.method,
        "metric": {"name": f"final/{spec.metric.name}", "goal": spec.metric.goal},
        "parameters": params,
    }


def print_table(spec: SweepSpec, results: list[dict[str, Any]]) -> None:
    """Trials sorted by the metric (best first)."""
    ok = [r for r in results if r.get("metric") is not None]
    ok.sort(key=lambda r: r["metric"], reverse=spec.metric.goal == "maximize")
    print(f"{'trial':>5}  {spec.metric.name:>28}  params")
    for r in ok + [r for r in results if r.get("metric") is None]:
        value = f"{r['metric']:.4f}" if r.get("metric") is not None else r.get("error", "n/a")[:40]
        print(f"{r['trial']:>5}  {value:>28}  {r['params']}")
