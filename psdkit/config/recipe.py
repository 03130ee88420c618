"""Loading recipes: YAML files with one optional ``base:``, CLI overrides, full validation.

Everything here runs before any weight loads or any file is written. Every error is a
:class:`~psdkit.errors.RecipeError` naming the dotted path (or the file), the value and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from pathlib import Path
from typing import Any

import yaml

from psdkit.config import yaml_load
from psdkit.config.recipe_schema import ComponentSpec, RecipeSchema
from psdkit.config.schema import build_config, config_to_dict
from psdkit.contracts.capabilities import DensityField
from psdkit.errors import PluginError, PsdkitWarning, RecipeError
from psdkit.registry import PluginInfo, Registry, default_registry

#: recipe key -> component kind
COMPONENT_KINDS = {
    "representation": "representation",
    "renderer": "renderer",
    "background": "background",
    "camera": "camera",
    "prior": "prior",
    "guidance": "guidance",
    "reward": "reward",
}


@dataclasses.dataclass(frozen=True)
class ResolvedComponent:
    """A recipe component with its plugin class and validated config."""

    key: str
    """Dotted recipe path (``guidance``, ``eval_rewards[0]``)."""
    kind: str
    info: PluginInfo
    cls: type[Any]
    config: Any


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A validated recipe: the schema, its components and where it came from."""

    schema: RecipeSchema
    components: dict[str, ResolvedComponent]
    eval_rewards: tuple[ResolvedComponent, ...]
    source: str
    overrides: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as plain data, with each plugin's full config and distribution."""
        data = config_to_dict(self.schema)
        for comp in [*self.components.values(), *self.eval_rewards]:
            entry = {
                "name": comp.info.name,
                "config": config_to_dict(comp.config),
                "plugin": {"dist": comp.info.dist, "version": comp.info.version, "target": comp.info.value},
            }
            if comp.key.startswith("eval_rewards["):
                data["eval_rewards"][int(comp.key[13:-1])] = entry
            else:
                data[comp.key] = entry
        return data


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a recipe file into a mapping; errors name the file (and line)."""
    if path.is_dir():
        raise RecipeError(
            str(path), "is a directory, not a recipe file (give a .yaml file, e.g. recipes/quickstart.yaml)"
        )
    if not path.is_file():
        raise RecipeError(str(path), "recipe file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise RecipeError(
            str(path), f"not a UTF-8 text file (byte {err.start} cannot be decoded); is it a recipe?"
        ) from err
    except OSError as err:
        raise RecipeError(str(path), f"cannot read the file ({err.strerror or err})") from err
    try:
        data = yaml_load.load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        kind = "YAML error" if isinstance(err, yaml.constructor.ConstructorError) else "YAML syntax error"
        raise RecipeError(where, f"{kind}: {getattr(err, 'problem', None) or err}") from err
    if data is None:
        raise RecipeError(str(path), "the recipe is empty")
    if not isinstance(data, dict):
        raise RecipeError(str(path), "a recipe must be a mapping of keys", type(data).__name__)
    return data


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``top`` into ``base``. A component whose ``name`` changes drops the base's config."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            renamed = "name" in value and old.get("name") != value["name"]
            out[key] = copy.deepcopy(value) if renamed else merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a recipe and its ``base:`` (one level), merged."""
    path = Path(path)
    data = read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise RecipeError(f"{path}: base", "expected a file path", base)
    base_path = (path.parent / base).resolve()
    base_data = read_yaml(base_path)
    if "base" in base_data:
        raise RecipeError(f"{base_path}: base", "a base recipe cannot have a base of its own (one level only)")
    return merge(base_data, data)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML). Renaming a component drops its config."""
    out = copy.deepcopy(data)
    ordered = sorted(overrides, key=lambda o: not o.split("=", 1)[0].endswith(".name"))
    for item in ordered:
        if "=" not in item:
            raise RecipeError(item, "an override must look like key.path=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml_load.load(raw) if raw != "" else ""
        except yaml.YAMLError as err:
            raise RecipeError(key, f"cannot parse override value: {err}", raw) from err
        parts = key.split(".")
        node: Any = out
        for i, part in enumerate(parts[:-1]):
            node = _child(node, part, ".".join(parts[: i + 1]))
        leaf = parts[-1]
        is_component = len(parts) > 1 and isinstance(node, dict) and "config" in node
        if leaf == "name" and is_component and node.get("name") not in (None, value):
            _warn_dropped(".".join(parts[:-1]), node, value)
            node["config"] = {}
        _set(node, leaf, value, key)
    return out


def _warn_dropped(key: str, node: dict[str, Any], new: Any) -> None:
    dropped = sorted(node["config"]) if isinstance(node.get("config"), dict) else []
    if dropped:
        warnings.warn(
            f"{key}.name={new} replaces {node['name']}, so the recipe's {key}.config is dropped "
            f"({', '.join(dropped)}); set any you still want after the name ({key}.config.KEY=VALUE)",
            PsdkitWarning,
            stacklevel=3,
        )


def _child(node: Any, part: str, path: str) -> Any:
    if isinstance(node, list):
        if not part.isdigit() or int(part) >= len(node):
            raise RecipeError(path, "no such list index", part)
        return node[int(part)]
    if not isinstance(node, dict):
        raise RecipeError(path, "cannot descend into a non-mapping value", node)
    if node.get(part) is None:
        node[part] = {}
    return node[part]


def _set(node: Any, leaf: str, value: Any, path: str) -> None:
    if isinstance(node, list):
        if not leaf.isdigit() or int(leaf) >= len(node):
            raise RecipeError(path, "no such list index", leaf)
        node[int(leaf)] = value
    elif isinstance(node, dict):
        node[leaf] = value
    else:
        raise RecipeError(path, "cannot set a key inside a non-mapping value", node)


def resolve_component(spec: ComponentSpec, key: str, kind: str, registry: Registry) -> ResolvedComponent:
    """Find the plugin named by ``spec`` and validate its config at ``<key>.config``."""
    names = registry.names(kind)
    if spec.name not in names:
        raise RecipeError(f"{key}.name", f"no {kind} plugin with this name is installed", spec.name, names)
    try:
        cls = registry.load(kind, spec.name)
    except PluginError as err:
        raise RecipeError(f"{key}.name", str(err)) from err
    config = build_config(cls.Config, spec.config, f"{key}.config")
    return ResolvedComponent(key, kind, registry.get_info(kind, spec.name), cls, config)


def strip_provenance(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of recipe data without the ``plugin`` provenance a run's ``recipe.yaml`` records per component.

    A run's resolved ``recipe.yaml`` is then a recipe again (``psdkit fit runs/x/recipe.yaml``).
    """
    out = copy.deepcopy(data)
    evals = out.get("eval_rewards")
    for value in [*out.values(), *(evals if isinstance(evals, list) else [])]:
        if isinstance(value, dict) and isinstance(value.get("plugin"), dict) and "name" in value:
            value.pop("plugin")
    return out


def check_run_name(name: str, path: str) -> None:
    """A run name becomes one directory inside ``output.root``: non-empty, no separators, not ``.``/``..``."""
    if not name.strip():
        raise RecipeError(path, "a run name must not be empty (it names the run directory)", name)
    bad = [c for c in ("/", "\\", "\0") if c in name]
    if bad or name in (".", "..") or name != name.strip():
        raise RecipeError(
            path,
            "a run name must be one directory name: no path separators, no surrounding spaces, not '.' or '..' "
            "(use output.root to choose the parent folder)",
            name,
        )


MOVED_MESH_KEYS = {
    "mesh_resolution": "resolution",
    "mesh_threshold": "level",
    "mesh_formats": "formats",
    "mesh_keep_largest": "keep_components",
}
"""Keys of ``output`` that moved into ``output.export`` (old name: new name)."""


def check_moved_mesh_keys(data: dict[str, Any]) -> None:
    """A recipe written for the vertex-coloured export gets the new key's name, not "unknown key"."""
    output = data.get("output")
    for old, new in MOVED_MESH_KEYS.items():
        if isinstance(output, dict) and old in output:
            raise RecipeError(f"output.{old}", f"moved: set output.export.{new} (docs/export.md)", output[old])


def migrate_mesh_keys(data: dict[str, Any]) -> dict[str, Any]:
    """A recipe saved by an older psdkit (a run directory's recipe.yaml) with its ``output.mesh_*`` keys moved
    into ``output.export``; ``mesh_keep_largest`` becomes ``keep_components`` 1 or 0."""
    output = data.get("output")
    if not isinstance(output, dict) or not any(k in output for k in MOVED_MESH_KEYS):
        return data
    output = dict(output)
    export = dict(output.get("export") or {})
    for old, new in MOVED_MESH_KEYS.items():
        if old in output:
            value = output.pop(old)
            export[new] = int(bool(value)) if old == "mesh_keep_largest" else value
    output["export"] = export
    return {**data, "output": output}


def validate(
    data: dict[str, Any], registry: Registry | None = None, source: str = "<dict>", overrides: tuple[str, ...] = ()
) -> Recipe:
    """Validate merged recipe data into a :class:`Recipe` (imports the named plugins, loads no weights)."""
    registry = registry or default_registry()
    if isinstance(data, dict) and "loss" in data:
        raise RecipeError(
            "loss",
            "the render regularizers moved to the renderer: set "
            "renderer.config.opacity_sparsity and renderer.config.opacity_entropy (volume renderer)",
            data["loss"],
        )
    if isinstance(data, dict):
        data = strip_provenance(data)
        check_moved_mesh_keys(data)
    schema = build_config(RecipeSchema, data, "")
    check_run_name(schema.name, "name")
    if not schema.output.root.strip():
        raise RecipeError(
            "output.root", "must not be empty (the parent folder of run directories)", schema.output.root
        )
    comps = {}
    for key, kind in COMPONENT_KINDS.items():
        spec = getattr(schema, key)
        if spec is not None:
            comps[key] = resolve_component(spec, key, kind, registry)
    evals = tuple(
        resolve_component(spec, f"eval_rewards[{i}]", "reward", registry) for i, spec in enumerate(schema.eval_rewards)
    )
    if comps["guidance"].cls.needs_reward and "reward" not in comps:
        raise RecipeError("reward", f"guidance {schema.guidance.name!r} needs a reward model; add a `reward:` section")
    missing = [c.__name__ for c in comps["renderer"].cls.requires if not issubclass(comps["representation"].cls, c)]
    if missing:
        raise RecipeError(
            "renderer",
            f"renderer {schema.renderer.name!r} draws representations that declare {', '.join(missing)} "
            f"(psdkit.contracts.capabilities); representation {schema.representation.name!r} does not",
            schema.renderer.name,
        )
    if schema.output.mesh and not issubclass(comps["representation"].cls, DensityField):
        raise RecipeError(
            "output.mesh",
            f"representation {schema.representation.name!r} has no density field to turn into a mesh (it does not "
            "declare psdkit.contracts.capabilities.DensityField); set output.mesh: false",
            True,
        )
    return Recipe(schema, comps, evals, source, overrides)


def load_recipe(path: str | Path, overrides: list[str] | None = None, registry: Registry | None = None) -> Recipe:
    """Read, merge, override and validate a recipe file."""
    overrides = list(overrides or [])
    data = apply_overrides(load_file(path), overrides)
    return validate(data, registry, str(path), tuple(overrides))
