"""``psdkit plugins`` and ``psdkit show``."""

from __future__ import annotations

import argparse
import dataclasses
import typing

from psdkit.config.schema import Schedule, field_docs, type_name
from psdkit.errors import PluginError
from psdkit.registry import KINDS, default_registry


def list_plugins(args: argparse.Namespace) -> int:
    """Print installed plugins by kind with distribution and version (reads metadata only)."""
    reg = default_registry()
    kinds = [args.kind] if args.kind else list(KINDS)
    for kind in kinds:
        if kind not in KINDS:
            raise PluginError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
        print(f"{kind} ({KINDS[kind][0]}):")
        for info in reg.info(kind):
            print(f"  {info.name:<20} {info.dist} {info.version}  [{info.value}]")
        if not reg.info(kind):
            print("  (none)")
    return 0


def show_value(value: object) -> str:
    """A default as a recipe would write it (constant schedules as their number)."""
    if isinstance(value, Schedule):
        if value.end is None:
            return repr(value.start)
        return repr({k: v for k, v in dataclasses.asdict(value).items() if v is not None})
    return repr(value)


def describe_config(cls: type) -> list[str]:
    """One line per config field: name, type, default, docstring."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = show_value(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = show_value(f.default_factory())
        else:
            default = "(required)"
        bounds = f.metadata.get("psdkit_bounds", {})
        rng = ", ".join(f"{k} {v}" for k, v in bounds.items())
        lines.append(f"  {f.name}: {type_name(hints[f.name])} = {default}" + (f"  [{rng}]" if rng else ""))
        if docs.get(f.name):
            lines.append(f"      {docs[f.name]}")
    return lines


def show_plugin(args: argparse.Namespace) -> int:
    """Print a plugin's origin, docstring and config fields."""
    reg = default_registry()
    info = reg.get_info(args.kind, args.name)
    cls = reg.load(args.kind, args.name)
    print(f"{args.kind} {info.describe()}")
    doc = (cls.__doc__ or "").strip()
    if doc:
        print(f"  {doc.splitlines()[0]}")
    print("config:")
    print("\n".join(describe_config(cls.Config)))
    return 0
