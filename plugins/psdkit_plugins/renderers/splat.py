"""Splat renderer: 3D Gaussians rasterized by alpha compositing (pure torch, or gsplat on CUDA)."""

from __future__ import annotations

import dataclasses
import importlib.util
import warnings
from typing import Literal

import torch
from torch import Tensor

from psdkit.config.schema import knob
from psdkit.contracts import Background, Cameras, Renderer, RenderOutput, Representation
from psdkit.contracts.capabilities import GaussianSet
from psdkit.errors import PluginError, PsdkitWarning
from psdkit.ops.opacity import opacity_terms
from psdkit_plugins.renderers import _splat_torch
from psdkit_plugins.renderers._splat_torch import Raster


@dataclasses.dataclass(frozen=True)
class SplatRendererConfig:
    """Config of the splat renderer."""

    backend: Literal["auto", "torch", "gsplat"] = "auto"
    """torch: exact, any device (CPUs, tests, small images); gsplat: the CUDA library (pip install
    'psdkit[gsplat]'); auto: gsplat on a CUDA device when it is installed, else torch."""
    eps2d: float = knob(0.3, ge=0.0)
    """Variance (px^2) added to each projected covariance: a low-pass filter (gsplat's default)."""
    near: float = knob(0.01, gt=0.0)
    """Gaussians closer to the camera plane than this (world units) are not drawn."""
    tile_size: int = knob(16, ge=1, le=256)
    """gsplat backend: side of its square tiles, pixels."""
    alpha_min: float = knob(1 / 255, ge=0.0, lt=1.0)
    """A Gaussian's alpha below this at a pixel counts as 0 (gsplat's)."""
    alpha_max: float = knob(0.99, gt=0.0, le=1.0)
    """Largest alpha of one Gaussian at a pixel."""
    transmittance_min: float = knob(1e-4, ge=0.0, lt=1.0)
    """Stop compositing a pixel once its transmittance falls below this."""
    opacity_sparsity: float = knob(0.0, ge=0.0)
    """Weight of the mean opacity of training renders (discourages floaters)."""
    opacity_entropy: float = knob(0.0, ge=0.0)
    """Weight of the binary entropy of training renders' opacity (pushes alpha to 0 or 1: an opaque surface
    instead of a translucent cloud)."""
    radius_sigmas: float = knob(0.0, ge=0.0)
    """torch backend: if above 0, a Gaussian is drawn within at most this many standard deviations (gsplat's
    tiles: 3); 0 draws it wherever its alpha reaches ``alpha_min`` (exact)."""

    def __post_init__(self) -> None:
        if self.backend == "gsplat":
            why = gsplat_unavailable()
            if why:
                raise ValueError(why)


def gsplat_unavailable() -> str | None:
    """Why the gsplat backend cannot run here, or None."""
    if importlib.util.find_spec("gsplat") is None:
        return (
            "backend: 'gsplat' needs the gsplat package: pip install 'psdkit[gsplat]' (CUDA only), "
            "or use backend: torch"
        )
    if not torch.cuda.is_available():
        return "backend: 'gsplat' needs CUDA, and this machine has no CUDA device: use backend: torch (or auto)"
    return None


class SplatRenderer(Renderer):
    """Alpha-composited 3D Gaussians, front to back; draws representations that are a GaussianSet."""

    Config = SplatRendererConfig
    requires = (GaussianSet,)
    _warned = False

    def raster(self) -> Raster:
        """The rasterization constants."""
        c = self.config
        return Raster(c.eps2d, c.near, c.tile_size, c.alpha_min, c.alpha_max, c.transmittance_min, c.radius_sigmas)

    def regularizers(self, out: RenderOutput) -> dict[str, Tensor]:
        """``sparsity`` and ``entropy`` of the render's opacity, where their weights are positive."""
        return opacity_terms(out.opacity, self.config.opacity_sparsity, self.config.opacity_entropy)

    def use_gsplat(self, device: torch.device) -> bool:
        """Whether this call runs on gsplat (warns once when ``auto`` falls back to torch on a CUDA device)."""
        if self.config.backend == "gsplat":
            return True
        if self.config.backend != "auto" or device.type != "cuda":
            return False
        why = gsplat_unavailable()
        if why and not self._warned:
            self._warned = True
            warnings.warn(
                f"renderer splat: the pure-torch rasterizer runs on CUDA, slowly at high resolution ({why})",
                PsdkitWarning,
                stacklevel=2,
            )
        return why is None

    def forward(
        self,
        field: Representation,
        cameras: Cameras,
        background: Background,
        generator: torch.Generator | None = None,
    ) -> RenderOutput:
        if not isinstance(field, GaussianSet):
            raise PluginError(f"renderer splat draws Gaussians; {type(field).__name__} is not a GaussianSet")
        g = field.gaussians()
        if self.use_gsplat(g.means.device):
            from psdkit_plugins.renderers import _splat_gsplat

            rgb, alpha, depth = _splat_gsplat.rasterize(field, g, cameras, self.raster())
        else:
            rgb, alpha, depth = _splat_torch.rasterize(field, g, cameras, self.raster())
        _, dirs = cameras.rays()
        bg = background(dirs, generator).permute(0, 3, 1, 2).to(rgb)
        out = rgb + (1 - alpha) * bg
        return RenderOutput(out, alpha, depth * (alpha > 0), stats={"gaussians": float(len(g.means))})
