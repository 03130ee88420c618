"""``psdkit sweep`` and ``psdkit agent``."""

from __future__ import annotations

import argparse
from pathlib import Path

from psdkit.errors import RecipeError


def sweep(args: argparse.Namespace) -> int:
    """Validate a sweep file, then run it locally or create it on W&B."""
    from psdkit import sweep as sw

    spec, recipe = sw.load_sweep(args.sweep)
    if args.local:
        if spec.method == "bayes" and args.local == spec.method:
            raise RecipeError(
                "method", "bayes search needs the W&B server; run it with --local grid or --local random"
            )
        trials = sw.expand(spec, args.local, args.count)
        wanted = args.count or spec.count
        short = (
            f" (the space has only {len(trials)} distinct trials)"
            if args.local == "random" and wanted and wanted > len(trials)
            else ""
        )
        print(f"{len(trials)} trial(s) of {recipe.name}, all parameter values valid{short}")
        if args.dry_run:
            for i, t in enumerate(trials):
                print(f"  {i:03d} {' '.join(sw.to_overrides(t))}")
            return 0
        out = Path(args.out) if args.out else None
        results = sw.run_local(spec, recipe, args.local, args.count, out, args.overrides, args.overwrite, args.resume)
        sw.print_table(spec, results)
        return 0 if all(r.get("metric") is not None for r in results) else 1
    import wandb

    cfg = sw.wandb_config(spec, recipe)
    if args.dry_run:
        print(cfg)
        return 0
    sweep_id = wandb.sweep(cfg, project=args.project, entity=args.entity)
    print(f"created sweep {sweep_id}; run trials with: psdkit agent {sweep_id}")
    return 0


def agent(args: argparse.Namespace) -> int:
    """Run W&B sweep trials: each is ``psdkit fit`` with the trial's overrides."""
    import wandb

    from psdkit.config.recipe import load_recipe
    from psdkit.run.fit import FitOptions, fit
    from psdkit.sweep import to_overrides

    def trial() -> None:
        run = wandb.init()
        params = dict(run.config)
        recipe = params.pop("_recipe")
        overrides = [*to_overrides(params), f"name=sweep-{run.id}", "logger.name=wandb"]
        fit(load_recipe(recipe, overrides), FitOptions())

    wandb.agent(args.sweep_id, function=trial, count=args.count, project=args.project, entity=args.entity)
    return 0
