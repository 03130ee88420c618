"""Plugin discovery through Python entry points.

Every component kind has one entry-point group (``psdkit.<kind>s``). Built-in components are declared
in psdkit's own ``pyproject.toml`` exactly like third-party ones. Listing reads metadata only; a plugin
is imported only when a recipe names it, and it is validated then: a failure raises one
:class:`~psdkit.errors.PluginError` naming the entry point, its distribution and version, and the cause.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata as md
from collections.abc import Callable, Iterable
from typing import Any

from psdkit.errors import PluginError

#: kind -> (entry-point group, "module:Class" of the kind's base class)
KINDS: dict[str, tuple[str, str]] = {
    "representation": ("psdkit.representations", "psdkit.contracts.representation:Representation"),
    "renderer": ("psdkit.renderers", "psdkit.contracts.renderer:Renderer"),
    "background": ("psdkit.backgrounds", "psdkit.contracts.background:Background"),
    "camera": ("psdkit.cameras", "psdkit.contracts.camera:CameraSampler"),
    "prior": ("psdkit.priors", "psdkit.contracts.prior:DiffusionPrior"),
    "reward": ("psdkit.rewards", "psdkit.contracts.reward:RewardModel"),
    "guidance": ("psdkit.guidance", "psdkit.contracts.guidance:GuidanceStrategy"),
}


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """What the metadata says about one installed plugin (nothing is imported)."""

    kind: str
    name: str
    value: str
    """``module:attr`` the entry point points at."""
    dist: str
    version: str

    def describe(self) -> str:
        """``name (dist version, module:attr)``."""
        return f"{self.name} ({self.dist} {self.version}, {self.value})"


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def base_class(kind: str) -> type[Any]:
    """The contract class plugins of ``kind`` must subclass."""
    return _import(KINDS[kind][1])


class Registry:
    """Installed plugins, read lazily from entry points.

    Args:
        entry_points: replacement for :func:`importlib.metadata.entry_points` (tests pass fakes).
    """

    def __init__(self, entry_points: Callable[..., Iterable[Any]] | None = None) -> None:
        self._entry_points = entry_points or md.entry_points
        self._cache: dict[str, dict[str, tuple[PluginInfo, Any]]] = {}
        self._loaded: dict[tuple[str, str], type] = {}

    def _scan(self, kind: str) -> dict[str, tuple[PluginInfo, Any]]:
        if kind not in KINDS:
            raise PluginError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")
        if kind in self._cache:
            return self._cache[kind]
        found: dict[str, tuple[PluginInfo, Any]] = {}
        for ep in self._entry_points(group=KINDS[kind][0]):
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                kind,
                ep.name,
                ep.value,
                getattr(dist, "name", None) or "<unknown>",
                getattr(dist, "version", None) or "?",
            )
            old = found.get(ep.name)
            if old is not None and (old[0].dist, old[0].value) != (info.dist, info.value):
                raise PluginError(
                    f"two {kind} plugins are named {ep.name!r}: {old[0].describe()} and "
                    f"{info.describe()}; uninstall one of the distributions"
                )
            found[ep.name] = (info, ep)
        self._cache[kind] = dict(sorted(found.items()))
        return self._cache[kind]

    def names(self, kind: str) -> list[str]:
        """Installed plugin names of ``kind``, sorted."""
        return list(self._scan(kind))

    def info(self, kind: str) -> list[PluginInfo]:
        """Metadata of every installed plugin of ``kind`` (imports nothing)."""
        return [info for info, _ in self._scan(kind).values()]

    def get_info(self, kind: str, name: str) -> PluginInfo:
        """Metadata of one plugin; raises :class:`PluginError` listing installed names if absent."""
        scanned = self._scan(kind)
        if name not in scanned:
            raise PluginError(f"no {kind} plugin named {name!r}; installed: {', '.join(scanned) or '(none)'}")
        return scanned[name][0]

    def load(self, kind: str, name: str) -> type[Any]:
        """Import and validate the class of plugin ``name``.

        Raises:
            PluginError: unknown name, import failure, wrong base class or missing ``Config``.
        """
        key = (kind, name)
        if key in self._loaded:
            return self._loaded[key]
        info = self.get_info(kind, name)
        ep = self._scan(kind)[name][1]
        where = f"{kind} plugin {info.describe()}"
        try:
            cls = ep.load()
        except Exception as err:  # noqa: BLE001 - any import failure is reported the same way
            raise PluginError(f"{where} failed to import: {type(err).__name__}: {err}") from err
        base = base_class(kind)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(f"{where} is {cls!r}, not a subclass of {base.__module__}.{base.__name__}")
        plugin: type[Any] = cls
        config = plugin.Config
        if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
            raise PluginError(f"{where} has no dataclass `Config` attribute")
        self._loaded[key] = cls
        return cls


_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry over installed distributions."""
    global _default
    if _default is None:
        _default = Registry()
    return _default
