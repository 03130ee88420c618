"""Hash-grid NeRF: a multi-resolution hash encoding + small MLP (Instant-NGP style).

``backend: torch`` is pure PyTorch (runs anywhere); ``triton`` runs the same encoding as one Triton kernel
per pass (CUDA, no extension to build); ``tcnn`` uses tiny-cuda-nn's fused encoding. Both fail with a clear
message when unavailable. ``auto``: tcnn when importable on CUDA, else triton on CUDA, else torch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from psdkit.config.schema import Schedule, knob
from psdkit.contracts import FieldOutput, ParamGroup, Representation
from psdkit.contracts.capabilities import DensityField
from psdkit.errors import PluginError
from psdkit.ops.hashgrid import hash_encode, level_resolutions
from psdkit.ops.hashgrid_triton import hash_encode_triton, triton_status


@dataclasses.dataclass(frozen=True)
class HashGridNeRFConfig:
    """Config of the hash-grid NeRF."""

    bound: float = knob(1.0, gt=0.0)
    """Half-size of the scene box [-bound, bound]^3."""
    levels: int = knob(12, ge=1, le=32)
    """L, number of resolution levels."""
    log2_table_size: int = knob(15, ge=8, le=24)
    """log2 T, entries per level."""
    features_per_level: int = knob(2, ge=1, le=8)
    """F, features per entry."""
    base_resolution: int = knob(16, ge=2, le=1 << 20)
    """Grid resolution of the coarsest level."""
    finest_resolution: int = knob(512, ge=2, le=1 << 20)
    """Grid resolution of the finest level."""
    init_scale: float = knob(1e-4, gt=0.0)
    """Table entries are initialised uniformly in [-init_scale, init_scale]."""
    hidden: int = knob(64, ge=8, le=4096)
    """Width of the MLP."""
    hidden_layers: int = knob(1, ge=1, le=8)
    """Number of hidden layers of the MLP."""
    density_activation: Literal["exp", "softplus"] = "softplus"
    """Activation turning the raw density into >= 0 density."""
    density_bias: float = -1.0
    """Constant added to the raw density."""
    blob_density: float = knob(10.0, ge=0.0)
    """Peak of the initial density blob at the origin (0 disables it)."""
    blob_radius: float = knob(0.5, gt=0.0)
    """Radius where the blob's contribution reaches zero."""
    lr_encoding: float = knob(1e-2, gt=0.0)
    """Learning rate of the hash tables."""
    lr_network: float = knob(1e-3, gt=0.0)
    """Learning rate of the MLP."""
    backend: Literal["torch", "triton", "tcnn", "auto"] = "torch"
    """Encoding implementation: pure torch, a Triton kernel, tiny-cuda-nn, or the fastest available."""
    triton_block: int = knob(128, ge=16, le=1024)
    """Points per Triton program (a power of two)."""

    def __post_init__(self) -> None:
        if self.finest_resolution < self.base_resolution:
            raise ValueError("finest_resolution must be >= base_resolution")
        if self.triton_block & (self.triton_block - 1):
            raise ValueError("triton_block must be a power of two")
        if self.backend == "triton" and self.features_per_level & (self.features_per_level - 1):
            raise ValueError("backend triton needs a power-of-two features_per_level (1, 2, 4 or 8)")


def _tcnn_available() -> bool:
    try:
        import tinycudann  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


class HashGridNeRF(Representation, DensityField):
    """Radiance field with a hash-grid encoding. Colour is view-independent; exports as a mesh."""

    Config = HashGridNeRFConfig

    def __init__(self, config: HashGridNeRFConfig) -> None:
        super().__init__(config)
        c = config
        self.resolutions = level_resolutions(c.levels, c.base_resolution, c.finest_resolution)
        self.backend = self._pick_backend(c.backend)
        size = 2**c.log2_table_size
        if self.backend == "tcnn":
            self.encoding = self._tcnn_encoding()
        else:
            table = torch.empty(c.levels, size, c.features_per_level).uniform_(-c.init_scale, c.init_scale)
            self.table = nn.Parameter(table)
        layers: list[nn.Module] = []
        width = c.levels * c.features_per_level
        for _ in range(c.hidden_layers):
            layers += [nn.Linear(width, c.hidden), nn.ReLU(inplace=True)]
            width = c.hidden
        layers.append(nn.Linear(width, 4))
        self.mlp = nn.Sequential(*layers)

    @staticmethod
    def _pick_backend(choice: str) -> str:
        if choice == "auto":
            return "tcnn" if _tcnn_available() else "auto"
        if choice == "tcnn" and not _tcnn_available():
            raise PluginError(
                "representation.config.backend: 'tcnn' needs tiny-cuda-nn and a CUDA GPU "
                "(install: pip install 'psdkit[cuda]' or see tiny-cuda-nn's README); "
                "use backend: torch (works everywhere) or auto"
            )
        return choice

    def _tcnn_encoding(self) -> nn.Module:
        import tinycudann as tcnn

        c = self.config
        growth = math.exp((math.log(c.finest_resolution) - math.log(c.base_resolution)) / max(c.levels - 1, 1))
        return tcnn.Encoding(
            3,
            {
                "otype": "HashGrid",
                "n_levels": c.levels,
                "n_features_per_level": c.features_per_level,
                "log2_hashmap_size": c.log2_table_size,
                "base_resolution": c.base_resolution,
                "per_level_scale": growth,
            },
        )

    @property
    def bound(self) -> float:
        return self.config.bound

    def encode(self, points: Tensor) -> Tensor:
        """[N, L * F] hash features of world-space ``points`` [N, 3]."""
        x = ((points / self.config.bound + 1) * 0.5).clamp(0, 1 - 1e-6)
        if self.backend == "tcnn":
            return self.encoding(x).float()
        if self.backend == "triton" or (self.backend == "auto" and x.is_cuda and triton_status(x.device) is None):
            why = triton_status(x.device)
            if why:
                raise PluginError(f"representation.config.backend: 'triton': {why}; use backend: torch or auto")
            return hash_encode_triton(x, self.table, self.resolutions, self.config.triton_block)
        return hash_encode(x, self.table, self.resolutions)

    def forward(self, points: Tensor, dirs: Tensor | None = None) -> FieldOutput:
        raw = self.mlp(self.encode(points))
        c = self.config
        pre = raw[:, 0] + c.density_bias
        if c.blob_density > 0:
            r = points.norm(dim=-1)
            pre = pre + c.blob_density * (1 - r / c.blob_radius)
        density = torch.exp(pre.clamp(max=15)) if c.density_activation == "exp" else F.softplus(pre)
        return FieldOutput(density=density, rgb=torch.sigmoid(raw[:, 1:]))

    def bytes_per_point(self) -> int:
        """Measured on CPU with the torch encoding and the volume renderer (docs/benchmarks.md, memory check):
        about 80 B + L (76 + 5 F) B + 5 B per hidden unit and layer."""
        c = self.config
        return 80 + c.levels * (76 + 5 * c.features_per_level) + 5 * c.hidden * c.hidden_layers

    def param_groups(self) -> list[ParamGroup]:
        """The hash table and the MLP, each at its own constant learning rate (the recipe's Adam settings)."""
        enc = list(self.encoding.parameters()) if self.backend == "tcnn" else [self.table]
        return [
            ParamGroup("encoding", enc, Schedule(self.config.lr_encoding)),
            ParamGroup("network", list(self.mlp.parameters()), Schedule(self.config.lr_network)),
        ]
