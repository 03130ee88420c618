"""An exact, closed-form diffusion prior over the analytic world (no weights).

The clean image seen from camera c is a Gaussian mixture centred on exact renders of the world's
objects: ``p(x0 | c, e) = sum_k w_k(e) N(x0; mu_k(c), s^2 I)`` in pixel space scaled to [-1, 1].
With ``x_t = a x0 + sigma eps`` the noise prediction is the exact posterior mean
``E[eps | x_t] = sigma / v * (x_t - a * sum_k r_k mu_k)``, ``v = a^2 s^2 + sigma^2``, with
responsibilities ``r_k ∝ w_k N(x_t; a mu_k, v I)``. The weights are ``softmax(tau * <e, key_k>)``
summed over tokens, so the empty prompt (zero embedding) gives uniform weights and ``eps`` is
differentiable in the text embedding ``e`` like Stable Diffusion's.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from psdkit.config.schema import knob
from psdkit.contracts import Cameras, DiffusionPrior
from psdkit.contracts.capabilities import KnownObjects
from psdkit.contracts.prior import CumprodSchedule
from psdkit.world.objects import DEFAULT_OBJECTS, WORLD_OBJECTS, answering, render_objects
from psdkit.world.text import TinyTextEncoder


@dataclasses.dataclass(frozen=True)
class AnalyticPriorConfig:
    """Config of the analytic prior."""

    resolution: int = knob(32, ge=8, le=256)
    """Side of the square pixel space the prior works in; renders are resized to it."""
    component_std: float = knob(0.1, gt=0.0, le=2.0)
    """s, standard deviation of each mixture component in [-1, 1] pixel units."""
    temperature: float = knob(4.0, ge=0.0)
    """tau, scale of the text-to-weight logits (0 ignores the text)."""
    num_train_timesteps: int = knob(1000, ge=10)
    """T, number of discrete timesteps."""
    beta_start: float = knob(0.00085, gt=0.0, lt=1.0)
    """First beta of the scaled-linear schedule (Stable Diffusion's)."""
    beta_end: float = knob(0.012, gt=0.0, lt=1.0)
    """Last beta of the scaled-linear schedule."""
    objects: tuple[str, ...] = ()
    """Names of the world objects in the mixture (any of psdkit.world.WORLD_OBJECTS); empty: the four default
    ones (red and blue sphere, green and purple cube)."""
    token_dim: int = knob(16, ge=8, le=4096)
    """D, the text-embedding width."""
    max_tokens: int = knob(8, ge=1, le=4096)
    """L, the text-embedding length."""
    supersample: int = knob(2, ge=1, le=4)
    """Anti-aliasing factor of the object renders."""
    resize: Literal["area", "bilinear"] = "area"
    """How renders are resized to ``resolution``."""
    joint_views: int = knob(1, ge=1, le=1024)
    """Views denoised jointly (the analytic counterpart of MVDream's cross-view attention): each group of this
    many consecutive views of a batch shares one posterior over the objects, from their summed
    log-likelihoods, so no view of a group can take another answer than the rest. 1: each view on its own."""
    joint_evidence: Literal["mean", "sum"] = "mean"
    """How a group's log-likelihoods combine: sum (the exact posterior of one object seen N times: as sharp as
    one view at N times less noise variance, so the text weights, and with them CFG and PSD's negative
    embedding, matter only at higher noise) or mean (the views share the decision with one view's
    sharpness: coupling without sharpening; docs/analytic_world.md)."""

    render_cache: int = knob(1024, ge=1)
    """Cameras whose exact object renders are kept (least recently used dropped first): the replay pool's and
    the step's cameras."""

    def __post_init__(self) -> None:
        known = {o.name for o in WORLD_OBJECTS}
        bad = [n for n in self.objects if n not in known]
        if bad:
            raise ValueError(f"objects: unknown {bad}; known: {sorted(known)}")


class AnalyticPrior(KnownObjects, CumprodSchedule, DiffusionPrior):
    """Closed-form Gaussian-mixture prior over the analytic world's renders."""

    Config = AnalyticPriorConfig
    keys: Tensor
    """[K, D] text key of each object (a buffer)."""

    def __init__(self, config: AnalyticPriorConfig) -> None:
        super().__init__(config)
        chosen = set(config.objects)
        self.objects = tuple(o for o in WORLD_OBJECTS if o.name in chosen) if chosen else DEFAULT_OBJECTS
        vocab = sorted({w for o in self.objects for w in o.words})
        self.text = TinyTextEncoder(vocab, config.max_tokens, config.token_dim)
        self.register_buffer("keys", self.text.keys([o.words for o in self.objects]))
        betas = (
            torch.linspace(
                math.sqrt(config.beta_start),
                math.sqrt(config.beta_end),
                config.num_train_timesteps,
                dtype=torch.float64,
            )
            ** 2
        )
        self.register_buffer("alphas_cumprod", torch.cumprod(1 - betas, 0).float())
        self._cache: OrderedDict[tuple[bytes, bytes], Tensor] = OrderedDict()

    @classmethod
    def sample_shape(cls, config: AnalyticPriorConfig) -> tuple[int, ...]:
        """[3, r, r]: pixels at ``resolution``."""
        return (3, config.resolution, config.resolution)

    def encode_text(self, prompts: list[str]) -> Tensor:
        return self.text(prompts).to(self.keys.device)

    def encode_images(self, images: Tensor) -> Tensor:
        r = self.config.resolution
        if images.shape[-2:] != (r, r):
            mode = self.config.resize
            images = F.interpolate(images, (r, r), mode=mode, **({} if mode == "area" else {"align_corners": False}))
        return images * 2 - 1

    def decode(self, latents: Tensor) -> Tensor:
        return (latents * 0.5 + 0.5).clamp(0, 1)

    def mixture_weights(self, text_emb: Tensor) -> Tensor:
        """[B, K] mixture weights for text embeddings [B, L, D]."""
        logits = self.config.temperature * torch.einsum("bld,kd->bk", text_emb, self.keys)
        return logits.softmax(-1)

    def means(self, cameras: Cameras) -> Tensor:
        """[K, B, 3, r, r] component means (object renders in [-1, 1]), cached per camera.

        The cache key is each camera's values themselves (not tensor identity: a new batch can reuse a freed
        tensor's memory), so a hit is always the same pose and field of view. The ``render_cache`` most recently
        used cameras are kept (the replay pool's cameras come back on every e_n update).
        """
        r = self.config.resolution
        c2w, fov = cameras.c2w.detach().cpu(), cameras.fov_y.detach().cpu()
        keys = [(c2w[i].numpy().tobytes(), fov[i].numpy().tobytes()) for i in range(len(cameras))]
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if missing:
            rows = [keys.index(k) for k in missing]
            picked = {f: getattr(cameras, f)[rows] for f in ("c2w", "fov_y", "elevation", "azimuth", "distance")}
            cams = dataclasses.replace(cameras, **picked).resized(r, r)
            mu = (render_objects(self.objects, cams, self.config.supersample) * 2 - 1).to(self.keys.device)
            for k, m in zip(missing, mu.unbind(1)):
                self._cache[k] = m
        for k in keys:
            self._cache.move_to_end(k)
        while len(self._cache) > self.config.render_cache:
            self._cache.popitem(last=False)
        return torch.stack([self._cache[k] for k in keys], 1)

    def predict_noise(self, x_t: Tensor, t: Tensor, text_emb: Tensor, cameras: Cameras | None = None) -> Tensor:
        if cameras is None:
            raise ValueError("the analytic prior needs cameras: its data depend on the view")
        mu = self.means(cameras).to(x_t.dtype)  # [K, B, C, h, w]
        alpha, sigma = (v.view(1, -1, 1, 1, 1) for v in self.alpha_sigma(t))
        var = alpha**2 * self.config.component_std**2 + sigma**2
        sq = ((x_t.unsqueeze(0) - alpha * mu) ** 2).flatten(2).sum(-1)  # [K, B]
        log_w = self.mixture_weights(text_emb).T.clamp_min(1e-30).log()  # [K, B]
        c = self.config
        resp = joint_posterior(log_w, -sq / (2 * var.view(1, -1)), c.joint_views, c.joint_evidence)  # [K, B]
        mean_mu = torch.einsum("kb,kbchw->bchw", resp, mu)
        return (sigma[0] / var[0]) * (x_t - alpha[0] * mean_mu)

    def views_per_group(self) -> int:
        """``joint_views``: a group's views share a timestep and a posterior."""
        return self.config.joint_views

    def references(self, cameras: Cameras) -> dict[str, Tensor]:
        """Exact renders [B, 3, H, W] of every world object in the mixture, by name."""
        imgs = render_objects(self.objects, cameras, self.config.supersample)
        return {o.name: img for o, img in zip(self.objects, imgs)}

    def answers(self, prompt: str) -> list[str]:
        """The mixture's objects that ``prompt`` names (docs/analytic_world.md)."""
        return [self.objects[i].name for i in answering(self.objects, prompt)]


def joint_posterior(log_w: Tensor, log_lik: Tensor, group: int, evidence: str = "mean") -> Tensor:
    """[K, B] responsibilities from log prior weights and log-likelihoods [K, B]; with ``group`` > 1 each group of
    that many consecutive views shares the posterior of its log-likelihoods combined by ``evidence`` (sum or
    mean) and its mean log weights."""
    if group == 1:
        return (log_w + log_lik).softmax(0)
    k, b = log_lik.shape
    if b % group:
        raise ValueError(
            f"prior.config.joint_views={group}: a batch of {b} views is not whole groups (set the "
            f"camera's batch_size and group_views to multiples of it)"
        )
    lik = log_lik.view(k, -1, group)
    shared = log_w.view(k, -1, group).mean(-1) + (lik.sum(-1) if evidence == "sum" else lik.mean(-1))
    return shared.softmax(0).repeat_interleave(group, dim=1)
