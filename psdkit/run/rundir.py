"""Run directories: where a run goes, what may be replaced, and what a resume may change.

Every check here runs before any weight loads and before anything is written. A run directory holds
a marker file (:data:`MARKER`); ``--overwrite`` only ever removes a directory that has it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from psdkit.config import yaml_load
from psdkit.config.recipe import Recipe, strip_provenance
from psdkit.errors import PsdkitWarning, RunDirError

MARKER = ".psdkit-run"
"""File that marks a directory as a psdkit run directory (JSON: psdkit version, creation time)."""

RESUMABLE = (
    "name",
    "trainer.max_steps",
    "trainer.val_every",
    "trainer.val_views",
    "trainer.log_every",
    "trainer.ckpt_every",
    "trainer.keep_checkpoints",
    "trainer.threads",
    "trainer.progress",
    "output.",
    "logger.",
    "eval_rewards",
)
"""Recipe keys (dotted prefixes) that may differ when a run is resumed; everything else must match."""


def is_run_dir(path: Path) -> bool:
    """True if ``path`` holds the psdkit run marker."""
    return (path / MARKER).is_file()


def mark_run_dir(run_dir: Path) -> None:
    """Create ``run_dir`` (if needed) and its marker."""
    import psdkit

    run_dir.mkdir(parents=True, exist_ok=True)
    if not is_run_dir(run_dir):
        info = {"psdkit": psdkit.__version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (run_dir / MARKER).write_text(json.dumps(info) + "\n")


def check_replaceable(run_dir: Path) -> None:
    """Refuse ``--overwrite`` of a non-empty directory that is not a psdkit run directory."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is a file, not a run directory; choose another name or --run-dir")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not is_run_dir(run_dir):
        raise RunDirError(
            f"{run_dir} is not a psdkit run directory (it has no {MARKER}); --overwrite only replaces run "
            f"directories. Move it away yourself, or write elsewhere with name=<other> or --run-dir"
        )


def remove_run_dir(run_dir: Path) -> None:
    """Delete a psdkit run directory (checked again right before deleting)."""
    check_replaceable(run_dir)
    if run_dir.is_dir():
        shutil.rmtree(run_dir)


def check_output_root(root: Path, path: str = "output.root") -> None:
    """Create ``root`` if needed and prove a file can be written there; the error names ``path``."""
    if root.exists() and not root.is_dir():
        raise RunDirError(f"{path}: {root} is a file, not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".psdkit-probe-"):
            pass
    except OSError as err:
        raise RunDirError(
            f"{path}: cannot write run directories under {root} ({err.strerror or err}); "
            f"choose a writable folder with {path}=<folder>"
        ) from err


def checkpoint_files(ckpt_dir: Path) -> list[Path]:
    """``last.ckpt`` then step-numbered checkpoints, newest first (those that exist)."""
    return [p for p in [ckpt_dir / "last.ckpt", *sorted(ckpt_dir.glob("step-*.ckpt"), reverse=True)] if p.is_file()]


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint's contents; raises ``RunDirError`` naming the file if it is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated, foreign or unpicklable files fail the same way
        why = (str(err).strip().splitlines() or [""])[0][:160]
        if "Weights only load failed" in why:  # torch's advice (weights_only=False) is wrong for a broken file
            why = "truncated, or not a PyTorch checkpoint"
        raise RunDirError(f"{path} is unreadable, not a checkpoint ({type(err).__name__}: {why})") from err
    if not isinstance(state, dict) or "state_dict" not in state or "global_step" not in state:
        raise RunDirError(f"{path} is not a psdkit checkpoint (no state_dict or global_step)")
    return state


def newest_intact(ckpt_dir: Path) -> tuple[Path, int] | None:
    """(path, global step) of the newest checkpoint that loads (``last.ckpt``, then numbered ones); warns about
    broken ones."""
    for path in checkpoint_files(ckpt_dir):
        try:
            state = read_checkpoint(path)
        except RunDirError as err:
            warnings.warn(f"{err}; trying an older one", PsdkitWarning, stacklevel=3)
            continue
        return path, int(state["global_step"])
    return None


def usable_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest checkpoint that loads (see :func:`newest_intact`)."""
    found = newest_intact(ckpt_dir)
    return found[0] if found else None


def plan_run_dir(
    recipe: Recipe, run_dir: Path | None, resume: str | None, overwrite: bool
) -> tuple[Path, tuple[Path, int] | None]:
    """The run directory and the checkpoint to resume from with its step, checked before anything is written.

    Raises:
        RunDirError: the directory exists (without ``overwrite``), is not a run directory, has no intact
            checkpoint to resume, or was trained with a recipe that differs where a resume cannot change.
    """
    root = Path(recipe.schema.output.root)
    run_dir = run_dir or root / recipe.schema.name
    if resume:
        src = run_dir if resume == "auto" else Path(resume)
        ckpt = _resume_checkpoint(src, explicit=resume != "auto")
        if ckpt is not None:
            check_resume_recipe(src, recipe, ckpt[0])
            return src, ckpt
        # auto on a run that died before its first checkpoint (a requeued job): nothing to lose, start over
        overwrite = overwrite or is_run_dir(run_dir)
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        if not overwrite:
            raise RunDirError(f"{run_dir} already exists; {_what_to_do(run_dir)}")
        check_replaceable(run_dir)
    check_output_root(run_dir.parent, "output.root" if run_dir.parent == root else "--run-dir")
    return run_dir, None


def _what_to_do(run_dir: Path) -> str:
    ways = []
    if is_run_dir(run_dir):
        ways.append("pass --overwrite to replace it")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if usable_checkpoint(run_dir / "checkpoints") is not None:
            ways.append(f"--resume {run_dir} to continue it")
    ways.append("name=<other> to write elsewhere")
    return ", ".join(ways[:-1]) + (" or " if len(ways) > 1 else "") + ways[-1]


def _resume_checkpoint(src: Path, explicit: bool) -> tuple[Path, int] | None:
    """The checkpoint to resume ``src`` from; None for ``auto`` on a run that never saved one."""
    if explicit and not src.is_dir():
        raise RunDirError(f"--resume {src}: no such run directory")
    found = checkpoint_files(src / "checkpoints")
    if not found:
        if explicit:
            raise RunDirError(f"{src}: nothing to resume (no checkpoint in {src / 'checkpoints'})")
        return None
    ckpt = newest_intact(src / "checkpoints")
    if ckpt is None:
        names = ", ".join(p.name for p in found)
        raise RunDirError(
            f"{src}: no intact checkpoint to resume ({names} cannot be read); start over with --overwrite "
            f"(replaces {src}) or name=<other>"
        )
    return ckpt


def flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted-path -> leaf value of nested recipe data (lists index as ``key.0``)."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    if isinstance(data, (list, tuple)):
        out = {}
        for i, v in enumerate(data):
            out.update(flat(v, f"{prefix}{i}."))
        return out or {prefix.rstrip("."): []}
    return {prefix.rstrip("."): data}


def recipe_differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted paths whose values differ between two plain recipes: path -> (old, new)."""
    a, b = flat(strip_provenance(old)), flat(strip_provenance(new))
    missing = object()
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)}


def _resumable(path: str) -> bool:
    return any(path == p or path.startswith(p if p.endswith(".") else p + ".") for p in RESUMABLE)


def check_resume_recipe(run_dir: Path, recipe: Recipe, ckpt: Path) -> None:
    """Refuse a resume whose recipe differs from the run's ``recipe.yaml`` where it cannot change safely."""
    path = run_dir / "recipe.yaml"
    if not path.is_file():
        raise RunDirError(f"{run_dir}: not a psdkit run directory (no recipe.yaml), cannot resume it")
    try:
        old = yaml_load.load(path.read_text(encoding="utf-8"))
    except Exception as err:  # noqa: BLE001 - any unreadable recipe.yaml is reported the same way
        raise RunDirError(f"{path} cannot be read ({type(err).__name__}); restore it or start over") from err
    diffs = recipe_differences(old if isinstance(old, dict) else {}, recipe.to_dict())
    refused = {k: v for k, v in diffs.items() if not _resumable(k)}
    steps = diffs.get("trainer.max_steps")
    if steps and isinstance(steps[0], int) and isinstance(steps[1], int) and steps[1] < steps[0]:
        refused["trainer.max_steps"] = steps
    renamed = [k[: -len(".name")] for k in refused if k.endswith(".name") and k.count(".") == 1]
    refused = {k: v for k, v in refused.items() if not any(k.startswith(f"{c}.config") for c in renamed)}
    if refused:
        order = sorted(refused, key=lambda k: (not k.endswith(".name"), k))
        shown = "; ".join(f"{k}: run has {refused[k][0]!r}, given {refused[k][1]!r}" for k in order[:8])
        more = f" (and {len(refused) - 8} more)" if len(refused) > 8 else ""
        raise RunDirError(
            f"cannot resume {run_dir} with a different recipe: {shown}{more}. A resume may only change "
            f"{', '.join(p.rstrip('.') for p in RESUMABLE)} (max_steps only upward). Resume with the run's own "
            f"recipe (psdkit fit {path} --resume {run_dir}) or start a new run with name=<other>"
        )


def append_command(run_dir: Path, command: str) -> None:
    """Add one command line to ``command.txt`` (every segment of a resumed run is kept)."""
    with open(run_dir / "command.txt", "a", encoding="utf-8") as f:
        f.write(command.rstrip("\n") + "\n")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
