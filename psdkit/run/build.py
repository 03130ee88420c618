"""Instantiating a validated recipe's components (this is where weights load)."""

from __future__ import annotations

from typing import Any, TypeVar

import torch

from psdkit.config.recipe import Recipe
from psdkit.config.recipe_schema import PromptConfig
from psdkit.contracts import (
    Cameras,
    CameraSampler,
    Components,
    Conditioning,
    DiffusionPrior,
    GuidanceContext,
    Representation,
    RewardModel,
    ViewSource,
)
from psdkit.errors import RecipeError

VIEW_LABELS = ("front", "side", "back")
M = TypeVar("M", bound=torch.nn.Module)


def make_conditioning(prior: DiffusionPrior, prompt: PromptConfig) -> Conditioning:
    """Encode the prompt (per view label), the empty prompt and the negative prompt once."""
    if prompt.view_dependent:
        labels = list(VIEW_LABELS)
        suffix = {"front": prompt.front_suffix, "side": prompt.side_suffix, "back": prompt.back_suffix}
        texts = [prompt.text + suffix[label] for label in labels]
    else:
        labels, texts = [""], [prompt.text]
    with torch.no_grad():
        emb = prior.encode_text([*texts, "", prompt.negative])
    n = len(texts)
    return Conditioning(labels, texts, emb[:n], emb[n : n + 1], emb[n + 1 : n + 2], prompt.text)


def view_label_ids(cameras: Cameras, labels: list[str], prompt: PromptConfig) -> list[int]:
    """Index into the conditioning's view ``labels`` of each camera (host-side cameras: no device read)."""
    if labels == [""]:
        return [0] * len(cameras)
    return [labels.index(n) for n in cameras.view_labels(prompt.front_angle, prompt.back_angle)]


def view_source(camera: CameraSampler, cond: Conditioning, prompt: PromptConfig, seed: int) -> ViewSource:
    """The training views a strategy may draw on its own, labelled as the run labels its steps' views."""
    return ViewSource(camera, lambda cams: view_label_ids(cams, cond.labels, prompt), seed)


def _frozen(module: M) -> M:
    module.requires_grad_(False)
    return module.eval()


def build_representation(recipe: Recipe) -> Representation:
    """The recipe's representation alone (no prior or reward loads): to read a run's checkpoint of it."""
    rep = recipe.components["representation"]
    return rep.cls(rep.config)


def check_groups(views: int, camera: CameraSampler) -> None:
    """A prior that denoises groups of ``views`` views of one object needs a camera sampler drawing such groups.

    Raises:
        RecipeError: naming ``camera.config.group_views``.
    """
    group = camera.views_per_group()
    if views > 1 and group != views:
        raise RecipeError(
            "camera.config.group_views",
            f"the prior denoises groups of {views} views of one object; draw cameras in such groups "
            f"(group_views: {views}, batch sizes multiples of it)",
            group,
        )


def build_components(recipe: Recipe) -> Components:
    """Instantiate every component of ``recipe`` and set up the strategy."""
    comp = recipe.components

    def make(key: str) -> Any:
        return comp[key].cls(comp[key].config)

    camera = make("camera")
    prior = _frozen(make("prior"))
    check_groups(prior.views_per_group(), camera)
    reward = _frozen(make("reward")) if "reward" in comp else None
    evals: dict[str, RewardModel] = {}
    for c in recipe.eval_rewards:  # the same reward twice (other configs) gets name, name#2, ...
        n = sum(k.split("#")[0] == c.info.name for k in evals)
        evals[c.info.name if n == 0 else f"{c.info.name}#{n + 1}"] = _frozen(c.cls(c.config))
    cond = make_conditioning(prior, recipe.schema.prompt)
    guidance = make("guidance")
    views = view_source(camera, cond, recipe.schema.prompt, recipe.schema.seed)
    guidance.setup(GuidanceContext(prior=prior, reward=reward, cond=cond, views=views))
    return Components(
        representation=build_representation(recipe),
        renderer=make("renderer"),
        background=make("background"),
        camera=camera,
        prior=prior,
        guidance=guidance,
        reward=reward,
        eval_rewards=evals,
        cond=cond,
    )
