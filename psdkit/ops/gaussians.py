"""Gaussian-splatting arithmetic with no psdkit state: rotations, covariances, the EWA projection to screen
space, spherical harmonics.

Conventions: cameras as :class:`psdkit.contracts.Cameras` (OpenGL: the camera looks down its -z axis, y up);
pixel coordinates x right, y down, centres at +0.5 (as :meth:`Cameras.rays`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from psdkit.contracts.camera import Cameras

SH_C0 = 0.28209479177387814
"""Y_0^0: a degree-0 coefficient f gives the colour 0.5 + SH_C0 * f (the 3DGS convention)."""
_SH_C1 = 0.4886025119029199
_SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def quat_to_rotmat(q: Tensor) -> Tensor:
    """[N, 3, 3] rotations of quaternions ``q`` [N, 4] (w, x, y, z; normalized here)."""
    w, x, y, z = (q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        -1,
    ).view(-1, 3, 3)  # fmt: skip


def covariance(scales: Tensor, quats: Tensor) -> Tensor:
    """[N, 3, 3] world covariances R S S R^T of ``scales`` [N, 3] (standard deviations) and ``quats`` [N, 4]."""
    m = quat_to_rotmat(quats) * scales[:, None, :]
    return m @ m.transpose(1, 2)


def project(means: Tensor, cov: Tensor, cameras: Cameras, eps2d: float) -> tuple[Tensor, Tensor, Tensor]:
    """EWA projection of Gaussians into every camera.

    Args:
        means: [N, 3] world centres; cov: [N, 3, 3] world covariances; eps2d: variance (px^2) added to each 2D
            covariance (a low-pass filter, as gsplat).

    Returns:
        ([B, N, 2] pixel centres, [B, N, 2, 2] 2D covariances, [B, N] depths along the view axis).
    """
    b = len(cameras)
    rot = torch.linalg.inv(cameras.c2w.to(means.dtype))[:, :3, :3]
    cam = cameras.to_camera(means)
    x, y, depth = cam[..., 0], cam[..., 1], -cam[..., 2]
    d = depth.clamp_min(1e-6)
    f = cameras.focal().to(means.dtype).view(b, 1)
    centre = torch.stack([f * x / d + 0.5 * cameras.width, -f * y / d + 0.5 * cameras.height], -1)
    zero = torch.zeros_like(d)
    jac = torch.stack([f / d, zero, f * x / d**2, zero, -f / d, -f * y / d**2], -1).view(b, -1, 2, 3)
    t = jac @ rot[:, None]  # d(pixel)/d(world xyz)
    cov2d = t @ cov[None] @ t.transpose(-1, -2) + eps2d * torch.eye(2, dtype=cov.dtype, device=cov.device)
    return centre, cov2d, depth


def sh_degree_of(coeffs: int) -> int:
    """The SH degree whose coefficient count is ``coeffs`` ((degree + 1)^2)."""
    degree = math.isqrt(coeffs) - 1
    if (degree + 1) ** 2 != coeffs or not 0 <= degree <= 3:
        raise ValueError(f"{coeffs} SH coefficients: expected 1, 4, 9 or 16")
    return degree


def eval_sh(sh: Tensor, dirs: Tensor) -> Tensor:
    """[N, 3] colours in [0, 1] of SH coefficients ``sh`` [N, K, 3] seen along unit ``dirs`` [N, 3] (from the
    camera to the Gaussian), 3DGS's convention (0.5 offset, clamped at 0 and 1)."""
    degree = sh_degree_of(sh.shape[1])
    out = SH_C0 * sh[:, 0]
    if degree >= 1:
        x, y, z = dirs[:, :1], dirs[:, 1:2], dirs[:, 2:3]
        out = out - _SH_C1 * y * sh[:, 1] + _SH_C1 * z * sh[:, 2] - _SH_C1 * x * sh[:, 3]
        if degree >= 2:
            xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
            c = _SH_C2
            out = out + c[0] * xy * sh[:, 4] + c[1] * yz * sh[:, 5] + c[2] * (2 * zz - xx - yy) * sh[:, 6]
            out = out + c[3] * xz * sh[:, 7] + c[4] * (xx - yy) * sh[:, 8]
            if degree >= 3:
                c3 = _SH_C3
                out = out + c3[0] * y * (3 * xx - yy) * sh[:, 9] + c3[1] * xy * z * sh[:, 10]
                out = out + c3[2] * y * (4 * zz - xx - yy) * sh[:, 11]
                out = out + c3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[:, 12]
                out = out + c3[4] * x * (4 * zz - xx - yy) * sh[:, 13] + c3[5] * z * (xx - yy) * sh[:, 14]
                out = out + c3[6] * x * (xx - 3 * yy) * sh[:, 15]
    return (out + 0.5).clamp(0, 1)
