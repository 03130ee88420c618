"""``psdkit bench``."""

from __future__ import annotations

import argparse
from pathlib import Path


def bench(args: argparse.Namespace) -> int:
    """Dispatch to the named benchmark."""
    if args.which == "alignment":
        from psdkit.bench.alignment import bench_alignment

        seeds = list(range(args.seeds))
        table = bench_alignment(
            [Path(r) for r in args.recipes],
            seeds,
            args.overrides,
            Path(args.json) if args.json else None,
            args.jobs,
            Path(args.plot) if args.plot else None,
            args.prompts,
            args.rewards,
        )
        print(table)
        return 0
    if args.which == "hashgrid":
        return hashgrid(args)
    return speed(args)


def hashgrid(args: argparse.Namespace) -> int:
    """``psdkit bench hashgrid``."""
    from psdkit.bench import write_json
    from psdkit.bench.hashgrid import bench_hashgrid, format_hashgrid

    r = bench_hashgrid(args.points, args.levels, args.log2_table, args.features, args.repeats, args.device, args.only)
    r["command"] = " ".join(["psdkit", *args.argv])
    print(format_hashgrid(r))
    if args.json:
        write_json(r, Path(args.json))
    return 0


def speed(args: argparse.Namespace) -> int:
    """``psdkit bench speed RECIPE``: validate, optionally build random weights, time, report."""
    from psdkit.bench import write_json
    from psdkit.bench.random_weights import random_weight_overrides
    from psdkit.bench.speed import bench_speed, format_report
    from psdkit.config.recipe import load_recipe
    from psdkit.hub import preflight

    overrides = list(args.overrides)
    recipe = load_recipe(args.recipe, overrides)
    if args.random_weights:
        overrides += random_weight_overrides(recipe, args.random_weights)
        recipe = load_recipe(args.recipe, overrides)
    preflight([*recipe.components.values(), *recipe.eval_rewards])
    report = bench_speed(recipe, args.steps, args.warmup, args.device)
    report["command"] = " ".join(["psdkit", *args.argv])
    print(format_report(report))
    if args.json:
        write_json(report, Path(args.json))
    return 0
