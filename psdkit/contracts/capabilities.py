"""Optional interfaces a component may declare by subclassing them, beyond its kind's contract.

Code that needs a capability asks with ``isinstance`` and says plainly what to use instead when the
component lacks it; nothing probes plugins for attributes.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
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


@dataclasses.dataclass
class Gaussians:
    """N 3D Gaussians as a renderer reads them (activated: no logits or log-scales)."""

    means: Tensor
    """[N, 3] centres, world units."""
    scales: Tensor
    """[N, 3] standard deviations along the rotated axes, world units."""
    quats: Tensor
    """[N, 4] unit quaternions (w, x, y, z)."""
    opacities: Tensor
    """[N] in (0, 1)."""
    sh: Tensor
    """[N, K, 3] spherical-harmonic colour coefficients, K = (degree + 1)^2 (3DGS's convention)."""
    ids: Tensor
    """[N] the representation's index of each Gaussian (for :meth:`GaussianSet.record_view_grad`)."""


@dataclasses.dataclass
class RawGaussians:
    """N 3D Gaussians as the standard 3DGS .ply stores them (what a viewer reads), on the CPU."""

    means: Tensor
    """[N, 3] centres."""
    log_scales: Tensor
    """[N, 3] log standard deviations."""
    quats: Tensor
    """[N, 4] rotations (w, x, y, z), not necessarily normalized."""
    opacity_logits: Tensor
    """[N] logits of the opacities."""
    sh: Tensor
    """[N, K, 3] SH coefficients (index 0: the base colour)."""


class GaussianSet(abc.ABC):
    """A representation made of 3D Gaussians: the splat renderer draws them directly instead of querying a
    field, and reports each Gaussian's screen-space gradient back for adaptive density control."""

    @abc.abstractmethod
    def gaussians(self) -> Gaussians:
        """The current Gaussians (differentiable in the representation's parameters)."""

    @abc.abstractmethod
    def record_view_grad(self, ids: Tensor, grad_norm: Tensor) -> None:
        """Accumulate the norms [M] of the loss gradient w.r.t. the screen-space centres (normalized device
        units) of the Gaussians ``ids`` [M] seen in one view; called by the renderer during backward."""

    @abc.abstractmethod
    def raw_gaussians(self) -> RawGaussians:
        """The active Gaussians' parameters as stored (for the .ply export; exact, no activation round trip)."""

    @abc.abstractmethod
    def load_raw_gaussians(self, raw: RawGaussians) -> None:
        """Replace the Gaussians with ``raw`` exactly (a .ply written by :meth:`raw_gaussians`)."""
