"""``psdkit eval``: score a finished run with any rewards, from its checkpoints.

Renders N orbit views of the last checkpoint, scores them with the recipe's rewards (or ``--rewards``),
writes ``eval.json`` and ``contact_sheet.png``. If the run kept an earlier numbered checkpoint, it is
scored too, and the run is flagged for reward hacking when the train reward rose while the mean
held-out reward fell.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import torch

from psdkit.config import yaml_load
from psdkit.config.recipe import Recipe, migrate_mesh_keys, validate
from psdkit.errors import RunDirError
from psdkit.run.rundir import read_checkpoint


def load_run_recipe(run_dir: Path, rewards: list[str] | None) -> Recipe:
    """The run's resolved recipe (plugin provenance stripped), optionally with other eval rewards."""
    if run_dir.is_file():
        raise RunDirError(f"{run_dir} is a file; psdkit eval takes run directories (the folder with recipe.yaml)")
    path = run_dir / "recipe.yaml"
    if not path.is_file():
        raise RunDirError(f"{run_dir}: not a psdkit run directory (no recipe.yaml)")
    data = migrate_mesh_keys(yaml_load.load(path.read_text()))
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


def eval_system(recipe: Recipe) -> Any:
    """The recipe's system in evaluation mode, with its frozen models, on the GPU when there is one (weights
    are loaded from a checkpoint with :func:`load_into`)."""
    from psdkit.run.build import build_components
    from psdkit.system import PSDSystem

    system = PSDSystem(build_components(recipe), recipe.schema)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    system.to(device).eval()
    system.move_frozen(device)
    return system


def load_into(system: Any, ckpt: Path) -> dict[str, Any]:
    """Load ``ckpt``'s weights into ``system``; returns the checkpoint. A checkpoint of another recipe is a
    :class:`RunDirError`."""
    state = read_checkpoint(ckpt)
    try:
        system.load_state_dict(state["state_dict"])
    except RuntimeError as err:
        raise RunDirError(f"{ckpt} does not fit the run's recipe.yaml ({str(err).splitlines()[0]})") from err
    return state


def score(system: Any, ckpt: Path, views: int, size: int) -> tuple[dict[str, Any], torch.Tensor]:
    """Load ``ckpt`` into ``system`` and evaluate it; returns (scores, renders)."""
    from psdkit.run.evaluate import evaluate

    state = load_into(system, ckpt)
    result = evaluate(system, views, size)
    result["step"] = int(state["global_step"])
    return result, system.render_views(views, size)


@dataclasses.dataclass(frozen=True)
class HackingRule:
    """Thresholds of the reward-hacking flag of ``psdkit eval``."""

    psnr_floor: float = 20.0
    """Prior fit has collapsed when the final renders are further than this (PSNR, dB) from every object the
    prompt names."""
    psnr_drop: float = 3.0
    """... or when that PSNR fell by more than this (dB) since the earliest numbered checkpoint."""


SIGNALS = ("wrong object", "held-out down while train up", "prior fit collapsed")
"""What the reward-hacking flag checks, in the order it reports them."""


def hacking(first: dict[str, Any] | None, last: dict[str, Any], rule: HackingRule = HackingRule()) -> dict[str, Any]:
    """Which reward-hacking signals fire for a run's scores (``first``: the earliest checkpoint's, or None).

    Returns ``flagged`` (True if any signal fired, False if none did and at least one could be checked, None
    if none could be), ``fired`` and ``unavailable`` (signals without the data they need: fidelity needs a
    prior that knows its objects, the trend needs an earlier numbered checkpoint).
    """
    fired, unavailable = [], []
    fid = last.get("fidelity")
    if fid is None:
        unavailable += ["wrong object", "prior fit collapsed"]
    elif not fid["matches_prompt"]:
        fired.append("wrong object")
    if first is None or "train_reward" not in first or not first.get("heldout_rewards"):
        unavailable.append("held-out down while train up")
    else:
        up = last["train_reward"] > first["train_reward"]
        down = statistics.mean(last["heldout_rewards"].values()) < statistics.mean(first["heldout_rewards"].values())
        if up and down:
            fired.append("held-out down while train up")
    if fid is not None:
        dropped = (
            first is not None and "fidelity" in first and first["fidelity"]["psnr"] - fid["psnr"] > rule.psnr_drop
        )
        if fid["psnr"] < rule.psnr_floor or dropped:
            fired.append("prior fit collapsed")
    checked = len(SIGNALS) - len(set(unavailable))
    flagged = bool(fired) if checked else None
    return {
        "flagged": flagged,
        "fired": [s for s in SIGNALS if s in fired],
        "unavailable": [s for s in SIGNALS if s in unavailable],
    }


def eval_run(
    run_dir: Path,
    rewards: list[str] | None,
    views: int | None,
    size: int | None,
    rule: HackingRule = HackingRule(),
    mesh: bool = False,
) -> dict[str, Any]:
    """Evaluate ``run_dir``; writes eval.json and contact_sheet.png there.

    ``views`` and ``size`` default to the run's ``output.eval_views`` and ``output.eval_resolution``, the
    settings its metrics.json was scored with. ``mesh`` also scores renders of the run's exported mesh file.
    """
    from psdkit.run.callbacks import to_uint8
    from psdkit.system import grid_image

    recipe = load_run_recipe(run_dir, rewards)
    views = views or recipe.schema.output.eval_views
    size = size or recipe.schema.output.eval_resolution
    system = eval_system(recipe)
    results = [score(system, c, views, size) for c in checkpoints(run_dir)]
    last, images = results[-1]
    out: dict[str, Any] = {"run": str(run_dir), "views": views, "resolution": size, "final": last}
    first = results[0][0] if len(results) > 1 else None
    if first is not None:
        out["first"] = first
    out["hacking"] = hacking(first, last, rule)
    out["reward_hacking"] = out["hacking"]["flagged"]
    if mesh:
        out["mesh"] = score_mesh(system, run_dir, views, size, images)
    (run_dir / "eval.json").write_text(json.dumps(out, indent=2))
    imageio.imwrite(run_dir / "contact_sheet.png", to_uint8(grid_image(images)))
    return out


def verdict(h: dict[str, Any] | None) -> str:
    """``YES (wrong object, ...)``, ``no`` or ``n/a``."""
    if not h or h["flagged"] is None:
        return "n/a"
    return f"YES ({', '.join(h['fired'])})" if h["flagged"] else "no"


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
            verdict(r.get("hacking")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def score_mesh(system: Any, run_dir: Path, views: int, size: int, field_images: torch.Tensor) -> dict[str, Any]:
    """Renders of the exported mesh file (as export.json describes it) from the same views: their rewards next
    to the field's, their PSNR to the field's renders, and the object they show (analytic world)."""
    from psdkit.contracts.capabilities import KnownObjects
    from psdkit.mesh.load import load_textured
    from psdkit.mesh.pipeline import render_textured
    from psdkit.ops.metrics import psnr
    from psdkit.run.evaluate import fidelity
    from psdkit.run.export import reward_scorer

    info_path = run_dir / "export.json"
    if not info_path.is_file():
        raise RunDirError(f"{run_dir}: no export.json (export the mesh first: psdkit export {run_dir})")
    cfg = json.loads(info_path.read_text())["config"]
    path = next((run_dir / f"mesh.{f}" for f in ("glb", "obj") if (run_dir / f"mesh.{f}").is_file()), None)
    if path is None:
        raise RunDirError(f"{run_dir}: no textured mesh.glb or mesh.obj to score")
    mesh = load_textured(path, cfg["up_axis"], cfg["scale"])
    comp = system.components
    cams = comp.camera.orbit(views, size, size)
    images = render_textured(mesh, cams, system.background, cfg["check_supersample"])
    score = reward_scorer(system)
    field_scores, mesh_scores = score(field_images), score(images)
    out: dict[str, Any] = {
        "file": path.name,
        "psnr_to_field": round(float(psnr(images, field_images.cpu()).mean()), 3),
        "rewards": {k: {"field": field_scores[k], "mesh": mesh_scores[k]} for k in field_scores},
    }
    if isinstance(comp.prior, KnownObjects):
        refs = {k: v.cpu() for k, v in comp.prior.references(cams.to(system.device)).items()}
        out["fidelity"] = fidelity(images, refs, comp.prior.answers(comp.cond.base_prompt))
    return out
