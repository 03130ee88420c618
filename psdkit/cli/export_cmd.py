"""``psdkit export``."""

from __future__ import annotations

import argparse
from pathlib import Path


def export(args: argparse.Namespace) -> int:
    """Export a run's mesh; print the files, face count, timings and the check's PSNR."""
    from psdkit.run.export_run import export_run

    changes = {
        "formats": tuple(args.formats) if args.formats else None,
        "resolution": args.resolution,
        "faces": args.faces,
        "texture_size": args.texture_size,
        "level": args.level,
        "texture": args.texture,
        "up_axis": args.up_axis,
    }
    r = export_run(Path(args.run), changes, Path(args.out) if args.out else None)
    out = Path(r["out"])
    print(f"wrote {', '.join(str(out / f) for f in r['files'])} and {out / 'export.json'}")
    size = f", texture {r['texture_size']} px" if "texture_size" in r else ""
    print(f"{r['faces']} faces, {r['vertices']} vertices{size}, level {r['level']:.4g}, {r['seconds']:.1f} s")
    if "check" in r:
        c = r["check"]
        print(f"mesh renders vs the field's: {c['psnr']:.2f} dB PSNR ({c['views']} views x {c['resolution']} px)")
        for name, pair in c.get("rewards", {}).items():
            print(f"  {name}: field {pair['field']:.4f}, mesh {pair['mesh']:.4f}")
    print(f"frame: {r['frame']['up']} up, {r['frame']['units']}")
    return 0
