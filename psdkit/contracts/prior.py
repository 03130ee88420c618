"""The diffusion-prior contract.

Forward process: ``x_t = alpha_t * x_0 + sigma_t * eps`` with ``eps ~ N(0, I)``, for integer
timesteps ``t`` in ``[0, num_train_timesteps)``; larger ``t`` means more noise. ``x_0`` lives in the
prior's own space ("latents": VAE latents for Stable Diffusion, pixels in [-1, 1] for pixel priors).
"""

from __future__ import annotations

import abc
from typing import Any, Literal, get_args

from torch import Tensor

from psdkit.contracts.camera import Cameras
from psdkit.contracts.component import Component
from psdkit.contracts.weights import LoadsWeights

PredictionType = Literal["epsilon", "v_prediction", "sample"]
PREDICTION_TYPES: tuple[str, ...] = get_args(PredictionType)


class DiffusionPrior(Component, LoadsWeights, abc.ABC):
    """A frozen text-conditioned denoiser.

    Priors are never optimized and never checkpointed. Every method is differentiable with respect
    to its tensor inputs (the negative-embedding update back-propagates through ``predict_noise``).
    """

    prediction_type: PredictionType = "epsilon"
    """What the network natively predicts: ``epsilon``, ``v_prediction`` or ``sample`` (x0).
    ``predict_noise`` always returns eps; guidance arithmetic that is not affine (CFG rescale) runs in
    this native space (:func:`psdkit.ops.distill.to_native`)."""

    @property
    @abc.abstractmethod
    def num_train_timesteps(self) -> int:
        """Number of discrete timesteps T."""

    @abc.abstractmethod
    def encode_text(self, prompts: list[str]) -> Tensor:
        """[B, L, D] text embeddings of ``prompts`` ("" is the unconditional embedding)."""

    @abc.abstractmethod
    def encode_images(self, images: Tensor) -> Tensor:
        """Latents [B, C, h, w] of ``images`` [B, 3, H, W] in [0, 1]."""

    @abc.abstractmethod
    def decode(self, latents: Tensor) -> Tensor:
        """Images [B, 3, H', W'] in [0, 1] of ``latents`` [B, C, h, w]."""

    @abc.abstractmethod
    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha_t, sigma_t)``, each [B], for integer timesteps ``t`` [B]."""

    @abc.abstractmethod
    def predict_noise(self, x_t: Tensor, t: Tensor, text_emb: Tensor, cameras: Cameras | None = None) -> Tensor:
        """eps-prediction [B, C, h, w] for ``x_t`` [B, C, h, w], ``t`` [B], ``text_emb`` [B, L, D].

        Priors whose network predicts v or x0 convert to eps here. ``cameras`` (len B) is given for
        camera-conditioned priors and ignored by others.
        """

    @classmethod
    def sample_shape(cls, config: Any) -> tuple[int, ...] | None:
        """[C, h, w] of one sample in the prior's space, from ``config`` alone (no weights): sizes state kept in
        that space (PSD's replay pool) before anything loads. Default: None (unknown)."""
        return None

    def views_per_group(self) -> int:
        """Views the prior denoises jointly (a multi-view prior such as MVDream: 4): each group of this many
        consecutive views of a batch is one object, and its views share a timestep. Default: 1."""
        return 1

    def predict_x0(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """One-step estimate ``(x_t - sigma_t * eps) / alpha_t``."""
        alpha, sigma = self.alpha_sigma(t)
        alpha, sigma = alpha.view(-1, 1, 1, 1), sigma.view(-1, 1, 1, 1)
        return (x_t - sigma * eps) / alpha


class CumprodSchedule:
    """Mixin for priors whose noise schedule is a table ``alphas_cumprod`` [T] (a buffer of the prior).

    Provides :attr:`num_train_timesteps` and :meth:`alpha_sigma` with ``alpha = sqrt(abar_t)`` and
    ``sigma = sqrt(1 - abar_t)``.
    """

    alphas_cumprod: Tensor

    @property
    def num_train_timesteps(self) -> int:
        """T, the length of the table."""
        return int(self.alphas_cumprod.shape[0])

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha_t, sigma_t)``, each [B], for integer timesteps ``t`` [B]."""
        abar = self.alphas_cumprod[t.long()]
        return abar.sqrt(), (1 - abar).sqrt()
