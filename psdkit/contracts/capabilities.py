"""Optional interfaces a component may declare by subclassing them, beyond its kind's contract.

Code that needs a capability asks with ``isinstance`` and says plainly what to use instead when the
component lacks it; nothing probes plugins for attributes.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Sequence

from torch import Tensor, nn

from psdkit.contracts.camera import Cameras


class KnownObjects(abc.ABC):
    """A prior whose data distribution is known exactly (the analytic world): it can render the objects it
    was "trained" on, which gives fidelity metrics (PSNR to the object a prompt asks for)."""

    @abc.abstractmethod
    def references(self, cameras: Cameras) -> dict[str, Tensor]:
        """Exact clean images [B, 3, H, W] in [0, 1] of every known object seen by ``cameras``, by name."""

    @abc.abstractmethod
    def answers(self, prompt: str) -> list[str]:
        """Names of the objects that match ``prompt``."""


class TrainableAdapter(abc.ABC):
    """A prior whose denoiser can carry trainable low-rank adapters (LoRA), switched on only inside
    :meth:`adapter_enabled`: VSD's particle score model is such an adapter. The adapter's parameters belong to
    whoever asked for them (checkpointed and optimized there); the prior's own weights stay frozen."""

    @abc.abstractmethod
    def add_adapter(self, name: str, rank: int, targets: Sequence[str]) -> list[nn.Parameter]:
        """Add a LoRA of ``rank`` on the denoiser modules named ``targets`` (disabled); return its parameters
        (``requires_grad`` set)."""

    @abc.abstractmethod
    def adapter_enabled(self, name: str) -> contextlib.AbstractContextManager[None]:
        """A context in which ``predict_noise`` runs with adapter ``name`` switched on."""


class DensityField(abc.ABC):
    """A representation whose ``density(points)`` is a volume density with a surface inside the box (a NeRF,
    Gaussians splatted as densities): mesh export (marching cubes) needs it. A representation without one (a
    2D image) cannot be exported as a mesh."""

    @abc.abstractmethod
    def density(self, points: Tensor) -> Tensor:
        """[N] volume density >= 0 at world points [N, 3]."""
