"""psdkit cameras in MVDream's camera convention.

MVDream was trained with camera-to-world 4x4 matrices, flattened row-major to 16 numbers
(reference code: ``mvdream/camera_utils.py``, ``get_camera`` and ``normalize_camera``):

- camera axes OpenGL-style: columns right, up, backward (the camera looks down its -z);
- world z-up ("Blender"): ``get_camera`` builds a y-up OpenGL world and left-multiplies ``flip_yz``;
- the camera sits at ``(cos e sin a, -cos e cos a, sin e)`` for elevation ``e`` and azimuth ``a``, so its
  azimuth 0 looks from -y;
- the translation is normalized to unit length (``normalize_camera``): distance is not conditioned on.

psdkit's world is also z-up with OpenGL camera axes, but its azimuth 0 looks from +x
(:mod:`psdkit.contracts.camera`). ``frame: mvdream`` rotates the world by -90 degrees about z so that psdkit
azimuth ``a`` is MVDream azimuth ``a`` (psdkit's front is MVDream's front); ``frame: threestudio`` passes the
matrices unrotated, as MVDream-threestudio does (its world is psdkit's).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

CameraFrame = Literal["mvdream", "threestudio"]

#: psdkit world -> MVDream world: rotation by -90 degrees about z ((x, y, z) -> (y, -x, z)).
TO_MVDREAM = ((0.0, 1.0, 0.0, 0.0), (-1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 0.0, 1.0))


def mvdream_camera(c2w: Tensor, frame: CameraFrame = "mvdream") -> Tensor:
    """[B, 16] MVDream camera conditioning of psdkit camera-to-world matrices ``c2w`` [B, 4, 4]."""
    cam = c2w.float()
    if frame == "mvdream":
        cam = torch.tensor(TO_MVDREAM, device=cam.device) @ cam
    cam = cam.clone()
    cam[:, :3, 3] = cam[:, :3, 3] / (cam[:, :3, 3].norm(dim=-1, keepdim=True) + 1e-8)
    return cam.reshape(-1, 16)
