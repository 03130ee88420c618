"""3D Gaussian splatting: the representation, the torch rasterizer against a brute-force reference, adaptive
density control, the .ply round trip, validation errors, exact resume and the quickstart on Gaussians."""

from __future__ import annotations

import importlib.util
import json
import math
import random
from pathlib import Path

import pytest
import torch
from psdkit_plugins.renderers.splat import SplatRenderer, SplatRendererConfig
from psdkit_plugins.representations.gaussians import Gaussians3D, GaussiansConfig
from subprocess_fit import run_fit_script
from tiny_overrides import TINY_QUICKSTART

from psdkit.cli.main import main
from psdkit.config.recipe import load_recipe
from psdkit.contracts.capabilities import GaussianSet
from psdkit.errors import RecipeError
from psdkit.mesh.gaussian_ply import read_gaussians_ply, write_gaussians_ply
from psdkit.ops.gaussians import SH_C0, covariance, eval_sh
from psdkit.optim import reset_optimizer_state
from psdkit.testing import conformance, tiny

ROOT = Path(__file__).resolve().parents[1]


def tiny_gaussians(n: int = 6, capacity: int = 16, sh_degree: int = 0, seed: int = 0) -> Gaussians3D:
    """``n`` random, fairly large, fairly opaque Gaussians near the origin."""
    torch.manual_seed(seed)
    rep = Gaussians3D(GaussiansConfig(capacity=capacity, init_count=n, init_radius=0.4, sh_degree=sh_degree))
    with torch.no_grad():
        rep.log_scales[:n] = torch.log(0.08 + 0.1 * torch.rand(n, 3))
        rep.quats[:n] = torch.randn(n, 4)
        rep.opacity_logits[:n] = torch.randn(n)
        rep.sh[:n] = torch.randn(n, (sh_degree + 1) ** 2, 3) * 0.8
    return rep


class TestGaussians(conformance.RepresentationConformance):
    plugin_cls = Gaussians3D

    def tiny_config(self):
        return GaussiansConfig(
            capacity=32, init_count=16, init_scale=0.3, max_scale=0.5
        )  # the field reaches the test points


class TestSplatRenderer(conformance.RendererConformance):
    plugin_cls = SplatRenderer

    def tiny_config(self):
        return SplatRendererConfig(backend="torch")

    def tiny_representation(self):
        return tiny_gaussians()


def brute_force(rep: Gaussians3D, cams, cfg: SplatRendererConfig) -> torch.Tensor:
    """[B, 3, H, W] premultiplied colour: every Gaussian at every pixel, sorted by depth, composited in a loop."""
    g = rep.gaussians()
    cov = covariance(g.scales, g.quats)
    out = []
    for i in range(len(cams)):
        w2c = torch.linalg.inv(cams.c2w[i])
        cam = g.means @ w2c[:3, :3].T + w2c[:3, 3]
        depth = -cam[:, 2]
        f = 0.5 * cams.height / math.tan(0.5 * float(cams.fov_y[i]))
        centre = torch.stack([f * cam[:, 0] / depth + cams.width / 2, -f * cam[:, 1] / depth + cams.height / 2], -1)
        img = torch.zeros(3, cams.height, cams.width)
        dirs = g.means - cams.c2w[i, :3, 3]
        colour = eval_sh(g.sh, dirs / dirs.norm(dim=-1, keepdim=True))
        order = torch.argsort(depth)
        for y in range(cams.height):
            for x in range(cams.width):
                trans = torch.tensor(1.0)
                acc = torch.zeros(3)
                for k in order.tolist():
                    # the 2D covariance from the Jacobian of the projection, computed independently here
                    X, Y, Z = cam[k]
                    jac = torch.stack(
                        [
                            torch.stack([f / -Z, torch.tensor(0.0), f * X / Z**2]),
                            torch.stack([torch.tensor(0.0), f / Z, -f * Y / Z**2]),
                        ]
                    )
                    t = jac @ w2c[:3, :3]
                    c2 = t @ cov[k] @ t.T + cfg.eps2d * torch.eye(2)
                    d = torch.tensor([x + 0.5, y + 0.5]) - centre[k]
                    a = torch.clamp(g.opacities[k] * torch.exp(-0.5 * d @ torch.linalg.inv(c2) @ d), max=cfg.alpha_max)
                    if a < cfg.alpha_min or trans < cfg.transmittance_min:
                        continue
                    acc = acc + trans * a * colour[k]
                    trans = trans * (1 - a)
                img[:, y, x] = acc
        out.append(img)
    return torch.stack(out)


def test_torch_rasterizer_matches_brute_force_in_image_and_gradients():
    rep = tiny_gaussians(n=5, sh_degree=1)
    cams = tiny.tiny_cameras(2, 8)
    cfg = SplatRendererConfig(backend="torch")
    black = lambda dirs, generator=None: torch.zeros_like(dirs)  # noqa: E731 - premultiplied colour
    fast = SplatRenderer(cfg)(rep, cams, black).rgb
    slow = brute_force(rep, cams, cfg)
    assert fast.abs().max() > 0.05, "the scene must show something"
    assert torch.allclose(fast, slow, atol=1e-5), (fast - slow).abs().max()
    weights = torch.rand_like(fast)
    grads = []
    for image in (fast, slow):
        rep.zero_grad()
        (image * weights).sum().backward(retain_graph=True)
        grads.append([p.grad[:5].clone() for p in (rep.means, rep.log_scales, rep.quats, rep.opacity_logits, rep.sh)])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3), (a - b).abs().max()


def test_render_outputs_follow_the_renderer_contract():
    rep = tiny_gaussians()
    cams = tiny.tiny_cameras(2, 12)
    out = SplatRenderer(SplatRendererConfig(backend="torch"))(rep, cams, tiny.tiny_background())
    assert out.depth.shape == (2, 1, 12, 12) and (out.depth[out.opacity > 0.5] > 1.5).all()
    assert (out.depth[out.opacity == 0] == 0).all()
    assert out.stats["gaussians"] == 6


def test_screen_space_gradients_reach_the_density_statistics():
    rep = tiny_gaussians()
    out = SplatRenderer(SplatRendererConfig(backend="torch"))(rep, tiny.tiny_cameras(2, 12), tiny.tiny_background())
    out.rgb.sum().backward()
    rep.after_backward()
    assert (rep.grad_count[:6] == 2).all() and (rep.grad_accum[:6] > 0).all()
    assert (rep.grad_count[6:] == 0).all(), "inactive slots gather nothing"


def _densify_setup(**changes):
    cfg = dict(capacity=10, init_count=4, densify_from=0, densify_every=1, densify_until=100, grad_threshold=1e-3)
    rep = Gaussians3D(GaussiansConfig(**{**cfg, **changes}))
    with torch.no_grad():
        rep.log_scales[:4] = torch.log(torch.tensor([[0.005] * 3, [0.005] * 3, [0.15] * 3, [0.15] * 3]))
        rep.opacity_logits[:4] = 2.0
        rep.grad_count[:4] = 1
        rep.grad_accum[:4] = torch.tensor([1.0, 0.0, 1.0, 0.0])  # 0 and 2 densify: 0 clones, 2 splits
    return rep


def test_densify_clones_small_splits_large_and_resets_their_optimizer_state():
    rep = _densify_setup()
    opt = torch.optim.Adam(rep.parameters())
    rep.means.sum().backward()
    opt.step()
    before = rep.means[:4].detach().clone()
    resets = rep.restructure(1, torch.Generator().manual_seed(0))
    assert rep.count() == 6 and rep.active[:6].all()
    assert torch.equal(rep.means[4], before[0]) and torch.equal(rep.means[0], before[0]), "a clone is a copy"
    assert torch.allclose(rep.log_scales[2].exp(), torch.full((3,), 0.15 / 1.6))
    assert torch.allclose(rep.log_scales[5], rep.log_scales[2])
    assert not torch.equal(rep.means[2], before[2]) and not torch.equal(rep.means[5], before[2]), "split halves move"
    assert (rep.grad_accum == 0).all() and (rep.grad_count == 0).all()
    reset_optimizer_state(opt, resets)
    moments = opt.state[rep.means]["exp_avg"]
    assert (moments[[2, 4, 5]] == 0).all() and (moments[[0, 1, 3]] != 0).all()


def test_prune_and_capacity():
    rep = _densify_setup(capacity=5, prune_opacity=0.5)
    with torch.no_grad():
        rep.opacity_logits[1] = -5.0  # transparent: pruned
    rep.restructure(1, torch.Generator().manual_seed(0))
    assert rep.count() == 4, "one free slot: only the highest gradient densified, then one pruned"
    assert not rep.active[1]


def test_opacity_reset_clamps_and_resets_moments():
    rep = _densify_setup(opacity_reset_every=1, grad_threshold=10.0)
    resets = rep.restructure(1, torch.Generator().manual_seed(0))
    assert torch.allclose(torch.sigmoid(rep.opacity_logits[:4]), torch.full((4,), 0.01))
    assert any(p is rep.opacity_logits for p, _ in resets)


def test_ply_round_trips_exactly_and_renders_the_same(tmp_path):
    rep = tiny_gaussians(sh_degree=2)
    raw = rep.raw_gaussians()
    path = write_gaussians_ply(tmp_path / "g.ply", raw)
    back = read_gaussians_ply(path)
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh"):
        assert torch.equal(getattr(raw, name), getattr(back, name)), name
    header = path.read_bytes().split(b"end_header")[0].decode()
    assert "property float f_dc_0" in header and "property float f_rest_23" in header and "rot_3" in header
    again = Gaussians3D(GaussiansConfig(capacity=16, init="ply", init_path=str(path), sh_degree=2))
    cams = tiny.tiny_cameras(2, 12)
    renderer = SplatRenderer(SplatRendererConfig(backend="torch"))
    with torch.no_grad():
        assert torch.equal(
            renderer(rep, cams, tiny.tiny_background()).rgb, renderer(again, cams, tiny.tiny_background()).rgb
        )


def test_point_cloud_ply_initializes_positions_and_colours(tmp_path):
    import numpy as np

    pts = np.array([[0.1, 0.2, 0.3], [-0.2, 0.0, 0.1]], dtype="<f4")
    rgb = np.array([[255, 0, 0], [0, 0, 255]], dtype="u1")
    data = np.zeros(
        2, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    )
    for i, k in enumerate("xyz"):
        data[k] = pts[:, i]
    data["red"], data["green"], data["blue"] = rgb.T
    head = "ply\nformat binary_little_endian 1.0\nelement vertex 2\n"
    head += "".join(f"property float {k}\n" for k in "xyz") + "".join(
        f"property uchar {k}\n" for k in ("red", "green", "blue")
    )
    (tmp_path / "pc.ply").write_bytes((head + "end_header\n").encode() + data.tobytes())
    rep = Gaussians3D(GaussiansConfig(capacity=4, init="ply", init_path=str(tmp_path / "pc.ply")))
    g = rep.gaussians()
    assert torch.allclose(g.means, torch.from_numpy(pts))
    assert torch.allclose(SH_C0 * g.sh[:, 0] + 0.5, torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]), atol=1e-6)


def test_recipe_errors_name_the_renderer_and_gsplat(monkeypatch):
    with pytest.raises(RecipeError, match=r"renderer.*GaussianSet.*hashgrid-nerf"):
        load_recipe(ROOT / "recipes" / "quickstart.yaml", ["renderer.name=splat"])
    if importlib.util.find_spec("gsplat") is None:
        with pytest.raises(RecipeError, match=r"renderer\.config: backend: 'gsplat'.*pip install 'psdkit\[gsplat\]'"):
            load_recipe(ROOT / "recipes" / "quickstart_gs.yaml", ["renderer.config.backend=gsplat"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "gsplat" else real(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RecipeError, match="renderer.config: backend: 'gsplat' needs CUDA"):
        load_recipe(ROOT / "recipes" / "quickstart_gs.yaml", ["renderer.config.backend=gsplat"])


@pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("gsplat") is None,
    reason="the gsplat backend needs CUDA and pip install 'psdkit[gsplat]' (run on a GPU machine)",
)
def test_gsplat_agrees_with_the_torch_rasterizer():
    rep = tiny_gaussians(n=6, sh_degree=1).cuda()
    cams = tiny.tiny_cameras(2, 32).to("cuda")
    black = lambda dirs, generator=None: torch.zeros_like(dirs)  # noqa: E731
    a = SplatRenderer(SplatRendererConfig(backend="torch"))(rep, cams, black).rgb
    b = SplatRenderer(SplatRendererConfig(backend="gsplat"))(rep, cams, black).rgb
    assert (a - b).abs().max() < 2e-2, (a - b).abs().max()


GS_ARGS = (
    "--recipe",
    "quickstart_gs.yaml",
    "trainer.max_steps=10",
    "trainer.val_every=3",
    "representation.config.densify_from=2",
    "representation.config.densify_every=2",
    "representation.config.densify_until=9",
    "representation.config.opacity_reset_every=4",
    "representation.config.init_count=200",
    "representation.config.capacity=400",
)


def test_killed_during_densification_and_resumed_matches_uninterrupted(tmp_path):
    kill_at = random.Random(99).choice([3, 5, 7])  # steps between densifications (2, 4, 6, 8)
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    ref.mkdir(), cut.mkdir()
    run_fit_script(ref, 1, 2, *GS_ARGS)
    run_fit_script(cut, 1, 2, *GS_ARGS, "--kill-at", str(kill_at), expect_rc=-9)
    run_fit_script(cut, 1, 2, *GS_ARGS, "--resume")
    a, b = torch.load(ref / "rank0.pt")["state"], torch.load(cut / "rank0.pt")["state"]
    assert int(a["representation.active"].sum()) > 200, "densification must have added Gaussians"
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume (killed at {kill_at})"


def test_two_ranks_make_the_same_densification_decisions(tmp_path):
    run_fit_script(tmp_path, 2, 1, *GS_ARGS[:2], "trainer.max_steps=6", *GS_ARGS[4:])
    r0, r1 = torch.load(tmp_path / "rank0.pt")["state"], torch.load(tmp_path / "rank1.pt")["state"]
    assert int(r0["representation.active"].sum()) > 200
    for key in r0:
        assert torch.equal(r0[key], r1[key]), f"{key} differs between ranks"


def test_fit_writes_a_gaussian_ply_that_reloads_to_the_final_render(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_gs = [o for o in TINY_QUICKSTART if not o.startswith("renderer.")]
    args = [*tiny_gs, "trainer.max_steps=4", "name=gs", "representation.config.init_count=100"]
    assert main(["fit", str(ROOT / "recipes" / "quickstart_gs.yaml"), *args]) == 0
    run = tmp_path / "runs" / "gs"
    files = json.loads((run / "metrics.json").read_text())["files"]
    assert files["gaussians"].endswith("gaussians.ply")
    recipe = load_recipe(ROOT / "recipes" / "quickstart_gs.yaml", args)
    from psdkit.run.build import build_components
    from psdkit.run.eval_run import load_into
    from psdkit.system import PSDSystem

    system = PSDSystem(build_components(recipe), recipe.schema)
    load_into(system, run / "checkpoints" / "last.ckpt")
    system.eval()
    reloaded = Gaussians3D(GaussiansConfig(capacity=2000, init="ply", init_path=str(run / "gaussians.ply")))
    assert isinstance(reloaded, GaussianSet)
    cams = system.components.camera.orbit(4, 16, 16)
    with torch.no_grad():
        final = system.render(cams).rgb
        again = system.renderer(reloaded, cams, system.background).rgb
    assert torch.equal(final, again)


def test_gaussians_start_from_a_finished_nerf_run(tmp_path, monkeypatch):
    """init: run samples points where another representation's field is dense, with its colours."""
    monkeypatch.chdir(tmp_path)
    assert (
        main(["fit", str(ROOT / "recipes" / "quickstart.yaml"), *TINY_QUICKSTART, "trainer.max_steps=3", "name=nerf"])
        == 0
    )
    run = tmp_path / "runs" / "nerf"
    torch.manual_seed(0)
    rep = Gaussians3D(GaussiansConfig(capacity=300, init="run", init_path=str(run), init_count=200))
    g = rep.gaussians()
    assert rep.count() == 200 and g.means.abs().max() <= 1.0
    recipe = load_recipe(run / "recipe.yaml")
    from psdkit.run.build import build_representation

    field = build_representation(recipe)
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    field.load_state_dict(
        {k.removeprefix("representation."): v for k, v in state.items() if k.startswith("representation.")}
    )
    with torch.no_grad():
        at_gaussians = field(g.means).density.mean()
        at_random = field((torch.rand(2000, 3) * 2 - 1) * field.bound).density.mean()
        assert at_gaussians > 2 * at_random, "points are drawn where the field is dense"
        assert torch.allclose(SH_C0 * g.sh[:, 0] + 0.5, field(g.means).rgb, atol=1e-5), "with the field's colours"
    with pytest.raises(Exception, match="no checkpoints/last.ckpt"):
        Gaussians3D(GaussiansConfig(capacity=10, init="run", init_path=str(tmp_path)))


def test_3d_filter_widens_every_gaussian_and_keeps_its_integral():
    plain, smooth = tiny_gaussians(), tiny_gaussians()
    smooth.config = GaussiansConfig(**{**smooth.config.__dict__, "filter_3d": 0.05})
    a, b = plain.gaussians(), smooth.gaussians()
    assert torch.allclose(b.scales, (a.scales**2 + 0.05**2).sqrt())
    assert torch.allclose(a.opacities * a.scales.prod(-1), b.opacities * b.scales.prod(-1))  # o * sqrt(det)


def test_splat_opacity_regularizers():
    rep = tiny_gaussians()
    renderer = SplatRenderer(SplatRendererConfig(backend="torch", opacity_entropy=2.0, opacity_sparsity=0.5))
    out = renderer(rep, tiny.tiny_cameras(2, 12), tiny.tiny_background())
    terms = renderer.regularizers(out)
    assert set(terms) == {"entropy", "sparsity"} and terms["sparsity"] == 0.5 * out.opacity.mean()
    assert SplatRenderer(SplatRendererConfig(backend="torch")).regularizers(out) == {}


def test_auto_backend_falling_back_to_torch_on_cuda_warns_once(monkeypatch):
    import psdkit_plugins.renderers.splat as splat

    monkeypatch.setattr(splat, "gsplat_unavailable", lambda: "backend: 'gsplat' needs the gsplat package")
    renderer = SplatRenderer(SplatRendererConfig(backend="auto"))
    with pytest.warns(Warning, match="pure-torch rasterizer runs on CUDA"):
        assert renderer.use_gsplat(torch.device("cuda")) is False
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert renderer.use_gsplat(torch.device("cuda")) is False  # once
        assert renderer.use_gsplat(torch.device("cpu")) is False
