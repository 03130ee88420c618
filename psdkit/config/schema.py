"""Typed configs: validation of plain data into frozen dataclasses, with dotted paths in every error.

A plugin's ``Config`` is a frozen dataclass. Each field has a docstring (a string literal right under
it, read by :func:`field_docs`), a type, and optionally bounds given through :func:`knob`.
:func:`build_config` turns a mapping from a recipe into that dataclass or raises one
:class:`~psdkit.errors.RecipeError` naming the dotted path, the value and what is allowed.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math
import textwrap
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from psdkit.errors import RecipeError

_BOUNDS = "psdkit_bounds"


def knob(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with numeric bounds checked at validation time."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return dataclasses.field(default=default, default_factory=default_factory, metadata={_BOUNDS: bounds})


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A scalar that changes with the training step.

    In a recipe it is a number (constant) or a mapping ``{start, end, from_step, to_step, kind}``.
    Before ``from_step`` the value is ``start``; after ``to_step`` it is ``end``.
    """

    start: float
    """Value at and before ``from_step``."""
    end: float | None = None
    """Value at and after ``to_step`` (defaults to ``start``: a constant)."""
    from_step: int = 0
    """Step where the change begins."""
    to_step: int = 0
    """Step where the change ends."""
    kind: Literal["linear", "cosine", "step"] = "linear"
    """Interpolation: linear, cosine ease, or a jump at ``to_step``."""

    def __call__(self, step: int) -> float:
        """Value at ``step``."""
        end = self.start if self.end is None else self.end
        if step <= self.from_step or end == self.start:
            return self.start
        if step >= self.to_step:
            return end
        frac = (step - self.from_step) / max(self.to_step - self.from_step, 1)
        if self.kind == "step":
            return self.start
        if self.kind == "cosine":
            frac = 0.5 - 0.5 * math.cos(math.pi * frac)
        return self.start + frac * (end - self.start)

    def bounds(self) -> tuple[float, float]:
        """The smallest and largest value the schedule takes."""
        end = self.start if self.end is None else self.end
        return min(self.start, end), max(self.start, end)


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Map each dataclass field of ``cls`` (and its bases) to the docstring written under it."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for prev, node in zip(body, body[1:]):
            if (
                isinstance(prev, ast.AnnAssign)
                and isinstance(prev.target, ast.Name)
                and isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant)
            ):
                docs[prev.target.id] = " ".join(str(node.value.value).split())
    return docs


def type_name(tp: Any) -> str:
    """A short human name of a type annotation."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _check_bounds(value: Any, bounds: Mapping[str, float], path: str) -> None:
    if value is None:  # an optional knob left unset has no range to check
        return
    values = value.bounds() if isinstance(value, Schedule) else (value, value)
    ops = {
        "ge": (lambda v, b: v >= b, ">="),
        "gt": (lambda v, b: v > b, ">"),
        "le": (lambda v, b: v <= b, "<="),
        "lt": (lambda v, b: v < b, "<"),
    }
    for key, bound in bounds.items():
        fn, sym = ops[key]
        if not all(fn(v, bound) for v in values):
            found = value
            if isinstance(value, Schedule):
                found = value.start if value.end is None else {"start": value.start, "end": value.end}
            raise RecipeError(path, f"out of range, must be {sym} {bound}", found)


def _coerce(tp: Any, value: Any, path: str) -> Any:
    """Validate ``value`` against annotation ``tp``; return the typed value."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args or isinstance(value, bool) != any(isinstance(a, bool) for a in args):
            raise RecipeError(path, "not an allowed value", value, args)
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, path)
            except RecipeError as err:
                errors.append(err)
        raise RecipeError(path, f"expected {type_name(tp)}", value)
    if tp is Schedule:
        return _schedule(value, path)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build_config(tp, value, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise RecipeError(path, f"expected a list ({type_name(tp)})", value)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise RecipeError(path, f"expected {len(args)} items", value)
            return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        out = [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, Mapping):
            raise RecipeError(path, "expected a mapping", value)
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(vt, v, f"{path}.{k}") for k, v in value.items()}
    return _scalar(tp, value, path)


def _scalar(tp: Any, value: Any, path: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeError(path, "expected true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(path, "expected an integer", value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(path, "expected a number", value)
        if not math.isfinite(value):
            raise RecipeError(path, "expected a finite number", value)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise RecipeError(path, "expected a string", value)
        return value
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise RecipeError(path, f"expected {type_name(tp)}", value)


def _schedule(value: Any, path: str) -> Schedule:
    if isinstance(value, Schedule):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Schedule(start=_scalar(float, value, path))
    if isinstance(value, Mapping):
        sched = build_config(Schedule, value, path)
        if sched.end is not None and sched.to_step < sched.from_step:
            raise RecipeError(f"{path}.to_step", "must be >= from_step", sched.to_step)
        return sched
    raise RecipeError(path, "expected a number or {start, end, from_step, to_step}", value)


@dataclasses.dataclass(frozen=True)
class RetiredKeys:
    """Keys (and values) a config renamed or retired, each refused with what to set instead."""

    renamed: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Old key: new key relative to the config, optionally followed by ``"; note"``."""
    retired: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Old key: why it went and what replaces it (``{prefix}`` becomes the config's dotted path)."""
    values: Mapping[str, Mapping[Any, str]] = dataclasses.field(default_factory=dict)
    """Key: {old value: what to set instead}."""


_RETIRED: dict[type, RetiredKeys] = {}


def retired_keys(keys: RetiredKeys) -> Any:
    """Class decorator of a config: refuse ``keys`` at validation, naming what replaced them."""

    def register(cls: type) -> type:
        _RETIRED[cls] = keys
        return cls

    return register


def check_retired(cls: type, data: Mapping[str, Any], prefix: str) -> None:
    """Refuse keys (and values) ``cls`` renamed or retired (:func:`retired_keys`), naming what to set instead."""
    keys = _RETIRED.get(cls)
    if keys is None:
        return
    for key, value in data.items():
        if key in keys.renamed:
            new, _, note = keys.renamed[key].partition("; ")
            raise RecipeError(f"{prefix}{key}", f"renamed: set {prefix}{new}" + (f" ({note})" if note else ""), value)
        if key in keys.retired:
            raise RecipeError(f"{prefix}{key}", "retired: " + keys.retired[key].replace("{prefix}", prefix), value)
        hint = keys.values.get(key, {})
        if isinstance(value, (str, bool)) and value in hint:
            raise RecipeError(f"{prefix}{key}", f"renamed: set {prefix}{key}: {hint[value]}", value)


def build_config(cls: type, data: Any, path: str) -> Any:
    """Validate mapping ``data`` into the frozen dataclass ``cls``.

    Raises:
        RecipeError: on an unknown key, missing required key, wrong type or out-of-range value,
            naming ``path`` + the key.
    """
    if data is None:
        data = {}
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise RecipeError(path or "<root>", "expected a mapping", data)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    prefix = f"{path}." if path else ""
    check_retired(cls, data, prefix)
    for key in data:
        if key not in fields and not fields:
            raise RecipeError(f"{prefix}{key}", "unknown key: this component takes no options")
        if key not in fields:
            raise RecipeError(f"{prefix}{key}", "unknown key", None, sorted(fields))
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecipeError(f"{prefix}{name}", f"required ({type_name(hints[name])})")
            continue
        kwargs[name] = _coerce(hints[name], data[name], f"{prefix}{name}")
        _check_bounds(kwargs[name], f.metadata.get(_BOUNDS, {}), f"{prefix}{name}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise RecipeError(path or "<root>", str(err)) from err


def config_to_dict(cfg: Any) -> Any:
    """Plain-data form of a config (for saving the resolved recipe)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    return cfg
