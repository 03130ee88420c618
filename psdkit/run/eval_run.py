"""``psdkit eval``: score a finished run with any rewards, from its checkpoints.

Renders N orbit views of the last checkpoint, scores them with the recipe's rewards (or ``--rewards``),
writes ``eval.json`` and ``contact_sheet.png``. If the run kept an earlier numbered checkpoint, it is
scored too, and the run is flagged for reward hacking when the train reward rose while the mean
held-out reward fell.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import torch

from psdkit.config import yaml_load
from psdkit.config.recipe import Recipe, validate
from psdkit.errors import RunDirError
from psdkit.run.rundir import read_checkpoint


def load_run_recipe(run_dir: Path, rewards: list[str] | None) -> Recipe:
    """The run's resolved recipe (plugin provenance stripped), optionally with other eval rewards."""
    if run_dir.is_file():
        raise RunDirError(f"{run_dir} is a file; psdkit eval takes run directories (the folder with recipe.yaml)")
    path = run_dir / "recipe.yaml"
    if not path.is_file():
        raise RunDirError(f"{run_dir}: not a psdkit run directory (no recipe.yaml)")
    data = yaml_load.load(path.read_text())
    if rewards is not None:
        known = {e["name"]: e for e in data.get("eval_rewards", [])}
        data["eval_rewards"] = [known.get(name, {"name": name}) for name in rewards]
    return validate(data, source=str(path))


def checkpoints(run_dir: Path) -> list[Path]:
    """[earliest numbered checkpoint (if any), last.ckpt]."""
    ckpt_dir = run_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if not last.is_file():
        raise RunDirError(f"{run_dir}: no checkpoints/last.ckpt to evaluate")
    steps = sorted(ckpt_dir.glob("step-*.ckpt"))
    return [steps[0], last] if steps and steps[0] != last else [last]


def score(system: Any, ckpt: Path, views: int, size: int) -> tuple[dict[str, Any], torch.Tensor]:
    """Load ``ckpt`` into ``system`` and evaluate it; returns (scores, renders)."""
    from psdkit.run.evaluate import evaluate

    state = read_checkpoint(ckpt)
    try:
        system.load_state_dict(state["state_dict"])
    except RuntimeError as err:
        raise RunDirError(f"{ckpt} does not fit the run's recipe.yaml ({str(err).splitlines()[0]})") from err
    result = evaluate(system, views, size)
    result["step"] = int(state["global_step"])
    return result, system.render_views(views, size)


def hacking(first: dict[str, Any], last: dict[str, Any]) -> bool | None:
    """True if the train reward rose while the mean held-out reward fell; None without both."""
    if "train_reward" not in first or not first.get("heldout_rewards"):
        return None
    held = statistics.mean
    up = last["train_reward"] > first["train_reward"]
    down = held(last["heldout_rewards"].values()) < held(first["heldout_rewards"].values())
    return bool(up and down)


def eval_run(run_dir: Path, rewards: list[str] | None, views: int | None, size: int | None) -> dict[str, Any]:
    """Evaluate ``run_dir``; writes eval.json and contact_sheet.png there.

    ``views`` and ``size`` default to the run's ``output.eval_views`` and ``output.eval_resolution``, the
    settings its metrics.json was scored with.
    """
    from psdkit.run.build import build_components
    from psdkit.run.callbacks import to_uint8
    from psdkit.system import PSDSystem, grid_image

    recipe = load_run_recipe(run_dir, rewards)
    views = views or recipe.schema.output.eval_views
    size = size or recipe.schema.output.eval_resolution
    system = PSDSystem(build_components(recipe), recipe.schema)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    system.to(device).eval()
    system.move_frozen(device)
    results = [score(system, c, views, size) for c in checkpoints(run_dir)]
    last, images = results[-1]
    out = {"run": str(run_dir), "views": views, "resolution": size, "final": last}
    if len(results) > 1:
        out["first"] = results[0][0]
        out["reward_hacking"] = hacking(results[0][0], last)
    (run_dir / "eval.json").write_text(json.dumps(out, indent=2))
    imageio.imwrite(run_dir / "contact_sheet.png", to_uint8(grid_image(images)))
    return out


def compare_table(results: list[dict[str, Any]]) -> str:
    """One markdown table of several runs' final scores."""
    names = sorted({k for r in results for k in r["final"].get("heldout_rewards", {})})
    head = ["run", "step", "views x px", "train reward", *names, "object", "PSNR dB (to)", "hacking?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        f = r["final"]
        fid = f.get("fidelity", {})
        cells = [
            Path(r["run"]).name,
            str(f["step"]),
            f"{r['views']} x {r['resolution']}",
            f"{f['train_reward']:.4f}" if "train_reward" in f else "n/a",
            *[f"{f['heldout_rewards'][n]:.4f}" if n in f.get("heldout_rewards", {}) else "n/a" for n in names],
            fid.get("object", "n/a"),
            f"{fid['psnr']:.2f} ({fid['target']})" if "psnr" in fid else "n/a",
            {True: "YES", False: "no", None: "n/a"}[r.get("reward_hacking")],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
