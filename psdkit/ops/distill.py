"""Score-distillation arithmetic shared by guidance strategies."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from torch import Tensor

Weighting = Literal["sds", "uniform", "sqrt_snr_inv"]
RescaleIn = Literal["native", "x0"]


def sample_timesteps(n: int, lo: float, hi: float, num_train_timesteps: int, generator: torch.Generator) -> Tensor:
    """[n] integer timesteps uniform in ``[lo * T, hi * T]`` (fractions of T), on the CPU."""
    t_lo = int(round(lo * (num_train_timesteps - 1)))
    t_hi = max(int(round(hi * (num_train_timesteps - 1))), t_lo)
    return torch.randint(t_lo, t_hi + 1, (n,), generator=generator)


def draw_noise(
    generator: torch.Generator,
    shape: tuple[int, ...],
    lo: float,
    hi: float,
    num_train_timesteps: int,
    offset: int = 0,
    global_batch: int | None = None,
    copies: int = 1,
    group: int = 1,
) -> tuple[Tensor, Tensor]:
    """Timesteps [copies * B] and noise [copies * B, ...] for rows ``offset : offset + B`` of a global batch.

    Draws for the whole global batch and slices, so the samples a rank gets do not depend on the
    number of ranks. ``copies`` independent noise draws share each sample's timestep, and each ``group`` of
    consecutive rows (the views of one object for a multi-view prior) one timestep.
    """
    b = shape[0]
    total = global_batch or b
    rows = slice(offset, offset + b)
    if total % group:
        raise ValueError(f"a batch of {total} views is not whole groups of {group} (the prior's views_per_group)")
    t = sample_timesteps(total // group, lo, hi, num_train_timesteps, generator).repeat_interleave(group)[rows]
    eps = [torch.randn((total, *shape[1:]), generator=generator)[rows] for _ in range(copies)]
    return t.repeat(copies), torch.cat(eps)


def timestep_weight(kind: Weighting, alpha: Tensor, sigma: Tensor) -> Tensor:
    """w(t) [B]: ``sds`` = sigma^2 (DreamFusion), ``uniform`` = 1, ``sqrt_snr_inv`` = sigma / alpha
    (LucidDreamer)."""
    if kind == "sds":
        return sigma**2
    if kind == "uniform":
        return torch.ones_like(sigma)
    return sigma / alpha


def ddim_step(prior: Any, x: Tensor, t_from: Tensor, t_to: Tensor, eps: Tensor) -> Tensor:
    """Deterministic DDIM move of ``x`` [B, ...] from ``t_from`` to ``t_to`` [B] with noise estimate ``eps``."""
    a0, s0 = prior.alpha_sigma(t_from)
    a1, s1 = prior.alpha_sigma(t_to)
    x0 = (x - broadcast(s0, x) * eps) / broadcast(a0, x)
    return broadcast(a1, x) * x0 + broadcast(s1, x) * eps


def group_mean(v: Tensor, group: int) -> Tensor:
    """[B] the mean of each run of ``group`` consecutive entries of ``v`` [B] (the views of one object of a
    multi-view prior), repeated over the run: per-object statistics for strategies that compare or normalize."""
    if group == 1:
        return v
    return v.reshape(-1, group).mean(1).repeat_interleave(group)


def residual_loss(z: Tensor, grad: Tensor) -> Tensor:
    """Scalar loss whose gradient with respect to ``z`` [B, ...] is ``grad / B``.

    The usual reparameterization ``0.5 * ||z - sg(z - grad)||^2 / B``.
    """
    target = (z - grad).detach()
    return 0.5 * ((z - target) ** 2).sum() / z.shape[0]


def broadcast(v: Tensor, like: Tensor) -> Tensor:
    """Reshape [B] to [B, 1, 1, ...] to broadcast against ``like``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def to_native(eps: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor, kind: str) -> Tensor:
    """eps [B, ...] -> the prior's native prediction at ``x_t`` [B, ...] (``alpha``, ``sigma``: [B]).

    ``epsilon``: eps; ``v_prediction``: ``v = (eps - sigma x_t) / alpha``; ``sample``: ``x0 = (x_t - sigma eps) /
    alpha``. The inverse of :func:`from_native`.
    """
    a, s = broadcast(alpha, x_t), broadcast(sigma, x_t)
    if kind == "epsilon":
        return eps
    if kind == "v_prediction":
        return (eps - s * x_t) / a
    if kind == "sample":
        return (x_t - s * eps) / a
    raise ValueError(f"unknown prediction type {kind!r}")


def from_native(out: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor, kind: str) -> Tensor:
    """The network's native prediction ``out`` [B, ...] -> eps (``eps = alpha v + sigma x_t`` for v,
    ``(x_t - alpha x0) / sigma`` for x0)."""
    a, s = broadcast(alpha, x_t), broadcast(sigma, x_t)
    if kind == "epsilon":
        return out
    if kind == "v_prediction":
        return a * out + s * x_t
    if kind == "sample":
        return (x_t - a * out) / s
    raise ValueError(f"unknown prediction type {kind!r}")


@dataclasses.dataclass(frozen=True)
class NativeSpace:
    """Where CFG rescale is computed: the prior's native prediction space at one ``x_t`` and ``t``.

    CFG itself is affine, so it is the same in every space; rescale divides standard deviations, so it
    is not, and diffusers (``rescale_noise_cfg``) and Lin et al. apply it to the network's raw output.
    """

    kind: str
    x_t: Tensor
    """[B, ...]."""
    alpha: Tensor
    """[B]."""
    sigma: Tensor
    """[B]."""
    group: int = 1
    """Consecutive rows that are views of one object (a multi-view prior's group): rescale matches the
    standard deviation of the whole group, as MVDream does."""

    def to_native(self, eps: Tensor) -> Tensor:
        """eps -> native prediction."""
        return to_native(eps, self.x_t, self.alpha, self.sigma, self.kind)

    def from_native(self, out: Tensor) -> Tensor:
        """native prediction -> eps."""
        return from_native(out, self.x_t, self.alpha, self.sigma, self.kind)


def guide(
    eps_base: Tensor, eps_cond: Tensor, scale: float, rescale: float = 0.0, space: NativeSpace | None = None
) -> Tensor:
    """Classifier-free guidance ``eps_base + scale * (eps_cond - eps_base)`` [B, ...], then ``rescale_cfg``."""
    return rescale_cfg(eps_base + scale * (eps_cond - eps_base), eps_cond, rescale, space)


def rescale_cfg(guided: Tensor, eps_cond: Tensor, phi: float, space: NativeSpace | None = None) -> Tensor:
    """CFG rescale (Lin et al. 2024, https://arxiv.org/abs/2305.08891, eq. 15-16) of ``guided`` [B, ...].

    Blends ``guided`` with itself rescaled per sample to the standard deviation of ``eps_cond``, which undoes
    the over-saturation a large guidance scale causes. ``phi`` in [0, 1]; 0 returns ``guided`` unchanged.
    With ``space`` (a v- or x0-predicting prior) the rescale runs on the native predictions, as diffusers'
    ``rescale_noise_cfg`` does, and the result is converted back to eps; None means eps space. A ``space`` of
    kind ``sample`` rescales x0 (MVDream's ``recon_std_rescale``); its ``group`` pools the std over the views of
    one object.
    """
    if phi == 0.0:
        return guided
    if space is None:
        return _rescale(guided, eps_cond, phi)
    if space.kind == "epsilon":
        return _rescale(guided, eps_cond, phi, space.group)
    return space.from_native(_rescale(space.to_native(guided), space.to_native(eps_cond), phi, space.group))


def _rescale(guided: Tensor, cond: Tensor, phi: float, group: int = 1) -> Tensor:
    """Blend of ``guided`` [B, ...] and ``guided`` scaled to ``cond``'s std over each ``group`` of rows."""
    g, c = guided.reshape(guided.shape[0] // group, -1), cond.reshape(cond.shape[0] // group, -1)
    ratio = (c.std(dim=1, keepdim=True) / g.std(dim=1, keepdim=True).clamp_min(1e-8)).repeat_interleave(group, 0)
    return phi * guided * broadcast(ratio.squeeze(1), guided) + (1.0 - phi) * guided


def predict_many(
    prior: Any, x_t: Tensor, t: Tensor, embeddings: list[Tensor], cameras: Any, batched: bool = True
) -> list[Tensor]:
    """eps for each text embedding [B, L, D] at the same ``x_t`` [B, ...] and ``t`` [B].

    ``batched`` runs all conditionings in one prior call (one UNet launch for real priors).
    """
    n = len(embeddings)
    if not batched or n == 1:
        return [prior.predict_noise(x_t, t, e, cameras) for e in embeddings]
    reps = (n, *([1] * (x_t.dim() - 1)))
    out = prior.predict_noise(x_t.repeat(reps), t.repeat(n), torch.cat(embeddings), cameras.repeat(n))
    return list(out.chunk(n))


@dataclasses.dataclass
class Noised:
    """Latents of the renders and their forward-noised copies for one step."""

    z: Tensor
    """[B, ...] latents, differentiable with respect to the 3D representation."""
    t: Tensor
    """[copies * B] integer timesteps."""
    eps: Tensor
    """[copies * B, ...] the injected noise."""
    alpha: Tensor
    """[copies * B]."""
    sigma: Tensor
    """[copies * B]."""
    x_t: Tensor
    """[copies * B, ...] ``alpha * sg(z) + sigma * eps`` (no gradient to the representation)."""

    prediction_type: str = "epsilon"
    """The prior's ``prediction_type`` (what its network natively predicts)."""
    group: int = 1
    """The prior's ``views_per_group``."""

    @property
    def space(self) -> NativeSpace:
        """The prior's native prediction space at ``x_t`` and ``t`` (where CFG rescale is computed)."""
        return self.rescale_space("native")

    def rescale_space(self, where: str) -> NativeSpace:
        """Where CFG rescale runs: ``native`` (the prior's prediction) or ``x0``, pooled over each group."""
        kind = "sample" if where == "x0" else self.prediction_type
        return NativeSpace(kind, self.x_t, self.alpha, self.sigma, self.group)

    @property
    def z_copies(self) -> Tensor:
        """``z`` repeated once per noise copy: [copies * B, ...]."""
        return self.z.repeat(self.t.shape[0] // self.z.shape[0], *([1] * (self.z.dim() - 1)))


def forward_noise(prior: Any, inp: Any, t_lo: float, t_hi: float, copies: int = 1) -> Noised:
    """Encode ``inp.images`` and noise them at timesteps in ``[t_lo, t_hi]`` (fractions of T).

    Randomness comes from ``inp.generator`` for this rank's slice of the global batch.
    """
    z = prior.encode_images(inp.images)
    t, eps = draw_noise(
        inp.generator,
        tuple(z.shape),
        t_lo,
        t_hi,
        prior.num_train_timesteps,
        inp.batch_offset,
        inp.global_batch,
        copies,
        prior.views_per_group(),
    )
    t, eps = t.to(z.device), eps.to(z)
    alpha, sigma = prior.alpha_sigma(t)
    z_rep = z.detach().repeat(copies, *([1] * (z.dim() - 1)))
    x_t = broadcast(alpha, z_rep) * z_rep + broadcast(sigma, z_rep) * eps
    return Noised(z, t, eps, alpha, sigma, x_t, prior.prediction_type, prior.views_per_group())
