"""Run tests/fit_script.py in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("fit_script.py")


def run_fit_script(out: Path, devices: int, batch: int, *args: str, expect_rc: int = 0) -> subprocess.CompletedProcess:
    """Run the script; assert its exit code (SIGKILL shows as -9)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for var in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), str(devices), str(batch), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == expect_rc, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc
