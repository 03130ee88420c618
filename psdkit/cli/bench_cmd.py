"""``psdkit bench``."""

from __future__ import annotations

import argparse
from pathlib import Path


def bench(args: argparse.Namespace) -> int:
    """Dispatch to the named benchmark."""
    if args.which == "alignment":
        from psdkit.bench.alignment import bench_alignment

        seeds = list(range(args.seeds))
        table = bench_alignment([Path(r) for r in args.recipes], seeds, args.overrides,
                                Path(args.json) if args.json else None, args.jobs,
                                Path(args.plot) if args.plot else None)
        print(table)
        return 0
    raise SystemExit(f"unknown benchmark {args.which}")
