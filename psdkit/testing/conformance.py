"""Conformance test mixins, one per component kind, for plugin authors.

Subclass the mixin in a pytest class, set ``plugin_cls`` and, if the defaults are too large or need
weights, override ``tiny_config()``::

    class TestMyReward(RewardConformance):
        plugin_cls = MyReward

        def tiny_config(self):
            return MyReward.Config(model="path/to/tiny")

Each mixin checks the contract: config round-trip and documentation, output shapes and ranges,
finiteness, differentiability, determinism, and the CPU path; for priors and rewards, the weight hooks they
declare (``required_weights``, and that tiny ``random_weights`` load through the plugin).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import torch

from psdkit.config import yaml_load
from psdkit.config.schema import build_config, config_to_dict, field_docs
from psdkit.contracts import GuidanceInput, GuidanceStrategy
from psdkit.contracts.capabilities import DensityField
from psdkit.contracts.weights import offers_random_weights
from psdkit.testing import tiny


class ComponentConformance:
    """Checks every plugin must pass."""

    plugin_cls: ClassVar[type[Any]]

    def tiny_config(self) -> Any:
        """A config small enough for a CPU test. Default: the plugin's defaults."""
        return self.plugin_cls.Config()

    def build(self) -> Any:
        """An instance from :meth:`tiny_config`."""
        return self.plugin_cls(self.tiny_config())

    def test_config_is_frozen_dataclass(self) -> None:
        cfg_cls = self.plugin_cls.Config
        assert isinstance(cfg_cls, type) and dataclasses.is_dataclass(cfg_cls), "Config must be a dataclass"
        assert cfg_cls.__dataclass_params__.frozen, "Config must be frozen"  # type: ignore[attr-defined]

    def test_config_round_trips(self) -> None:
        cfg = self.tiny_config()
        assert build_config(self.plugin_cls.Config, config_to_dict(cfg), "cfg") == cfg

    def test_every_config_field_documented(self) -> None:
        docs = field_docs(self.plugin_cls.Config)
        missing = [f.name for f in dataclasses.fields(self.plugin_cls.Config) if not docs.get(f.name)]
        assert not missing, f"fields without a docstring: {missing}"

    def test_class_documented(self) -> None:
        assert (self.plugin_cls.__doc__ or "").strip(), "the plugin class needs a docstring"


class WeightHooksConformance(ComponentConformance):
    """The weight hooks of priors and rewards (:class:`psdkit.contracts.weights.LoadsWeights`)."""

    def test_required_weights_are_declared(self) -> None:
        items = self.plugin_cls.required_weights(self.tiny_config())
        assert isinstance(items, list)
        for item in items:
            assert isinstance(item, tuple) and len(item) == 2, item
            assert isinstance(item[0], str) and item[0] and isinstance(item[1], bool), item

    def test_tiny_random_weights_build_the_plugin(self, tmp_path: Path) -> None:
        """If the plugin offers random weights: the tiny ones load through its own loading code."""
        if not offers_random_weights(self.plugin_cls):
            return
        overrides = self.plugin_cls.random_weights(self.tiny_config(), tmp_path / "weights", "tiny")
        data = config_to_dict(self.tiny_config())
        for item in overrides:
            key, _, value = item.partition("=")
            data[key] = yaml_load.load(value) if value else ""
        config = build_config(self.plugin_cls.Config, data, "config")
        assert all(present for _, present in self.plugin_cls.required_weights(config)), "the overrides point at them"
        assert isinstance(self.plugin_cls(config), torch.nn.Module)


class RewardConformance(WeightHooksConformance):
    """Reward models: [B] finite scores, differentiable in the image, any resolution, deterministic."""

    def test_scores(self) -> None:
        model = self.build().eval()
        images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0), requires_grad=True)
        scores = model(images, ["a red sphere"] * 3)
        assert scores.shape == (3,)
        assert torch.isfinite(scores).all()
        scores.sum().backward()
        assert images.grad is not None and torch.isfinite(images.grad).all()
        assert images.grad.abs().sum() > 0, "the reward must depend on the image"

    def test_deterministic_and_resolution_agnostic(self) -> None:
        model = self.build().eval()
        images = torch.rand(2, 3, 48, 40, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            a, b = model(images, ["a", "b"]), model(images, ["a", "b"])
        assert torch.equal(a, b)


class PriorConformance(WeightHooksConformance):
    """Diffusion priors: shapes, a valid noise schedule, eps differentiable in the text embedding."""

    def test_schedule(self) -> None:
        prior = self.build()
        t = torch.arange(0, prior.num_train_timesteps, max(prior.num_train_timesteps // 10, 1))
        alpha, sigma = prior.alpha_sigma(t)
        assert torch.allclose(alpha**2 + sigma**2, torch.ones_like(alpha), atol=1e-4)
        assert (alpha[1:] <= alpha[:-1]).all(), "alpha_t must not increase with t"

    def test_noise_prediction(self) -> None:
        """Two groups of ``views_per_group`` views (two single views for a single-view prior)."""
        prior = self.build()
        g = prior.views_per_group()
        cams = tiny.tiny_cameras(2 * g, 16)
        z = prior.encode_images(torch.rand(2 * g, 3, 16, 16))
        emb = prior.encode_text(["a red sphere", ""]).repeat_interleave(g, 0).requires_grad_(True)
        t = torch.tensor([100, prior.num_train_timesteps - 1]).repeat_interleave(g)
        eps = prior.predict_noise(z, t, emb, cams)
        assert eps.shape == z.shape and torch.isfinite(eps).all()
        eps.square().sum().backward()
        assert emb.grad is not None and torch.isfinite(emb.grad).all()
        img = prior.decode(z)
        assert img.shape[:2] == (2 * g, 3) and img.min() >= 0 and img.max() <= 1


class RepresentationConformance(ComponentConformance):
    """Fields: density >= 0, rgb in [0, 1], gradients reach every optimized parameter."""

    def test_field(self) -> None:
        field = self.build()
        pts = (torch.rand(64, 3) * 2 - 1) * field.bound
        out = field(pts)
        assert out.density.shape == (64,) and out.rgb.shape == (64, 3)
        assert (out.density >= 0).all() and (out.rgb >= 0).all() and (out.rgb <= 1).all()
        (out.density.sum() + out.rgb.sum()).backward()
        grouped = [p for g in field.param_groups() for p in g.params]
        assert {id(p) for p in grouped} == {id(p) for p in field.parameters()}, "param_groups must cover all"
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in grouped)

    def test_density_field(self) -> None:
        """A field declaring DensityField (mesh export) gives forward's density from ``density`` alone."""
        field = self.build()
        pts = (torch.rand(64, 3) * 2 - 1) * field.bound
        with torch.no_grad():
            full = field(pts).density
            if isinstance(field, DensityField):
                assert torch.allclose(field.density(pts), full, atol=1e-5)


class RendererConformance(ComponentConformance):
    """Renderers: image shapes and ranges; empty space shows the background."""

    def tiny_representation(self) -> Any:
        """What the renderer draws in the test. Default: a tiny hash-grid field (override for a renderer whose
        ``requires`` a tiny field lacks, e.g. Gaussians)."""
        return tiny.tiny_field()

    def test_render(self) -> None:
        renderer = self.build()
        cams = tiny.tiny_cameras(2, 12)
        rep = self.tiny_representation()
        assert all(isinstance(rep, cap) for cap in renderer.requires), "tiny_representation lacks a capability"
        out = renderer(rep, cams, tiny.tiny_background(), torch.Generator().manual_seed(0))
        assert out.rgb.shape == (2, 3, 12, 12) and out.opacity.shape == (2, 1, 12, 12)
        assert (out.opacity >= 0).all() and (out.opacity <= 1 + 1e-5).all()
        assert out.rgb.min() >= -1e-5 and out.rgb.max() <= 1 + 1e-5


class CameraConformance(ComponentConformance):
    """Camera samplers: deterministic per generator, orthonormal poses, orbit size."""

    def test_sampling(self) -> None:
        sampler = self.build()
        a = sampler.sample(0, torch.Generator().manual_seed(3))
        b = sampler.sample(0, torch.Generator().manual_seed(3))
        assert torch.equal(a.c2w, b.c2w)
        rot = a.c2w[:, :3, :3]
        eye = torch.eye(3).expand_as(rot)
        assert torch.allclose(rot.transpose(1, 2) @ rot, eye, atol=1e-5)
        assert len(sampler.orbit(5)) == 5


class GuidanceConformance(ComponentConformance):
    """Strategies: finite scalar loss, gradient reaches the renders, deterministic per generator."""

    prompt: ClassVar[str] = "a sphere"

    def strategy(self) -> GuidanceStrategy:
        """A strategy set up with the analytic prior and reward."""
        s = self.build()
        s.setup(tiny.tiny_context(self.prompt))
        return s

    def run_once(self, s: GuidanceStrategy, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, d loss / d images) for one step with a seeded generator."""
        images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0), requires_grad=True)
        inp = GuidanceInput(
            images,
            tiny.tiny_cameras(2, 16),
            torch.zeros(2, dtype=torch.long),
            0,
            10,
            torch.Generator().manual_seed(seed),
        )
        out = s(inp)
        assert out.loss.dim() == 0 and torch.isfinite(out.loss)
        (grad,) = torch.autograd.grad(out.loss, images, retain_graph=False, allow_unused=False)
        return out.loss.detach(), grad

    def test_loss_and_gradient(self) -> None:
        loss, grad = self.run_once(self.strategy(), 0)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0

    def test_deterministic(self) -> None:
        s = self.strategy()
        l1, g1 = self.run_once(s, 5)
        l2, g2 = self.run_once(s, 5)
        assert torch.equal(l1, l2) and torch.equal(g1, g2)
