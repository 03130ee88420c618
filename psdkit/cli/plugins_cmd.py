"""``psdkit plugins`` and ``psdkit show``."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

from psdkit.config.schema import Schedule, field_docs, type_name
from psdkit.errors import PluginError
from psdkit.registry import KINDS, default_registry


def kind_of(name: str) -> str:
    """A component kind from its name or its entry-point group's last part (``rewards`` -> ``reward``)."""
    for kind, (group, _) in KINDS.items():
        if name in (kind, group, group.rsplit(".", 1)[-1]):
            return kind
    raise PluginError(f"unknown kind {name!r}; kinds: {', '.join(KINDS)}")


def broken_plugins(kinds: list[str] | None = None) -> dict[tuple[str, str], str]:
    """(kind, name) -> why, for every installed plugin that fails to import or to validate."""
    reg = default_registry()
    broken = {}
    for kind in kinds or list(KINDS):
        for info in reg.info(kind):
            try:
                reg.load(kind, info.name)
            except PluginError as err:
                broken[(kind, info.name)] = str(err).split(": ", 1)[-1] if "failed to import" in str(err) else str(err)
    return broken


def list_plugins(args: argparse.Namespace) -> int:
    """Print installed plugins by kind with distribution and version; mark those that fail to import.

    With ``--fast`` only the metadata is read (nothing is imported, nothing is checked). Exits 1 if a plugin
    is broken.
    """
    reg = default_registry()
    kinds = [kind_of(args.kind)] if args.kind else list(KINDS)
    broken = {} if args.fast else broken_plugins(kinds)
    for kind in kinds:
        print(f"{kind} ({KINDS[kind][0]}):")
        for info in reg.info(kind):
            why = broken.get((kind, info.name))
            mark = f"  BROKEN: {why}" if why else ""
            print(f"  {info.name:<20} {info.dist} {info.version}  [{info.value}]{mark}")
        if not reg.info(kind):
            print("  (none)")
    return 1 if broken else 0


def show_value(value: object) -> str:
    """A default as a recipe would write it (constant schedules as their number)."""
    if isinstance(value, Schedule):
        if value.end is None:
            return repr(value.start)
        return repr({k: v for k, v in dataclasses.asdict(value).items() if v is not None})
    return repr(value)


def _section_type(tp: object) -> type | None:
    """The dataclass a field's annotation holds (``X`` or ``X | None``), other than a Schedule; else None."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    found = [a for a in args if isinstance(a, type) and dataclasses.is_dataclass(a) and a is not Schedule]
    return found[0] if found else None


def describe_config(cls: type, prefix: str = "") -> list[str]:
    """One line per config field: name, type, default, docstring; a nested section's fields follow it, dotted."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        inner = _section_type(hints[f.name])
        if inner is not None and f.default is not None:
            default = "(a section: its fields follow)"
        elif f.default is not dataclasses.MISSING:
            default = show_value(f.default) + (" (a section: {} turns it on; its fields follow)" if inner else "")
        elif f.default_factory is not dataclasses.MISSING:
            default = show_value(f.default_factory())
        else:
            default = "(required)"
        bounds = f.metadata.get("psdkit_bounds", {})
        rng = ", ".join(f"{k} {v}" for k, v in bounds.items())
        lines.append(f"  {prefix}{f.name}: {type_name(hints[f.name])} = {default}" + (f"  [{rng}]" if rng else ""))
        if docs.get(f.name):
            lines.append(f"      {docs[f.name]}")
        if inner is not None:
            lines += describe_config(inner, f"{prefix}{f.name}.")
    return lines


def show_plugin(args: argparse.Namespace) -> int:
    """Print a plugin's origin, docstring and config fields."""
    reg = default_registry()
    kind = kind_of(args.kind)
    info = reg.get_info(kind, args.name)
    cls = reg.load(kind, args.name)
    print(f"{kind} {info.describe()}")
    doc = (cls.__doc__ or "").strip()
    if doc:
        print(f"  {doc.splitlines()[0]}")
    print("config:")
    print("\n".join(describe_config(cls.Config)))
    return 0
