"""Textured mesh export: coverage rasterizer, baking, seams, face budget, files, orientation, the check, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
import yaml
from torch import Tensor, nn

from psdkit.cli.main import main
from psdkit.config.recipe import load_recipe, migrate_mesh_keys
from psdkit.contracts import Cameras, FieldOutput, ParamGroup, Representation, look_at_c2w
from psdkit.contracts.capabilities import DensityField
from psdkit.errors import RecipeError
from psdkit.mesh import bake, cleanup, extract, unwrap
from psdkit.mesh.config import MeshExportConfig
from psdkit.mesh.files import from_file_frame
from psdkit.mesh.load import load_textured
from psdkit.mesh.pipeline import CheckViews, export_mesh
from psdkit.mesh.raster2d import cover
from psdkit.mesh.render import render_mesh

ROOT = Path(__file__).resolve().parents[1]


class Ellipsoid(Representation, DensityField):
    """A solid ellipsoid with semi-axes ``axes`` whose colour encodes position: rgb = 0.5 + 0.5 * p / axes."""

    def __init__(self, axes: tuple[float, float, float] = (0.5, 0.5, 0.5)) -> None:
        nn.Module.__init__(self)
        self.register_buffer("axes", torch.tensor(axes))
        self.sharp = nn.Parameter(torch.tensor(40.0))

    @property
    def bound(self) -> float:
        return 1.0

    def forward(self, points: Tensor, dirs: Tensor | None = None) -> FieldOutput:
        r = (points / self.axes).norm(dim=-1)
        density = 50 * torch.sigmoid(self.sharp * (1 - r))
        return FieldOutput(density, (0.5 + 0.5 * points / self.axes).clamp(0, 1))

    def param_groups(self) -> list[ParamGroup]:
        return [ParamGroup("sharp", [self.sharp], 0.0)]


class White(nn.Module):
    """A white background ([B, H, W, 3] for ray directions [B, H, W, 3])."""

    def forward(self, dirs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.ones_like(dirs)


def orbit(n: int, size: int, distance: float = 2.5) -> Cameras:
    az = torch.arange(n, dtype=torch.float32) * 360 / n
    el, dist = torch.full((n,), 15.0), torch.full((n,), distance)
    fov = torch.full((n,), 0.7)
    return Cameras(look_at_c2w(el, az, dist), fov, el, az, dist, size, size)


def test_cover_tiles_a_square_exactly_once_and_skips_degenerate_triangles():
    """Two triangles splitting a 7 x 5 image cover every pixel centre (shared diagonal: at most twice), with
    barycentric coordinates that reproduce the centre; a zero-area triangle covers nothing."""
    w, h = 7, 5
    tri = torch.tensor(
        [[[0, 0], [w, 0], [w, h]], [[0, 0], [w, h], [0, h]], [[1, 1], [2, 2], [3, 3]]], dtype=torch.float
    )
    cov = cover(tri, h, w, chunk=8)  # small chunks: the chunking must not drop or repeat pairs
    hits = torch.zeros(h, w, dtype=torch.long).index_put_(
        (cov.row, cov.col), torch.ones_like(cov.row), accumulate=True
    )
    assert (hits >= 1).all() and (hits <= 2).all()
    assert not (cov.face == 2).any()
    centre = (cov.bary.unsqueeze(-1) * tri[cov.face]).sum(1)
    assert torch.allclose(centre, torch.stack([cov.col + 0.5, cov.row + 0.5], -1).float(), atol=1e-5)


def test_render_mesh_draws_the_nearest_face():
    """Two parallel squares facing the camera: the nearer one's texture colour wins everywhere it covers."""
    quad = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    near = np.c_[np.full(4, 0.3), quad]  # x = 0.3 (the camera is on +x)
    far = np.c_[np.full(4, -0.3), quad * 1.8]
    verts = torch.tensor(np.r_[near, far], dtype=torch.float32)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    uv = torch.tensor([[0.25, 0.5]] * 4 + [[0.75, 0.5]] * 4)
    texture = torch.zeros(4, 4, 3)
    texture[:, :2, 0] = 1  # left half red (the near square's uv), right half blue
    texture[:, 2:, 2] = 1
    zero, dist = torch.zeros(1), torch.full((1,), 2.5)
    cams = Cameras(look_at_c2w(zero, zero, dist), torch.full((1,), 0.7), zero, zero, dist, 32, 32)
    img = render_mesh(verts, faces, uv, texture, cams, White())[0]
    assert torch.allclose(img[:, 16, 16], torch.tensor([1.0, 0, 0]))  # the near square, in front of the far one
    assert torch.allclose(img[:, 16, 2], torch.tensor([0, 0, 1.0]))  # only the far square out there
    assert torch.allclose(img[:, 0, 0], torch.ones(3))  # background


def test_sparse_grid_gives_the_dense_grid_surface():
    """Evaluating only the blocks the surface crosses (and flooding along it) gives exactly the dense grid's
    mesh, from a fraction of the samples; the lattice is rounded up to one more than a multiple of the skip."""
    field = Ellipsoid((0.3, 0.5, 0.7))
    dense = extract.marching_cubes(field, 65, 25.0, skip=1)
    sparse = extract.marching_cubes(field, 63, 25.0, skip=4)  # 63 -> 65 samples per side
    assert dense is not None and sparse is not None
    assert sparse[3] < 0.5 and dense[3] == 1.0
    assert np.array_equal(dense[1], sparse[1]) and np.allclose(dense[0], sparse[0], atol=1e-6)


def _uv_mesh(size: int) -> unwrap.UVMesh:
    field = Ellipsoid()
    verts, faces, _, _ = extract.marching_cubes(field, 32, None)
    return unwrap.unwrap(cleanup.clean(verts, faces, 1), size, chart_padding=2)


def test_baked_texels_hold_the_field_colour_at_their_surface_point():
    field = Ellipsoid()
    uvm = _uv_mesh(128)
    surf = bake.texel_surface(uvm, 128)
    tex, mask = bake.bake(field, surf, offset=0.0, samples=1)
    expected = field(surf.points).rgb.detach()
    assert torch.allclose(tex.view(-1, 3)[surf.index], expected, atol=1e-6)
    r = (surf.points / field.axes).norm(dim=-1)
    assert (r - 1).abs().max() < 0.1, "texel points lie on the surface"
    assert 0.2 < mask.float().mean() < 1.0


def test_seams_texels_just_outside_a_chart_take_the_chart_colour():
    """A texel next to a chart's border but outside every chart samples chart colours after dilation, not the
    empty background; one further than ``dilate`` texels from every chart stays empty."""
    field = Ellipsoid()
    uvm = _uv_mesh(128)
    surf = bake.texel_surface(uvm, 128)
    tex, mask = bake.bake(field, surf, 0.0, 1)
    border = (nn.functional.max_pool2d(mask.float()[None, None], 3, 1, 1)[0, 0] > 0) & ~mask
    assert border.sum() > 50
    out = bake.dilate(tex, mask, texels=2)
    assert (out[border].sum(-1) > 0.3).all(), "every border texel got a chart colour"
    neighbour_mean = nn.functional.avg_pool2d(tex.permute(2, 0, 1)[None], 3, 1, 1)[0].permute(1, 2, 0)
    share = nn.functional.avg_pool2d(mask.float()[None, None], 3, 1, 1)[0, 0]
    own = neighbour_mean[border] / share[border, None]
    assert torch.allclose(out[border], own, atol=1e-5), "a border texel is the mean of its covered neighbours"
    far = nn.functional.max_pool2d(mask.float()[None, None], 7, 1, 3)[0, 0] == 0  # > 3 texels from any chart
    if far.any():
        assert (out[far] == 0).all()


def test_export_honours_face_budget_and_texture_size_and_files_load(tmp_path):
    field = Ellipsoid()
    cfg = MeshExportConfig(resolution=48, faces=500, texture_size=128, formats=("glb", "obj", "ply"), check=False)
    report = export_mesh(field, cfg, tmp_path, None)
    assert report["faces"] <= 500
    glb = trimesh.load(tmp_path / "mesh.glb", force="mesh")
    assert len(glb.faces) == report["faces"]
    assert glb.visual.material.baseColorTexture.size == (128, 128)
    assert glb.visual.uv.min() >= 0 and glb.visual.uv.max() <= 1
    obj = trimesh.load(tmp_path / "mesh.obj", force="mesh")
    assert obj.visual.uv.shape == (len(obj.vertices), 2) and obj.visual.material.image.size == (128, 128)
    assert (tmp_path / "mesh.mtl").is_file() and (tmp_path / "mesh.png").is_file()
    ply = trimesh.load(tmp_path / "mesh.ply", force="mesh")
    assert ply.visual.vertex_colors.shape[0] == len(ply.vertices)
    assert json.loads((tmp_path / "export.json").read_text())["faces"] == report["faces"]


def test_texture_reproduces_the_field_at_every_vertex(tmp_path):
    """Read back from the GLB (texture sampled at each vertex's UV, position converted back to the world frame),
    the colour is the field's colour there."""
    field = Ellipsoid()
    export_mesh(field, MeshExportConfig(resolution=48, faces=2000, texture_size=256, check=False), tmp_path, None)
    mesh = load_textured(tmp_path / "mesh.glb", "y", 1.0)
    grid = torch.stack([mesh.uv[:, 0] * 2 - 1, 1 - mesh.uv[:, 1] * 2], -1).view(1, 1, -1, 2)
    sampled = nn.functional.grid_sample(mesh.texture.permute(2, 0, 1)[None], grid, align_corners=False)[0, :, 0].T
    expected = field(mesh.verts).rgb.detach()
    assert (sampled - expected).abs().mean() < 0.02


@pytest.mark.parametrize("up", ["y", "z"])
def test_files_are_y_up_metres_and_match_the_turntable(tmp_path, up):
    """An ellipsoid tall along the world's up axis (z) is tall along the file's up axis; the turntable's first
    view (from +x) looks along glTF's -Z, so the side coloured by +x faces +Z in a Y-up file; scale is honoured."""
    field = Ellipsoid((0.3, 0.4, 0.8))
    cfg = MeshExportConfig(resolution=48, faces=2000, texture="vertex", formats=("ply",), up_axis=up, scale=2.0)
    export_mesh(field, cfg, tmp_path, None)
    mesh = trimesh.load(tmp_path / "mesh.ply", force="mesh")
    ext = mesh.bounding_box.extents
    tall, front = (1, 2) if up == "y" else (2, 0)
    assert ext.argmax() == tall and abs(ext.max() - 2 * 1.6) < 0.1
    red = mesh.visual.vertex_colors[:, 0].astype(float)
    assert np.corrcoef(mesh.vertices[:, front], red)[0, 1] > 0.95
    assert np.allclose(from_file_frame(mesh.vertices, up, 2.0)[:, 2], mesh.vertices[:, tall] / 2)


def test_check_compares_the_written_mesh_with_the_field_renders(tmp_path):
    """The check's PSNR is high against the renders of the same object and low against another one."""
    field = Ellipsoid()
    cams = orbit(4, 32)
    ref = render_mesh_of(field, cams)
    good = export_mesh(
        field, MeshExportConfig(resolution=64, texture_size=256), tmp_path, CheckViews(cams, White(), ref)
    )
    assert good["check"]["psnr"] > 25 and len(good["check"]["per_view_psnr"]) == 4
    other = render_mesh_of(Ellipsoid((0.3, 0.3, 0.3)), cams)
    bad = export_mesh(
        field, MeshExportConfig(resolution=64, texture_size=256), tmp_path, CheckViews(cams, White(), other)
    )
    assert bad["check"]["psnr"] < good["check"]["psnr"] - 5


def render_mesh_of(field: Ellipsoid, cams: Cameras) -> Tensor:
    """Reference renders: the field's exact surface by ray marching to the level set (first r <= 1)."""
    origins, dirs = cams.rays()
    t = torch.linspace(0, 5, 2000)
    pts = origins[..., None, :] + dirs[..., None, :] * t[:, None]
    inside = (pts / field.axes).norm(dim=-1) <= 1
    first = inside.float().argmax(-1)
    hit = inside.any(-1)
    surface = torch.gather(pts, -2, first[..., None, None].expand(*first.shape, 1, 3)).squeeze(-2)
    rgb = field(surface.reshape(-1, 3)).rgb.detach().view_as(surface)
    img = torch.where(hit[..., None], rgb, torch.ones_like(rgb))
    return img.permute(0, 3, 1, 2)


def _run_dir(tmp_path: Path, recipe: str) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text((ROOT / "recipes" / recipe).read_text())
    return run


def test_export_cli_without_checkpoint_is_exit_2_and_writes_nothing(tmp_path, capsys):
    run = _run_dir(tmp_path, "quickstart.yaml")
    assert main(["export", str(run)]) == 2
    assert "no checkpoints/last.ckpt" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["recipe.yaml"]


def test_export_cli_refuses_a_field_without_density(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    recipe = load_recipe(ROOT / "recipes" / "psd_2d.yaml")
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict()))
    assert main(["export", str(run)]) == 2
    assert "has no density field" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["recipe.yaml"]


def test_export_cli_refuses_a_face_budget_of_zero(tmp_path, capsys):
    run = _run_dir(tmp_path, "quickstart.yaml")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(run), "--faces", "0"])
    assert exit_info.value.code == 2
    assert "--faces: must be at least 1" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["recipe.yaml"]


def test_recipe_refuses_mesh_export_of_a_2d_image_and_names_moved_keys():
    with pytest.raises(RecipeError, match="output.mesh") as err:
        load_recipe(ROOT / "recipes" / "psd_2d.yaml", ["output.mesh=true"])
    assert "no density field" in str(err.value)
    with pytest.raises(RecipeError, match=r"output.mesh_resolution.*output.export.resolution"):
        load_recipe(ROOT / "recipes" / "quickstart.yaml", ["output.mesh_resolution=64"])
    old = {"output": {"mesh_resolution": 64, "mesh_keep_largest": False, "mesh_threshold": 2.0}}
    assert migrate_mesh_keys(old)["output"] == {"export": {"resolution": 64, "keep_components": 0, "level": 2.0}}
