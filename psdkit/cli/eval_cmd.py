"""``psdkit eval``."""

from __future__ import annotations

import argparse
from pathlib import Path


def evaluate_runs(args: argparse.Namespace) -> int:
    """Evaluate each run; print a summary line each, or one table with --compare."""
    from psdkit.run.eval_run import compare_table, eval_run

    results = [eval_run(Path(run), args.rewards, args.views, args.resolution) for run in args.runs]
    if args.compare or len(results) > 1:
        print(compare_table(results))
        return 0
    r = results[0]
    f = r["final"]
    print(
        f"{r['run']}: step {f['step']}, train reward {f.get('train_reward', 'n/a')}, "
        f"held-out {f.get('heldout_rewards', {})}"
    )
    if "reward_hacking" in r:
        verdict = {True: "YES: train reward up, held-out down", False: "no", None: "unknown"}[r["reward_hacking"]]
        print(f"reward hacking since step {r['first']['step']}: {verdict}")
    print(f"wrote {Path(r['run']) / 'eval.json'} and {Path(r['run']) / 'contact_sheet.png'}")
    return 0
