"""The 3D representation contract: a field queried at points."""

from __future__ import annotations

import abc
import dataclasses

import torch
from torch import Tensor, nn

from psdkit.contracts.component import Component, ParamGroup


@dataclasses.dataclass
class FieldOutput:
    """What a radiance field returns for N points."""

    density: Tensor
    """[N] volume density, >= 0 (units of 1 / world length)."""
    rgb: Tensor
    """[N, 3] emitted colour in [0, 1]."""


class Representation(Component, abc.ABC):
    """A trainable radiance field inside the cube [-bound, bound]^3.

    Args:
        config: the plugin's ``Config`` instance.
    """

    @property
    @abc.abstractmethod
    def bound(self) -> float:
        """Half-size of the axis-aligned box that holds the scene."""

    @abc.abstractmethod
    def forward(self, points: Tensor, dirs: Tensor | None = None) -> FieldOutput:
        """Query the field at ``points`` [N, 3] (world space), optional view ``dirs`` [N, 3]."""

    def density(self, points: Tensor) -> Tensor:
        """[N] density only (used for occupancy grids and mesh export)."""
        return self.forward(points).density

    @abc.abstractmethod
    def param_groups(self) -> list[ParamGroup]:
        """The field's trainable parameters, grouped by optimizer settings and learning-rate schedule."""

    def bytes_per_point(self) -> int:
        """Activation memory (forward and backward) of one queried point, bytes: sizes the pre-start memory
        check. Default: 0 (unknown; the check then counts parameters only)."""
        return 0

    def restructure(self, step: int, generator: torch.Generator) -> list[tuple[nn.Parameter, Tensor]]:
        """Called before every training step, after :meth:`set_progress`: change the representation's structure
        (Gaussians densify and prune) with ``generator`` (the same on every rank). Returns, per parameter, the
        indices along its first dimension whose optimizer state must restart. Default: nothing changes."""
        return []

    def after_backward(self) -> None:
        """Called on every rank after each training step's backward pass, before the optimizer step (e.g. to
        fold statistics a renderer recorded during backward, summed over ranks). Default: nothing."""

    def set_progress(self, step: int, max_steps: int) -> None:
        """Called before every training step with the step about to run (coarse-to-fine schedules). Default:
        nothing."""
