"""The standard 3DGS .ply (what real-time Gaussian viewers read), and plain point-cloud .ply files.

Layout (binary little-endian, one float32 vertex property each): x y z, nx ny nz (zeros), f_dc_0..2,
f_rest_* (the higher SH coefficients, channel-major), opacity (logit), scale_0..2 (log), rot_0..3 (w x y z).
Coordinates are psdkit's world frame (z up), as Gaussian viewers take a training scene's frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from psdkit.contracts.capabilities import RawGaussians
from psdkit.errors import RunDirError
from psdkit.ops.gaussians import SH_C0

_TYPES = {"float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8", "uchar": "u1", "uint8": "u1",
          "int": "<i4", "int32": "<i4", "uint": "<u4", "short": "<i2", "ushort": "<u2", "char": "i1"}  # fmt: skip


def property_names(k: int) -> list[str]:
    """Vertex properties of a file with ``k`` SH coefficients per channel."""
    rest = [f"f_rest_{i}" for i in range(3 * (k - 1))]
    return ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", *rest, "opacity",
            "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]  # fmt: skip


def write_gaussians_ply(path: Path, g: RawGaussians) -> Path:
    """Write ``g`` as a 3DGS .ply."""
    n, k = g.sh.shape[0], g.sh.shape[1]
    rest = g.sh[:, 1:].transpose(1, 2).reshape(n, -1)  # [N, 3 * (K - 1)], channel-major
    cols = [g.means, torch.zeros(n, 3), g.sh[:, 0], rest, g.opacity_logits[:, None], g.log_scales, g.quats]
    data = torch.cat([c.detach().cpu().float() for c in cols], 1).numpy().astype("<f4")
    names = property_names(k)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in names] + ["end_header"]
    path.write_bytes(("\n".join(header) + "\n").encode() + np.ascontiguousarray(data).tobytes())
    return path


def read_vertices(path: Path) -> dict[str, np.ndarray]:
    """The vertex properties of a binary little-endian .ply, by name."""
    if not path.is_file():
        raise RunDirError(f"{path}: no such .ply file")
    raw = path.read_bytes()
    end = raw.find(b"end_header\n")
    if not raw.startswith(b"ply") or end < 0:
        raise RunDirError(f"{path}: not a .ply file (no 'ply' header)")
    lines = raw[:end].decode("ascii", "replace").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise RunDirError(f"{path}: only binary little-endian .ply files are read (save it as binary)")
    count, fields, in_vertex = 0, [], False
    for line in lines:
        parts = line.split()
        if parts[:1] == ["element"]:
            in_vertex = parts[1] == "vertex"
            count = int(parts[2]) if in_vertex else count
        elif parts[:1] == ["property"] and in_vertex:
            if parts[1] == "list" or parts[1] not in _TYPES:
                raise RunDirError(f"{path}: unsupported vertex property {' '.join(parts[1:])!r}")
            fields.append((parts[2], _TYPES[parts[1]]))
    body = np.frombuffer(raw, dtype=np.dtype(fields), count=count, offset=end + len(b"end_header\n"))
    return {name: np.asarray(body[name]) for name, _ in fields}


def read_gaussians_ply(path: Path) -> RawGaussians:
    """A 3DGS .ply's Gaussians, exactly as stored."""
    v = read_vertices(path)
    if "f_dc_0" not in v:
        raise RunDirError(f"{path}: not a Gaussian-splatting .ply (no f_dc_0 property)")
    rest = sorted((k for k in v if k.startswith("f_rest_")), key=lambda k: int(k.split("_")[-1]))

    def stack(names: list[str]) -> Tensor:
        return torch.from_numpy(np.stack([v[n] for n in names], 1).astype(np.float32))

    n = len(v["x"])
    dc = stack(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :]
    higher = stack(rest).view(n, 3, -1).transpose(1, 2) if rest else torch.zeros(n, 0, 3)
    return RawGaussians(
        means=stack(["x", "y", "z"]),
        log_scales=stack(["scale_0", "scale_1", "scale_2"]),
        quats=stack(["rot_0", "rot_1", "rot_2", "rot_3"]),
        opacity_logits=torch.from_numpy(v["opacity"].astype(np.float32)),
        sh=torch.cat([dc, higher], 1),
    )


def read_point_cloud(path: Path) -> tuple[Tensor, Tensor | None]:
    """(positions [N, 3], colours [N, 3] in [0, 1] or None) of a point-cloud .ply (x, y, z and optional
    red, green, blue; a 3DGS file gives its base colours)."""
    v = read_vertices(path)
    if not {"x", "y", "z"} <= v.keys():
        raise RunDirError(f"{path}: no x, y, z vertex properties")
    pos = torch.from_numpy(np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float32))
    if {"red", "green", "blue"} <= v.keys():
        rgb = np.stack([v["red"], v["green"], v["blue"]], 1).astype(np.float32)
        return pos, torch.from_numpy(rgb / (255.0 if rgb.max() > 1 else 1.0))
    if "f_dc_0" in v:
        dc = np.stack([v["f_dc_0"], v["f_dc_1"], v["f_dc_2"]], 1).astype(np.float32)
        return pos, torch.from_numpy(np.clip(0.5 + SH_C0 * dc, 0, 1))
    return pos, None
