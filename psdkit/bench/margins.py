"""Reward margins between the answers of a prompt, measured on the prior's exact renders.

For a prior that knows its objects (the analytic world), each object the prompt names is rendered
exactly from the evaluation cameras and scored by the training reward. The preferred answer is the
one the reward scores highest; the margin is its lead over the runner-up, also given as a fraction of
the reward's spread over every object of the world (so margins of different rewards compare).
"""

from __future__ import annotations

from typing import Any

import torch

from psdkit.config.recipe import Recipe
from psdkit.contracts.capabilities import KnownObjects


@torch.no_grad()
def reward_margin(recipe: Recipe) -> dict[str, Any] | None:
    """``{answers, scores, preferred, margin, relative_margin}`` of ``recipe``'s prompt and training reward;
    None when the prior does not know its objects, the recipe has no reward or the prompt has one answer."""
    comp = recipe.components
    if "reward" not in comp:
        return None
    prior = comp["prior"].cls(comp["prior"].config)
    if not isinstance(prior, KnownObjects):
        return None
    reward = comp["reward"].cls(comp["reward"].config).eval()
    prompt = recipe.schema.prompt.text
    answers = prior.answers(prompt)
    if len(answers) < 2:
        return None
    camera = comp["camera"].cls(comp["camera"].config)
    out = recipe.schema.output
    refs = prior.references(camera.orbit(out.eval_views, out.eval_resolution, out.eval_resolution))
    scores = {name: float(reward(img, [prompt] * len(img)).mean()) for name, img in refs.items()}
    ranked = sorted(answers, key=scores.__getitem__, reverse=True)
    spread = max(scores.values()) - min(scores.values())
    margin = scores[ranked[0]] - scores[ranked[1]]
    return {
        "answers": answers,
        "scores": scores,
        "preferred": ranked[0],
        "margin": margin,
        "relative_margin": margin / spread if spread > 0 else 0.0,
    }
