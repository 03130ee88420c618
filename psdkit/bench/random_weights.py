"""Random-weight checkpoints of a recipe's real architectures, for ``psdkit bench speed --random-weights``.

The recipe's prior and training reward build them through their contract's ``random_weights`` hook
(:class:`psdkit.contracts.weights.LoadsWeights`), in their published layouts, and the returned overrides point
the recipe at them, so the bench loads them through the plugins' own loading code. ``full`` is the published
size (Stable Diffusion 2.1-base: 866M-parameter UNet, 84M VAE, OpenCLIP-H text encoder; ImageReward: BLIP
ViT-L/16 + BERT-base); ``tiny`` is the test size, for a CPU. Components that need no weights are skipped.
Checkpoints are cached under ``~/.cache/psdkit/random-weights`` and reused.
"""

from __future__ import annotations

from pathlib import Path

from psdkit.config.recipe import Recipe
from psdkit.contracts.weights import WeightSize, offers_random_weights
from psdkit.errors import RecipeError

CACHE = Path("~/.cache/psdkit/random-weights").expanduser()


def random_weight_overrides(recipe: Recipe, size: WeightSize, cache: Path = CACHE) -> list[str]:
    """Save (or reuse) random checkpoints for the recipe's prior and reward; returns the overrides to apply.

    Evaluation rewards are not part of a training step and are dropped (``eval_rewards=[]``).
    """
    overrides = ["eval_rewards=[]"]
    for key in ("prior", "reward"):
        comp = recipe.components.get(key)
        if comp is None or not comp.cls.required_weights(comp.config):
            continue
        if not offers_random_weights(comp.cls):
            raise RecipeError(
                f"{key}.name",
                "cannot build random weights for the speed bench (run without "
                "--random-weights to use real weights, or implement random_weights on the plugin)",
                comp.info.name,
            )
        folder = cache / f"{key}-{comp.info.name}-{size}"
        done = folder / ".psdkit-complete"
        if done.exists():
            found = done.read_text().splitlines()
        else:
            folder.mkdir(parents=True, exist_ok=True)
            try:
                found = comp.cls.random_weights(comp.config, folder, size)
            except NotImplementedError as err:
                raise RecipeError(f"{key}.name", f"no {size} random weights: {err}", comp.info.name) from err
            done.write_text("\n".join(found))
        overrides += [f"{key}.config.{o}" for o in found]
    return overrides
