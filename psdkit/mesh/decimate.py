"""Decimation to a face budget (fast-simplification: quadric edge collapse)."""

from __future__ import annotations

import fast_simplification
import trimesh

from psdkit.mesh.cleanup import clean


def decimate(mesh: trimesh.Trimesh, budget: int | None) -> trimesh.Trimesh:
    """``mesh`` with at most ``budget`` faces (unchanged when already within it or ``budget`` is None)."""
    if budget is None or len(mesh.faces) <= budget:
        return mesh
    target = budget
    for _ in range(8):  # the collapse may stop a little above its target: aim lower until within budget
        verts, faces = fast_simplification.simplify(mesh.vertices, mesh.faces, target_count=target)
        out = clean(verts, faces, keep_components=0)
        if len(out.faces) <= budget:
            return out
        target = max(4, int(target * budget / len(out.faces)) - 1)
    raise RuntimeError(f"decimation could not reach {budget} faces (got {len(out.faces)})")
