"""3D Gaussian splatting as a representation: a fixed number of slots, of which the active ones are drawn.

Slots make the structure change (densify, prune) a change of values, never of shapes: parameters, Adam's
state, checkpoints and DDP's gradient buckets keep their sizes, so resume is exact and every rank stays in
step. Adaptive density control (``_density_control.py``) runs before a step on statistics that
:meth:`Gaussians3D.after_backward` folds in, summed over ranks, after each backward.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import Tensor, nn

from psdkit.config.schema import Schedule, knob
from psdkit.contracts import FieldOutput, ParamGroup, Representation
from psdkit.contracts.capabilities import DensityField, Gaussians, GaussianSet, RawGaussians
from psdkit.ops.ddp import global_sum
from psdkit.ops.gaussians import SH_C0, covariance
from psdkit_plugins.representations import _density_control, _gaussian_init


@dataclasses.dataclass(frozen=True)
class GaussiansConfig:
    """Config of the Gaussian splatting representation."""

    capacity: int = knob(20_000, ge=1, le=50_000_000)
    """Most Gaussians at once (slots); densification stops adding when every slot is used."""
    init: Literal["ball", "shell", "ply", "run"] = "ball"
    """Initial Gaussians: uniform in a ball, on a sphere shell, from a point cloud or 3DGS .ply file
    (``init_path``), or sampled where a finished run's field (another representation) is dense."""
    init_count: int = knob(2_000, ge=1, le=50_000_000)
    """Gaussians to start with (ball, shell, run; a .ply brings its own)."""
    init_radius: float = knob(0.5, gt=0.0)
    """Radius of the ball or shell, world units."""
    init_path: str | None = None
    """The .ply file (init: ply) or run directory (init: run)."""
    init_scale: float = knob(0.03, gt=0.0)
    """Initial standard deviation of each Gaussian, world units."""
    init_opacity: float = knob(0.1, gt=0.0, lt=1.0)
    """Initial opacity."""
    init_color: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """Initial colour (ball, shell, and a .ply without colours)."""
    sh_degree: int = knob(0, ge=0, le=3)
    """Degree of the spherical-harmonic colours (0: view-independent)."""
    bound: float = knob(1.0, gt=0.0)
    """Half-size of the scene box; centres are kept inside it."""
    lr_means: Schedule = knob(Schedule(1e-3), ge=0.0)
    """Learning rate of the centres (world units)."""
    lr_scales: Schedule = knob(Schedule(5e-3), ge=0.0)
    """Learning rate of the log standard deviations."""
    lr_quats: Schedule = knob(Schedule(1e-3), ge=0.0)
    """Learning rate of the rotations."""
    lr_opacities: Schedule = knob(Schedule(5e-2), ge=0.0)
    """Learning rate of the opacity logits."""
    lr_sh: Schedule = knob(Schedule(2.5e-2), ge=0.0)
    """Learning rate of the SH coefficients."""
    densify_from: int = knob(100, ge=0)
    """First step of adaptive density control."""
    densify_until: int = knob(1_500, ge=0)
    """No densification or opacity reset from this step on."""
    densify_every: int = knob(100, ge=1)
    """Steps between densifications."""
    grad_threshold: float = knob(2e-4, gt=0.0)
    """Densify Gaussians whose mean screen-space gradient (normalized device units) reaches this."""
    grad_quantile: float = knob(0.0, ge=0.0, lt=1.0)
    """If above 0, the threshold is also at least this quantile of the active Gaussians' mean gradients (0.9:
    at most the top tenth densify each time); the gradients' scale depends on the loss, a quantile does not."""
    dense_fraction: float = knob(0.01, gt=0.0)
    """Split a densified Gaussian larger than this fraction of the scene's extent (2 x bound); clone a smaller
    one."""
    split_shrink: float = knob(1.6, gt=1.0)
    """A split Gaussian's two halves have its standard deviations divided by this."""
    prune_opacity: float = knob(0.005, ge=0.0, lt=1.0)
    """Prune Gaussians less opaque than this at each densification."""
    prune_scale: float = knob(0.1, gt=0.0)
    """... or larger than this fraction of the scene's extent."""
    opacity_reset_every: int = knob(0, ge=0)
    """Clamp every opacity down to ``opacity_reset_value`` this often within the densification window
    (0: never)."""
    opacity_reset_value: float = knob(0.01, gt=0.0, lt=1.0)
    """The opacity a reset clamps to."""
    max_scale: float = knob(0.1, gt=0.0)
    """Largest standard deviation of a Gaussian, world units (larger ones are clamped: a splat over the whole
    image costs as much as hundreds of small ones)."""
    filter_3d: float = knob(0.0, ge=0.0)
    """Standard deviation (world units) of a 3D smoothing filter convolved with every Gaussian (Mip-Splatting's
    3D filter): scales become sqrt(s^2 + f^2) and opacities shrink to keep each Gaussian's integral, so no
    Gaussian is finer than the training views can constrain; renders at higher resolutions than training then
    show no speckle. 0: off."""
    field_sigmas: float = knob(3.0, gt=0.0)
    """Field view: a Gaussian contributes within this many standard deviations."""
    density_scale: float = knob(50.0, gt=0.0)
    """Volume density of the field view (mesh export) at an opaque Gaussian's centre, 1 / world units."""

    def __post_init__(self) -> None:
        if self.init in ("ply", "run") and not self.init_path:
            raise ValueError(
                f"init_path: init {self.init!r} needs a {'.ply file' if self.init == 'ply' else 'run directory'}"
            )
        if not all(0.0 <= c <= 1.0 for c in self.init_color):
            raise ValueError(f"init_color: each channel must be in [0, 1], got {self.init_color}")


class Gaussians3D(Representation, DensityField, GaussianSet):
    """3D Gaussians (centres, scales, rotations, opacities, SH colours) in a fixed number of slots."""

    Config = GaussiansConfig
    active: Tensor
    """[C] which slots hold a Gaussian (a buffer)."""
    grad_accum: Tensor
    """[C] summed screen-space gradient norms since the last densification (a buffer)."""
    grad_count: Tensor
    """[C] views that saw each Gaussian since the last densification (a buffer)."""

    def __init__(self, config: GaussiansConfig) -> None:
        super().__init__(config)
        c = config
        k = (c.sh_degree + 1) ** 2
        self.means = nn.Parameter(torch.zeros(c.capacity, 3))
        self.log_scales = nn.Parameter(torch.full((c.capacity, 3), math.log(c.init_scale)))
        self.quats = nn.Parameter(torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(c.capacity, 1))
        self.opacity_logits = nn.Parameter(torch.full((c.capacity,), math.log(c.init_opacity / (1 - c.init_opacity))))
        self.sh = nn.Parameter(torch.zeros(c.capacity, k, 3))
        self.register_buffer("active", torch.zeros(c.capacity, dtype=torch.bool))
        self.register_buffer("grad_accum", torch.zeros(c.capacity))
        self.register_buffer("grad_count", torch.zeros(c.capacity))
        self._pending: tuple[Tensor, Tensor] | None = None
        _gaussian_init.initialize(self, c)

    @property
    def bound(self) -> float:
        return self.config.bound

    # ---- the Gaussians ------------------------------------------------------------------------
    def gaussians(self) -> Gaussians:
        """The active slots' Gaussians (scales capped at ``max_scale``, smoothed by ``filter_3d``)."""
        ids = self.active.nonzero().squeeze(1)
        scales = self.log_scales[ids].clamp_max(math.log(self.config.max_scale)).exp()
        opacities = torch.sigmoid(self.opacity_logits[ids])
        f = self.config.filter_3d
        if f > 0:
            smoothed = (scales**2 + f**2).sqrt()
            opacities = opacities * (scales / smoothed).prod(-1)
            scales = smoothed
        return Gaussians(
            means=self.means[ids], scales=scales, quats=self.quats[ids], opacities=opacities, sh=self.sh[ids], ids=ids
        )

    def set_gaussians(self, means: Tensor, scales: Tensor, opacities: Tensor, rgb: Tensor | None) -> None:
        """Fill the first len(means) slots (the rest inactive): centres [N, 3], standard deviations [N, 3],
        opacities [N] in (0, 1), colours [N, 3] in [0, 1] (None: ``init_color``). Rotations start at identity."""
        n = len(means)
        if n > self.config.capacity:
            raise ValueError(f"{n} Gaussians do not fit in capacity {self.config.capacity}")
        with torch.no_grad():
            self.means[:n] = means
            self.log_scales[:n] = scales.clamp_min(1e-8).log()
            self.quats[:n] = torch.tensor([1.0, 0.0, 0.0, 0.0])
            o = opacities.clamp(1e-6, 1 - 1e-6)
            self.opacity_logits[:n] = torch.log(o / (1 - o))
            col = torch.tensor(self.config.init_color).expand(n, 3) if rgb is None else rgb
            self.sh.zero_()
            self.sh[:n, 0] = (col - 0.5) / SH_C0
            self.active.zero_()
            self.active[:n] = True

    def raw_gaussians(self) -> RawGaussians:
        """The active slots' parameters as stored, on the CPU."""
        ids = self.active.nonzero().squeeze(1)
        return RawGaussians(
            *(
                p.detach()[ids].cpu().clone()
                for p in (self.means, self.log_scales, self.quats, self.opacity_logits, self.sh)
            )
        )

    def load_raw_gaussians(self, raw: RawGaussians) -> None:
        """Fill the first slots with ``raw`` exactly (SH degrees beyond ``sh_degree`` are dropped)."""
        n, c = len(raw.means), self.config
        if n > c.capacity:
            raise ValueError(f"{n} Gaussians do not fit in capacity {c.capacity} (representation.config.capacity)")
        k = min(raw.sh.shape[1], self.sh.shape[1])
        with torch.no_grad():
            for p, v in ((self.means, raw.means), (self.log_scales, raw.log_scales), (self.quats, raw.quats)):
                p[:n] = v.to(p)
            self.opacity_logits[:n] = raw.opacity_logits.to(self.opacity_logits)
            self.sh.zero_()
            self.sh[:n, :k] = raw.sh[:, :k].to(self.sh)
            self.active.zero_()
            self.active[:n] = True

    def count(self) -> int:
        """Active Gaussians."""
        return int(self.active.sum())

    # ---- adaptive density control -----------------------------------------------------------------
    def record_view_grad(self, ids: Tensor, grad_norm: Tensor) -> None:
        """Add one view's gradient norms to this step's pending statistics (non-finite values count as 0)."""
        g = torch.nan_to_num(grad_norm.detach().float(), nan=0.0, posinf=0.0)
        if self._pending is None:
            self._pending = (torch.zeros_like(self.grad_accum), torch.zeros_like(self.grad_count))
        self._pending[0].index_add_(0, ids, g)
        self._pending[1].index_add_(0, ids, torch.ones_like(g))

    def after_backward(self) -> None:
        """Fold this step's screen-space gradient statistics into the buffers, summed over ranks (each rank
        then holds the same statistics and makes the same densification decision)."""
        if self._pending is None:
            return
        accum, count = self._pending
        self._pending = None
        self.grad_accum += global_sum(accum)
        self.grad_count += global_sum(count)

    def restructure(self, step: int, generator: torch.Generator) -> list[tuple[nn.Parameter, Tensor]]:
        """Adaptive density control when due (``_density_control.step``)."""
        return _density_control.step(self, step, generator)

    # ---- the field view (mesh export) --------------------------------------------------------------
    def forward(self, points: Tensor, dirs: Tensor | None = None) -> FieldOutput:
        """Density ``density_scale * sum_i o_i G_i(x)`` and the G-weighted mean of the Gaussians' base colours;
        each Gaussian counts within ``field_sigmas`` standard deviations (pairs found by distance first)."""
        g = self.gaussians()
        prec = torch.linalg.inv(covariance(g.scales, g.quats))  # [N, 3, 3]
        rgb_g = (SH_C0 * g.sh[:, 0] + 0.5).clamp(0, 1)
        reach = (self.config.field_sigmas * g.scales.amax(-1)) ** 2  # [N]
        dens, cols = [], []
        for chunk in points.split(4096):
            near = (torch.cdist(chunk, g.means) ** 2 < reach).nonzero()  # [M, 2] (point, Gaussian)
            p, n = near[:, 0], near[:, 1]
            d = chunk[p] - g.means[n]
            w = g.opacities[n] * torch.exp(-0.5 * torch.einsum("mi,mij,mj->m", d, prec[n], d))
            total = torch.zeros(len(chunk), dtype=w.dtype, device=w.device).index_add(0, p, w)
            col = torch.zeros(len(chunk), 3, dtype=w.dtype, device=w.device).index_add(0, p, w[:, None] * rgb_g[n])
            dens.append(self.config.density_scale * total)
            cols.append(col / total.clamp_min(1e-12)[:, None])
        if not dens:
            return FieldOutput(points.new_zeros(0), points.new_zeros(0, 3))
        return FieldOutput(torch.cat(dens), torch.cat(cols).clamp(0, 1))

    def param_groups(self) -> list[ParamGroup]:
        """One group per attribute, each at its learning rate, without weight decay."""
        c = self.config
        groups = [
            ("means", self.means, c.lr_means),
            ("scales", self.log_scales, c.lr_scales),
            ("quats", self.quats, c.lr_quats),
            ("opacities", self.opacity_logits, c.lr_opacities),
            ("sh", self.sh, c.lr_sh),
        ]
        return [ParamGroup(name, [p], lr, weight_decay=0.0) for name, p, lr in groups]
