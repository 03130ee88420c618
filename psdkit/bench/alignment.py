"""``psdkit bench alignment``: recipes x seeds at an equal step budget, aggregated.

For each run it records the train reward, the held-out rewards, the object the renders show and the
PSNR to the prompt's object (prior fit), and ms per step. Writes a JSON file and prints a markdown table.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from psdkit.bench import write_json
from psdkit.config.recipe import load_recipe
from psdkit.run.fit import FitOptions, fit
from psdkit.workers import worker_pool

QUIET = ["output.video_views=0", "output.mesh=false", "trainer.progress=false", "logger.name=none"]


def run_one(recipe: Path, seed: int, overrides: list[str], root: Path) -> dict[str, Any]:
    """One fit; returns the row of the table."""
    r = load_recipe(recipe, [*QUIET, *overrides, f"seed={seed}"])
    res = fit(r, FitOptions(run_dir=root / f"{recipe.stem}-{seed}", overwrite=True))
    assert res is not None, "a benchmark run is a single process"
    m = res.metrics
    fid = m.get("fidelity", {})
    return {
        "recipe": recipe.stem,
        "guidance": m["guidance"],
        "seed": seed,
        "steps": m["steps"],
        "train_reward": m.get("train_reward"),
        "heldout": m["heldout_rewards"],
        "object": fid.get("object"),
        "matches_prompt": fid.get("matches_prompt"),
        "psnr": fid.get("psnr"),
        "objects_psnr": fid.get("objects_psnr"),
        "ms_per_step": 1000.0 / m["steps_per_s"],
    }


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per recipe: means and standard deviations over seeds, and how often each object came out."""
    out = []
    for name in dict.fromkeys(r["recipe"] for r in rows):
        rs = [r for r in rows if r["recipe"] == name]

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
                "ms_per_step": statistics.median(r["ms_per_step"] for r in rs),
            }
        )
    return out


def markdown(summary: list[dict[str, Any]]) -> str:
    """The summary as a markdown table."""
    held = list(summary[0]["heldout"]) if summary else []
    head = [
        "recipe",
        "guidance",
        "seeds",
        "train reward",
        *[f"held-out {h}" for h in held],
        "PSNR to prompt object (dB)",
        "objects produced",
        "ms/step",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(ms: tuple[float, float] | None, digits: int = 3) -> str:
        return "n/a" if ms is None else f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"

    for s in summary:
        objs = ", ".join(f"{k} {v}/{s['seeds']}" for k, v in sorted(s["objects"].items()))
        cells = [
            s["recipe"],
            s["guidance"],
            str(s["seeds"]),
            fmt(s["train_reward"]),
            *[fmt(s["heldout"][h]) for h in held],
            fmt(s["psnr"], 2),
            objs,
            f"{s['ms_per_step']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def git_commit() -> str:
    """The current commit, or 'unknown'."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def bench_alignment(
    recipes: list[Path],
    seeds: list[int],
    overrides: list[str],
    out: Path | None,
    jobs: int = 1,
    plot: Path | None = None,
) -> str:
    """Run the benchmark (``jobs`` worker processes); write JSON to ``out`` and a plot; return the table."""
    tasks = [(recipe, seed) for recipe in recipes for seed in seeds]
    with tempfile.TemporaryDirectory() as tmp:
        if jobs <= 1:
            rows = [run_one(r, s, overrides, Path(tmp)) for r, s in tasks]
        else:
            with worker_pool(jobs) as pool:  # SIGTERM or Ctrl+C takes the workers down too
                futures = [pool.submit(run_one, r, s, overrides, Path(tmp)) for r, s in tasks]
                rows = [f.result() for f in futures]
    summary = summarize(rows)
    if out is not None:
        write_json({"commit": git_commit(), "overrides": overrides, "summary": summary, "runs": rows}, out)
    if plot is not None:
        from psdkit.bench.plot import scatter

        points = [
            {**r, "heldout_reward": sum(r["heldout"].values()) / len(r["heldout"])}
            for r in rows
            if r["psnr"] is not None and r["heldout"]
        ]
        scatter(points, "psnr", "heldout_reward", plot, "held-out reward vs prior fit (PSNR to prompt object)")
    return markdown(summary)
