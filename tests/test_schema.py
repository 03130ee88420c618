"""Typed config validation: every error names the dotted path."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from psdkit.config.schema import Schedule, build_config, config_to_dict, field_docs, knob
from psdkit.errors import RecipeError


@dataclasses.dataclass(frozen=True)
class Inner:
    """Inner."""

    lr: float = knob(1e-3, gt=0.0)
    """Learning rate."""
    mode: Literal["a", "b"] = "a"
    """A mode."""


@dataclasses.dataclass(frozen=True)
class Outer:
    """Outer."""

    steps: int = knob(10, ge=1)
    """Steps."""
    inner: Inner = Inner()
    """Nested."""
    scale: Schedule = knob(Schedule(1.0), ge=0.0)
    """A schedule."""
    pair: tuple[float, float] = (0.0, 1.0)
    """Two numbers."""
    maybe: int | None = None
    """Optional."""
    clip: float | None = knob(None, gt=0.0)
    """Optional with bounds."""


def test_optional_bounded_knob_accepts_null():
    assert build_config(Outer, {"clip": None}, "x").clip is None
    assert build_config(Outer, {"clip": 2}, "x").clip == 2.0
    with pytest.raises(RecipeError, match=r"x\.clip: out of range, must be > 0\.0"):
        build_config(Outer, {"clip": -1.0}, "x")


def test_defaults_and_types():
    cfg = build_config(Outer, {"steps": 3, "inner": {"lr": 1}, "pair": [1, 2]}, "x")
    assert cfg.steps == 3 and cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float)
    assert cfg.pair == (1.0, 2.0)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"stpes": 3}, r"x\.stpes: unknown key; allowed: clip, inner, maybe, pair, scale, steps"),
        ({"steps": "3"}, r"x\.steps: expected an integer \(found '3'\)"),
        ({"steps": True}, r"x\.steps: expected an integer"),
        ({"steps": 0}, r"x\.steps: out of range, must be >= 1 \(found 0\)"),
        ({"inner": {"lr": -1}}, r"x\.inner\.lr: out of range, must be > 0"),
        ({"inner": {"mode": "c"}}, r"x\.inner\.mode: not an allowed value \(found 'c'\); allowed: a, b"),
        ({"inner": {"typo": 1}}, r"x\.inner\.typo: unknown key"),
        ({"pair": [1]}, r"x\.pair: expected 2 items"),
        ({"scale": {"start": 1, "end": -1, "to_step": 5}}, r"x\.scale: out of range, must be >= 0"),
        ({"scale": {"start": 1, "end": 2, "from_step": 5, "to_step": 1}}, r"x\.scale\.to_step: must be >= from_step"),
        ({"maybe": "no"}, r"x\.maybe: expected int \| null"),
        ({"steps": float("nan")}, r"x\.steps: expected an integer"),
    ],
)
def test_errors_name_the_dotted_path(data, match):
    with pytest.raises(RecipeError, match=match):
        build_config(Outer, data, "x")


def test_schedule_values():
    s = Schedule(start=0.0, end=1.0, from_step=10, to_step=20)
    assert s(0) == 0.0 and s(10) == 0.0 and s(15) == pytest.approx(0.5) and s(20) == 1.0 and s(99) == 1.0
    assert Schedule(2.0)(123) == 2.0
    cos = Schedule(start=0.0, end=1.0, to_step=10, kind="cosine")
    assert 0 < cos(3) < 0.3 and cos(5) == pytest.approx(0.5)
    assert build_config(Outer, {"scale": 3}, "x").scale == Schedule(3.0)


def test_field_docs_and_round_trip():
    docs = field_docs(Outer)
    assert docs["steps"] == "Steps." and docs["inner"] == "Nested."
    cfg = build_config(Outer, {"scale": {"start": 1, "end": 2, "to_step": 4}}, "")
    assert build_config(Outer, config_to_dict(cfg), "") == cfg
