"""An independent, loop-based implementation of the analytic prior's exact posterior mean."""

from __future__ import annotations

import torch


def posterior_eps(prior, x_t, t, text_emb, cameras):
    """E[eps | x_t] under the Gaussian mixture, one sample and one component at a time."""
    mu = prior.means(cameras)  # [K, B, C, h, w], renders in [-1, 1]
    s = prior.config.component_std
    out = torch.empty_like(x_t)
    for b in range(x_t.shape[0]):
        abar = prior.alphas_cumprod[t[b]]
        a, sig = abar.sqrt(), (1 - abar).sqrt()
        var = a * a * s * s + sig * sig
        tau, k_all = prior.config.temperature, range(mu.shape[0])
        logits = torch.stack([tau * (text_emb[b] @ prior.keys[k]).sum() for k in k_all])
        logw = logits.log_softmax(0)
        loglik = torch.stack([-((x_t[b] - a * mu[k, b]) ** 2).sum() / (2 * var) for k in range(mu.shape[0])])
        resp = (logw + loglik).softmax(0)
        out[b] = sum(resp[k] * sig * (x_t[b] - a * mu[k, b]) / var for k in range(mu.shape[0]))
    return out
