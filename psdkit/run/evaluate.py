"""Scoring a trained representation: rewards and, where the prior knows its data, fidelity."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from psdkit.contracts.capabilities import KnownObjects
from psdkit.ops.metrics import psnr
from psdkit.system import PSDSystem


def fidelity(images: Tensor, references: dict[str, Tensor], matching: list[str]) -> dict[str, Any]:
    """Which reference object the renders show and how closely.

    Returns ``object`` (best mean PSNR over all references), ``matches_prompt``, ``view_consistency`` (the share
    of views whose own best object is the views' majority one: 1 for a consistent 3D object), ``view_objects``,
    ``psnr_spread`` (max - min per-view PSNR to the target), ``psnr`` (best mean PSNR over the prompt's
    objects), ``per_view_psnr`` (for that object) and ``objects_psnr``.
    """
    scores = {name: psnr(images, ref.to(images)) for name, ref in references.items()}
    means = {name: float(s.mean()) for name, s in scores.items()}
    best = max(means, key=means.__getitem__)
    target = max(matching or list(means), key=means.__getitem__)
    per_view_best = [max(scores, key=lambda n: float(scores[n][v])) for v in range(len(images))]
    majority = max(set(per_view_best), key=per_view_best.count)
    return {
        "object": best,
        "matches_prompt": best in matching,
        "view_consistency": round(per_view_best.count(majority) / len(per_view_best), 4),
        "view_objects": per_view_best,
        "psnr_spread": round(float(scores[target].max() - scores[target].min()), 3),
        "psnr": means[target],
        "target": target,
        "per_view_psnr": [round(float(v), 3) for v in scores[target]],
        "objects_psnr": {k: round(v, 3) for k, v in means.items()},
    }


@torch.no_grad()
def reward_scores(system: PSDSystem, images: Tensor) -> tuple[float | None, dict[str, float]]:
    """(training reward or None, held-out rewards by name): means over renders [B, 3, H, W] in [0, 1], scored
    against the base prompt."""
    comp = system.components
    images = images.to(system.device)
    prompts = [comp.cond.base_prompt] * len(images)
    train = float(comp.reward(images, prompts).mean()) if comp.reward is not None else None
    return train, {name: float(r(images, prompts).mean()) for name, r in comp.eval_rewards.items()}


@torch.no_grad()
def evaluate(system: PSDSystem, views: int, size: int) -> dict[str, Any]:
    """Render ``views`` orbit views at ``size`` px and score them."""
    comp = system.components
    cams = comp.camera.orbit(views, size, size)
    images = system.render_views(views, size)
    out: dict[str, Any] = {"views": views, "resolution": size}
    train, heldout = reward_scores(system, images)
    if train is not None:
        out["train_reward"] = train
    out["heldout_rewards"] = heldout
    if isinstance(comp.prior, KnownObjects):
        refs = comp.prior.references(cams.to(system.device))
        out["fidelity"] = fidelity(images, refs, comp.prior.answers(comp.cond.base_prompt))
    return out
