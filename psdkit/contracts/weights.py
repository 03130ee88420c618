"""The optional hooks of components that load weights (priors and rewards)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar, Literal

WeightSize = Literal["full", "tiny"]
"""``full``: the published architecture; ``tiny``: a toy size for CPU tests."""


class LoadsWeights:
    """Weight hooks of the prior and reward contracts. Both are classmethods: they run on the recipe's
    validated config before anything is built, so a missing checkpoint is reported before any weight loads.
    """

    packages: ClassVar[dict[str, str]] = {}
    """Python modules this component imports beyond psdkit's own dependencies, each with the pip requirement
    that installs it (``{"diffusers": "psdkit[diffusers]"}``): ``psdkit doctor RECIPE`` and the pre-flight
    check of ``psdkit fit`` name a missing one before anything loads. Default: none."""

    @classmethod
    def required_weights(cls, config: Any) -> list[tuple[str, bool]]:
        """``(what, present locally)`` for each checkpoint ``config`` needs: a hub id or path (with the file
        name for single files). Used by ``psdkit doctor RECIPE`` and the pre-flight check of ``psdkit fit``.
        Default: none (the component needs no weights)."""
        return []

    @classmethod
    def random_weights(cls, config: Any, folder: Path, size: WeightSize) -> list[str]:
        """Save a checkpoint of this architecture with random weights, in its published layout, into
        ``folder``, and return the config overrides (``key=value``, keys relative to the config) that load it.
        Used by ``psdkit bench speed --random-weights`` and by tests. Default: not supported."""
        raise NotImplementedError(f"{cls.__name__} cannot build random weights")


def missing_packages(cls: type[LoadsWeights]) -> list[tuple[str, str]]:
    """``(module, pip requirement)`` for each of ``cls.packages`` that cannot be imported here."""
    return [(mod, req) for mod, req in cls.packages.items() if importlib.util.find_spec(mod) is None]


def offers_random_weights(cls: type[LoadsWeights]) -> bool:
    """Whether ``cls`` implements (overrides) :meth:`LoadsWeights.random_weights`."""
    return cls.random_weights.__func__ is not LoadsWeights.random_weights.__func__  # type: ignore[attr-defined]
