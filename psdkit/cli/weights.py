"""What weights a recipe needs and whether they are present locally."""

from __future__ import annotations

from psdkit.config.recipe import load_recipe
from psdkit.hub import declared_weights


def report_weights(recipe_path: str) -> int:
    """Print each component's weights; exit 1 if any is missing."""
    recipe = load_recipe(recipe_path)
    print(f"recipe {recipe_path}: ok")
    components = [*recipe.components.values(), *recipe.eval_rewards]
    declared = declared_weights(components)
    for comp in components:
        items = [(item, present) for c, item, present in declared if c is comp]
        if not items:
            print(f"  {comp.key:<16} {comp.info.name}: no weights needed")
        for item, present in items:
            print(f"  {comp.key:<16} {comp.info.name}: {item} {'present' if present else 'MISSING'}")
    return 1 if any(not present for _, _, present in declared) else 0
