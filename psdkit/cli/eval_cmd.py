"""``psdkit eval``."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def evaluate_runs(args: argparse.Namespace) -> int:
    """Evaluate each run; print a summary line each, or one table with --compare."""
    from psdkit.run.eval_run import HackingRule, compare_table, eval_run, verdict

    rule = HackingRule(args.psnr_floor, args.psnr_drop)
    results = [eval_run(Path(run), args.rewards, args.views, args.resolution, rule, args.mesh) for run in args.runs]
    if args.compare or len(results) > 1:
        print(compare_table(results))
        return 0
    r = results[0]
    f = r["final"]
    print(
        f"{r['run']}: step {f['step']}, train reward {f.get('train_reward', 'n/a')}, "
        f"held-out {f.get('heldout_rewards', {})}"
    )
    if "fidelity" in f:
        fid = f["fidelity"]
        match = "matches" if fid["matches_prompt"] else "does NOT match"
        print(f"shows: {fid['object']} ({match} the prompt), PSNR to {fid['target']}: {fid['psnr']:.2f} dB")
        if "view_consistency" in fid:
            counts = Counter(fid["view_objects"]).most_common()
            each = ", ".join(f"{n} x {name}" for name, n in counts)
            print(f"views agree: {fid['view_consistency']:.2f} ({each}), PSNR spread {fid['psnr_spread']:.2f} dB")
    h = r["hacking"]
    since = f" (since step {r['first']['step']})" if "first" in r else ""
    unchecked = f"; not checked: {', '.join(h['unavailable'])}" if h["unavailable"] else ""
    print(f"reward hacking{since}: {verdict(h)}{unchecked} ({r['views']} views x {r['resolution']} px)")
    if "mesh" in r:
        m = r["mesh"]
        shows = f", shows {m['fidelity']['object']}" if "fidelity" in m else ""
        print(f"exported {m['file']}: {m['psnr_to_field']:.2f} dB PSNR to the field's renders{shows}")
        for name, pair in m["rewards"].items():
            print(f"  {name}: field {pair['field']:.4f}, mesh {pair['mesh']:.4f}")
    print(f"wrote {Path(r['run']) / 'eval.json'} and {Path(r['run']) / 'contact_sheet.png'}")
    return 0
