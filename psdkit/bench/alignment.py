"""``psdkit bench alignment``: recipes x seeds at an equal step budget, aggregated.

For each run it records the train reward, the held-out rewards, the object the renders show and the
PSNR to the prompt's object (prior fit), and ms per step. Writes a JSON file and prints a markdown table.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

from psdkit.bench import write_json
from psdkit.bench.margins import reward_margin
from psdkit.config.recipe import load_recipe
from psdkit.errors import PsdkitWarning
from psdkit.run.fit import FitOptions, fit
from psdkit.workers import worker_pool

QUIET = ["output.video_views=0", "output.mesh=false", "trainer.progress=false", "logger.name=none"]


@dataclasses.dataclass(frozen=True)
class Case:
    """One cell of the benchmark: a recipe, and optionally another prompt or training reward."""

    recipe: Path
    prompt: str | None = None
    """``prompt.text`` (None: the recipe's)."""
    reward: str | None = None
    """``reward.name`` (None: the recipe's)."""

    def overrides(self) -> list[str]:
        """The overrides that make this case from its recipe."""
        out = [f"prompt.text={json.dumps(self.prompt)}"] if self.prompt is not None else []
        return out + ([f"reward.name={self.reward}"] if self.reward is not None else [])

    def key(self) -> str:
        """Directory-safe name of the case."""
        parts = [self.recipe.stem, (self.prompt or "").replace(" ", "_"), self.reward or ""]
        return "-".join(p for p in parts if p)


def cases(recipes: list[Path], prompts: list[str] | None, rewards: list[str] | None) -> list[Case]:
    """Every recipe x prompt x training reward; a strategy that uses no reward runs once per prompt."""
    out = []
    prompt_axis: list[str | None] = list(prompts) if prompts else [None]
    reward_axis: list[str | None] = list(rewards) if rewards else [None]
    for recipe in recipes:
        uses_reward = load_recipe(recipe).components["guidance"].cls.needs_reward
        for prompt in prompt_axis:
            for reward in reward_axis if uses_reward else [None]:
                out.append(Case(recipe, prompt, reward))
    return out


def run_one(case: Case | Path, seed: int, overrides: list[str], root: Path) -> dict[str, Any]:
    """One fit; returns the row of the table."""
    case = case if isinstance(case, Case) else Case(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PsdkitWarning)  # "reward.name=... drops its config" is intended here
        r = load_recipe(case.recipe, [*QUIET, *overrides, *case.overrides(), f"seed={seed}"])
    res = fit(r, FitOptions(run_dir=root / f"{case.key()}-{seed}", overwrite=True))
    assert res is not None, "a benchmark run is a single process"
    m = res.metrics
    fid = m.get("fidelity", {})
    return {
        "recipe": case.key(),
        "prompt": r.schema.prompt.text,
        "reward": r.components["reward"].info.name if "reward" in r.components else None,
        "guidance": m["guidance"],
        "seed": seed,
        "steps": m["steps"],
        "train_reward": m.get("train_reward"),
        "heldout": m["heldout_rewards"],
        "object": fid.get("object"),
        "matches_prompt": fid.get("matches_prompt"),
        "psnr": fid.get("psnr"),
        "view_consistency": fid.get("view_consistency"),
        "objects_psnr": fid.get("objects_psnr"),
        "ms_per_step": 1000.0 / m["steps_per_s"],
    }


def summarize(rows: list[dict[str, Any]], margins: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per case: means and standard deviations over seeds, how often each object came out, and (with the
    reward ``margins`` of each (prompt, reward) pair) how often the reward's preferred answer did."""
    out = []
    for name in dict.fromkeys(r["recipe"] for r in rows):
        rs = [r for r in rows if r["recipe"] == name]
        margin = (margins or {}).get(f"{rs[0]['prompt']}|{rs[0]['reward']}")

        def mean_std(values: list[float]) -> tuple[float, float]:
            return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

        objects: dict[str, int] = {}
        for r in rs:
            objects[r["object"]] = objects.get(r["object"], 0) + 1
        heldout_names = list(rs[0]["heldout"])
        out.append(
            {
                "recipe": name,
                "guidance": rs[0]["guidance"],
                "seeds": len(rs),
                "train_reward": mean_std([r["train_reward"] for r in rs])
                if rs[0]["train_reward"] is not None
                else None,
                "heldout": {h: mean_std([r["heldout"][h] for r in rs]) for h in heldout_names},
                "psnr": mean_std([r["psnr"] for r in rs]) if rs[0]["psnr"] is not None else None,
                "objects": objects,
                "matches_prompt": sum(bool(r["matches_prompt"]) for r in rs),
                "consistent": sum(r.get("view_consistency") == 1 for r in rs),
                "ms_per_step": statistics.median(r["ms_per_step"] for r in rs),
                "prompt": rs[0]["prompt"],
                "reward": rs[0]["reward"],
                "margin": margin,
                "preferred": None if margin is None else sum(r["object"] == margin["preferred"] for r in rs),
            }
        )
    return out


def markdown(summary: list[dict[str, Any]]) -> str:
    """The summary as a markdown table (with prompt, reward, margin and preferred-answer rate when measured)."""
    held = list(summary[0]["heldout"]) if summary else []
    margins = any(s.get("margin") for s in summary)
    head = [
        "recipe",
        "guidance",
        *(["prompt", "training reward", "margin (relative)", "preferred answer"] if margins else []),
        "seeds",
        "train reward",
        *[f"held-out {h}" for h in held],
        "PSNR to prompt object (dB)",
        "follows prompt",
        "views agree",
        "objects produced",
        "ms/step",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(ms: tuple[float, float] | None, digits: int = 3) -> str:
        return "n/a" if ms is None else f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"

    for s in summary:
        objs = ", ".join(f"{k} {v}/{s['seeds']}" for k, v in sorted(s["objects"].items()))
        m = s.get("margin")
        extra = []
        if margins:
            extra = [
                s["prompt"],
                s["reward"] or "-",
                f"{m['margin']:.4f} ({m['relative_margin']:.2f})" if m else "-",
                f"{m['preferred']} {s['preferred']}/{s['seeds']}" if m else "-",
            ]
        cells = [
            s["recipe"],
            s["guidance"],
            *extra,
            str(s["seeds"]),
            fmt(s["train_reward"]),
            *[fmt(s["heldout"][h]) for h in held],
            fmt(s["psnr"], 2),
            f"{s['matches_prompt']}/{s['seeds']}",
            f"{s['consistent']}/{s['seeds']}",
            objs,
            f"{s['ms_per_step']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def git_commit() -> str:
    """The commit of the psdkit source tree that runs (not of the working directory), with ``+dirty`` when tracked
    files differ from it; 'unknown' outside a git checkout (an installed wheel)."""
    src = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True, check=True).stdout

    try:
        head = git("rev-parse", "--short", "HEAD").strip()
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", str(src.parents[1])).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}+dirty" if dirty else head


def rate(s: dict[str, Any]) -> float:
    """Fraction of seeds that produced the reward's preferred answer."""
    return s["preferred"] / s["seeds"]


def reward_margins(all_cases: list[Case], overrides: list[str], rewards: list[str] | None) -> dict[str, Any]:
    """``"prompt|reward"`` -> :func:`~psdkit.bench.margins.reward_margin` for each prompt x training reward."""
    out: dict[str, Any] = {}
    for case in all_cases:
        for reward in list(rewards) if rewards else [case.reward]:
            c = Case(case.recipe, case.prompt, reward)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PsdkitWarning)
                r = load_recipe(c.recipe, [*QUIET, *overrides, *c.overrides()])
            if "reward" not in r.components:
                continue
            key = f"{r.schema.prompt.text}|{r.components['reward'].info.name}"
            if key not in out:
                out[key] = reward_margin(r)
    return {k: v for k, v in out.items() if v is not None}


def bench_alignment(
    recipes: list[Path],
    seeds: list[int],
    overrides: list[str],
    out: Path | None,
    jobs: int = 1,
    plot: Path | None = None,
    prompts: list[str] | None = None,
    rewards: list[str] | None = None,
) -> str:
    """Run the benchmark (``jobs`` worker processes); write JSON to ``out`` and a plot; return the table."""
    all_cases = cases(recipes, prompts, rewards)
    tasks = [(case, seed) for case in all_cases for seed in seeds]
    margins = reward_margins(all_cases, overrides, rewards)
    with tempfile.TemporaryDirectory() as tmp:
        if jobs <= 1:
            rows = [run_one(r, s, overrides, Path(tmp)) for r, s in tasks]
        else:
            with worker_pool(jobs) as pool:  # SIGTERM or Ctrl+C takes the workers down too
                futures = [pool.submit(run_one, c, s, overrides, Path(tmp)) for c, s in tasks]
                rows = [f.result() for f in futures]
    summary = summarize(rows, margins)
    if out is not None:
        record = {"commit": git_commit(), "overrides": overrides, "margins": margins, "summary": summary, "runs": rows}
        write_json(record, out)
    if plot is not None and margins:
        from psdkit.bench.plot import scatter

        strategies = list(dict.fromkeys(s["guidance"] for s in summary))
        points = [  # each strategy's points shifted a little sideways, so equal results stay visible
            {
                "recipe": s["guidance"],
                "relative margin": s["margin"]["relative_margin"] + 0.01 * strategies.index(s["guidance"]),
                "preferred rate": rate(s),
            }
            for s in summary
            if s["margin"] is not None
        ]
        scatter(points, "relative margin", "preferred rate", plot, "preferred-object rate vs reward margin")
    elif plot is not None:
        from psdkit.bench.plot import scatter

        points = [
            {**r, "heldout_reward": sum(r["heldout"].values()) / len(r["heldout"])}
            for r in rows
            if r["psnr"] is not None and r["heldout"]
        ]
        scatter(points, "psnr", "heldout_reward", plot, "held-out reward vs prior fit (PSNR to prompt object)")
    return markdown(summary)
