"""Benchmarks: ``psdkit bench alignment``, ``speed`` and ``hashgrid`` (docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(report: dict[str, Any], path: Path) -> None:
    """Write a benchmark's ``report`` as indented JSON at ``path`` (creating the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
