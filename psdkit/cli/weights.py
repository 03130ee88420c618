"""What weights a recipe needs and whether they are present locally."""

from __future__ import annotations

from psdkit.config.recipe import load_recipe


def report_weights(recipe_path: str) -> int:
    """Print each component's weights; exit 1 if any is missing."""
    recipe = load_recipe(recipe_path)
    print(f"recipe {recipe_path}: ok")
    missing = 0
    for comp in [*recipe.components.values(), *recipe.eval_rewards]:
        needs = getattr(comp.cls, "required_weights", None)
        items = needs(comp.config) if needs else []
        if not items:
            print(f"  {comp.key:<16} {comp.info.name}: no weights needed")
        for item, present in items:
            missing += not present
            print(f"  {comp.key:<16} {comp.info.name}: {item} {'present' if present else 'MISSING'}")
    return 1 if missing else 0
