"""Built-in plugins pass the conformance mixins third-party authors use; component invariants."""

from __future__ import annotations

import pytest
import torch
from psdkit_plugins.backgrounds.solid import SolidBackground
from psdkit_plugins.cameras.orbit import OrbitCameraSampler
from psdkit_plugins.priors.analytic import AnalyticPrior
from psdkit_plugins.renderers.volume import VolumeRenderer
from psdkit_plugins.representations.hashgrid_nerf import HashGridNeRF
from psdkit_plugins.rewards.analytic import AnalyticReward
from psdkit_plugins.rewards.analytic_heldout import AnalyticHeldoutReward

from psdkit.config.schema import build_config
from psdkit.ops.hashgrid import hash_encode, hash_encode_reference, level_resolutions
from psdkit.testing import conformance, tiny


class TestAnalyticPrior(conformance.PriorConformance):
    plugin_cls = AnalyticPrior

    def tiny_config(self):
        return AnalyticPrior.Config(resolution=16)


class TestAnalyticReward(conformance.RewardConformance):
    plugin_cls = AnalyticReward


class TestAnalyticHeldoutReward(conformance.RewardConformance):
    plugin_cls = AnalyticHeldoutReward


class TestHashGridNeRF(conformance.RepresentationConformance):
    plugin_cls = HashGridNeRF

    def tiny_config(self):
        return HashGridNeRF.Config(levels=4, log2_table_size=10, finest_resolution=32, hidden=16)


class TestVolumeRenderer(conformance.RendererConformance):
    plugin_cls = VolumeRenderer

    def tiny_config(self):
        return VolumeRenderer.Config(num_samples=8)


class TestOrbitCameras(conformance.CameraConformance):
    plugin_cls = OrbitCameraSampler


class TestSolidBackground(conformance.ComponentConformance):
    plugin_cls = SolidBackground


@pytest.mark.parametrize("log2_size", [8, 14])
def test_hash_encoding_matches_reference(log2_size):
    res = level_resolutions(6, 4, 96)
    table = torch.randn(6, 2**log2_size, 2, requires_grad=True)
    x = torch.rand(2000, 3, generator=torch.Generator().manual_seed(0)) * (1 - 1e-6)
    fast, ref = hash_encode(x, table, res), hash_encode_reference(x, table, res)
    assert fast.shape == (2000, 12)
    assert torch.allclose(fast, ref, atol=1e-5)
    g_fast = torch.autograd.grad(fast.square().sum(), table)[0]
    g_ref = torch.autograd.grad(ref.square().sum(), table)[0]
    assert torch.allclose(g_fast, g_ref, atol=1e-4)


def test_tcnn_backend_fails_clearly_without_tcnn():
    pytest.importorskip("torch")
    try:
        import tinycudann  # noqa: F401

        pytest.skip("tinycudann is installed here; the failure path cannot be exercised")
    except ImportError:
        pass
    from psdkit.errors import PluginError

    with pytest.raises(PluginError, match=r"'tcnn' needs tiny-cuda-nn .* use backend: torch"):
        HashGridNeRF(HashGridNeRF.Config(backend="tcnn"))
    field = HashGridNeRF(HashGridNeRF.Config(backend="auto", levels=2, log2_table_size=8))
    assert field.backend == "auto"  # no tcnn: decided per call, torch on the CPU
    x = torch.rand(50, 3) * 2 - 1
    assert torch.equal(
        field.encode(x), hash_encode(((x + 1) * 0.5).clamp(0, 1 - 1e-6), field.table, field.resolutions)
    )


def test_empty_space_renders_background():
    field = tiny.make(
        "representation", "hashgrid-nerf", levels=2, log2_table_size=8, blob_density=0.0, density_bias=-30.0
    )
    bg = tiny.make("background", "solid", color=[0.2, 0.4, 0.6])
    out = tiny.tiny_renderer()(field, tiny.tiny_cameras(2, 8), bg)
    assert torch.allclose(out.rgb, torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1).expand(2, 3, 8, 8), atol=1e-4)
    assert out.opacity.max() < 1e-4


def test_occupancy_grid_skips_without_changing_the_image():
    field = tiny.tiny_field()
    cams = tiny.tiny_cameras(2, 16)
    full = tiny.make("renderer", "volume", num_samples=16, occupancy=False)
    skip = tiny.make(
        "renderer", "volume", num_samples=16, occupancy=True, occupancy_warmup=0, occupancy_threshold=1e-3
    )
    skip.refresh(field, 0)
    bg = tiny.tiny_background()
    a, b = full(field, cams, bg), skip(field, cams, bg)
    assert b.stats["active_fraction"] < a.stats["active_fraction"]
    assert torch.allclose(a.rgb, b.rgb, atol=2e-3)


def test_camera_milestones():
    sampler = OrbitCameraSampler(
        build_config(
            OrbitCameraSampler.Config,
            {
                "batch_size": 2,
                "height": 16,
                "width": 16,
                "milestones": [{"step": 5, "height": 32, "width": 24, "batch_size": 1}],
            },
            "camera.config",
        )
    )
    gen = torch.Generator().manual_seed(0)
    assert (len(sampler.sample(4, gen)), sampler.sample(4, gen).height) == (2, 16)
    later = sampler.sample(5, gen)
    assert (len(later), later.height, later.width) == (1, 32, 24)


def test_view_labels_follow_azimuth():
    cams = OrbitCameraSampler(OrbitCameraSampler.Config()).orbit(8)
    # azimuths 0, 45, ..., 315; front is |a| < 45, back is |a| > 135 (a in [-180, 180))
    assert cams.view_labels() == ["front", "side", "side", "side", "back", "side", "side", "side"]
    assert cams.view_labels(front=50, back=130) == ["front", "front", "side", "back", "back", "back", "side", "front"]


class TestImage2D(conformance.RepresentationConformance):
    from psdkit_plugins.representations.image2d import Image2D as plugin_cls


def test_image_renderer_shows_the_image_and_refuses_fields():
    from psdkit.errors import PluginError

    image = tiny.make("representation", "image2d", height=8, width=8)
    renderer = tiny.make("renderer", "image")
    out = renderer(image, tiny.tiny_cameras(3, 16), tiny.tiny_background())
    assert out.rgb.shape == (3, 3, 16, 16) and torch.allclose(out.rgb, torch.full_like(out.rgb, 0.9), atol=1e-5)
    out.rgb.sum().backward()
    assert image.logits.grad.abs().sum() > 0
    with pytest.raises(PluginError, match=r"renderer 'image' needs an image representation"):
        renderer(tiny.tiny_field(), tiny.tiny_cameras(1, 8), tiny.tiny_background())


def test_volume_renderer_owns_the_opacity_regularizers():
    field = tiny.tiny_field()
    out = tiny.make("renderer", "volume", num_samples=8, occupancy=False)(
        field, tiny.tiny_cameras(2, 8), tiny.tiny_background()
    )
    assert tiny.make("renderer", "volume").regularizers(out) == {}  # weights default to 0: no terms
    terms = tiny.make("renderer", "volume", opacity_sparsity=2.0, opacity_entropy=0.5).regularizers(out)
    assert set(terms) == {"sparsity", "entropy"}
    assert torch.allclose(terms["sparsity"], 2.0 * out.opacity.mean())
    a = out.opacity.clamp(1e-5, 1 - 1e-5)
    assert torch.allclose(terms["entropy"], 0.5 * (-(a * a.log() + (1 - a) * (1 - a).log())).mean())
    terms["sparsity"].backward()
    assert field.table.grad is not None and field.table.grad.abs().sum() > 0
