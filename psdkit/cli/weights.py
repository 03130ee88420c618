"""What a recipe needs (Python packages, weights) and whether it is present locally."""

from __future__ import annotations

from psdkit.config.recipe import load_recipe
from psdkit.hub import DOWNLOAD_HINT, declared_weights, missing_extras


def report_weights(recipe_path: str) -> int:
    """Print each component's packages and weights, with how to get what is missing; exit 1 if anything is."""
    recipe = load_recipe(recipe_path)
    print(f"recipe {recipe_path}: ok")
    components = [*recipe.components.values(), *recipe.eval_rewards]
    extras = missing_extras(components)
    for line in extras:
        print(f"  MISSING package: {line}")
    declared = declared_weights(components)
    for comp in components:
        items = [(item, present) for c, item, present in declared if c is comp]
        if not items:
            print(f"  {comp.key:<16} {comp.info.name}: no weights needed")
        for item, present in items:
            how = "" if present else f" (get it: {how_to_get(item)})"
            print(f"  {comp.key:<16} {comp.info.name}: {item} {'present' if present else 'MISSING'}{how}")
    missing = [item for _, item, present in declared if not present]
    if missing:
        print(f"{len(missing)} weight(s) missing. {DOWNLOAD_HINT}")
    return 1 if missing or extras else 0


def how_to_get(item: str) -> str:
    """The command that fetches a declared weight: a hub repo, a file inside one, or a local path to fix."""
    if item.startswith(("/", ".", "~")):
        return "a local path that does not exist: fix the recipe key"
    parts = item.split("/")
    if len(parts) > 2 and "*" in parts[-1]:  # a folder of a repo: REPO/FOLDER/*
        return f"huggingface-cli download {parts[0]}/{parts[1]} --include '{'/'.join(parts[2:])}'"
    if len(parts) > 2:
        return f"huggingface-cli download {parts[0]}/{parts[1]} {'/'.join(parts[2:])}"
    return f"huggingface-cli download {item}"
