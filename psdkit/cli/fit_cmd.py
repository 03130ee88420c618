"""``psdkit fit``."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import yaml

from psdkit.config.recipe import load_recipe


def run_fit(args: argparse.Namespace) -> int:
    """Validate, train, and print a summary naming the files."""
    recipe = load_recipe(args.recipe, args.overrides)
    from psdkit.hub import preflight

    preflight([*recipe.components.values(), *recipe.eval_rewards])
    if args.validate_only:
        from psdkit.run.resources import check_step_memory

        check_step_memory(recipe)
        print(yaml.safe_dump(recipe.to_dict(), sort_keys=False), end="")
        print(f"# {args.recipe}: ok ({', '.join(f'{k}={c.info.name}' for k, c in recipe.components.items())})")
        return 0
    from psdkit.run.fit import FitOptions, fit

    opts = FitOptions(
        overwrite=args.overwrite,
        resume=args.resume,
        run_dir=Path(args.run_dir) if args.run_dir else None,
        command=shlex.join(["psdkit", *args.argv]),
    )
    result = fit(recipe, opts)
    if result is not None:
        print_summary(result)
    return 0


def print_summary(result) -> None:
    """One summary of what was measured and written."""
    m = result.metrics
    lines = [
        f"run: {result.run_dir}",
        f"steps: {m['steps']} in {m['wall_time_s']} s ({m['steps_per_s']} steps/s), "
        f"peak memory {m['peak_memory_mb']} MiB",
    ]
    if "train_reward" in m:
        lines.append(f"train reward: {m['train_reward']:.4f}")
    for name, v in m.get("heldout_rewards", {}).items():
        lines.append(f"held-out {name}: {v:.4f}")
    if "fidelity" in m:
        f = m["fidelity"]
        lines.append(
            f"shows: {f['object']} ({'matches' if f['matches_prompt'] else 'does NOT match'} the prompt), "
            f"PSNR to {f['target']}: {f['psnr']:.2f} dB"
        )
    for kind, path in result.files.items():
        lines.append(f"{kind}: {path}")
    lines.append(f"metrics: {result.run_dir / 'metrics.json'}")
    print("\n".join(lines))
