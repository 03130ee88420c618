"""The analytic world: exact prior, text weights, object renders, rewards."""

from __future__ import annotations

import torch
from analytic_reference import posterior_eps

from psdkit.testing import tiny
from psdkit.world import DEFAULT_OBJECTS, render_objects


def test_prior_eps_is_the_exact_posterior_mean():
    prior = tiny.tiny_prior(16)
    cams = tiny.tiny_cameras(3, 16)
    x_t = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([50, 500, 990])
    emb = prior.encode_text(["a red sphere", "a sphere", ""])
    assert torch.allclose(prior.predict_noise(x_t, t, emb, cams), posterior_eps(prior, x_t, t, emb, cams), atol=1e-5)


def test_text_selects_objects():
    prior = tiny.tiny_prior()
    names = [o.name for o in prior.objects]
    w = prior.mixture_weights(prior.encode_text(["", "a red sphere", "a sphere", "a sphere, front view"]))
    assert torch.allclose(w[0], torch.full((len(names),), 1 / len(names)))
    assert names[int(w[1].argmax())] == "red-sphere" and w[1].max() > 0.9
    red, blue = names.index("red-sphere"), names.index("blue-sphere")
    assert torch.isclose(w[2, red], w[2, blue]) and w[2, red] + w[2, blue] > 0.95
    assert torch.allclose(w[2], w[3], atol=1e-6), "unknown words must not change the weights"
    assert prior.answers("a sphere") == ["red-sphere", "blue-sphere"]


def test_object_renders():
    cams = tiny.tiny_cameras(2, 32)
    imgs = render_objects(DEFAULT_OBJECTS, cams)
    assert imgs.shape == (len(DEFAULT_OBJECTS), 2, 3, 32, 32)
    assert torch.allclose(imgs[..., 0, 0], torch.ones(len(DEFAULT_OBJECTS), 2, 3)), "corners are background"
    centre = imgs[..., 16, 16]  # [K, B, 3]
    for k, obj in enumerate(DEFAULT_OBJECTS):
        colour = torch.tensor(obj.color)
        cos = torch.nn.functional.cosine_similarity(centre[k], colour.expand_as(centre[k]), dim=-1)
        assert (cos > 0.99).all(), f"{obj.name}: centre pixel is a shade of its colour"


def test_rewards_prefer_the_red_sphere():
    cams = tiny.tiny_cameras(4, 32)
    imgs = render_objects(DEFAULT_OBJECTS, cams)
    names = [o.name for o in DEFAULT_OBJECTS]
    train, held = tiny.tiny_reward(), tiny.make("reward", "analytic-heldout")
    for reward in (train, held):
        scores = {n: float(reward(imgs[k], ["a sphere"] * 4).mean()) for k, n in enumerate(names)}
        assert max(scores, key=scores.get) == "red-sphere", scores
        blue = {n: float(reward(imgs[k], ["a blue sphere"] * 4).mean()) for k, n in enumerate(names)}
        assert blue["blue-sphere"] > blue["red-sphere"], "naming a colour outweighs the warmth preference"


def test_heldout_penalizes_off_manifold_images():
    cams = tiny.tiny_cameras(2, 32)
    red = render_objects(DEFAULT_OBJECTS[:1], cams)[0]
    held = tiny.make("reward", "analytic-heldout")
    painted = red.clone()
    painted[:, 1:] *= 0.2  # red everywhere, background included
    noisy = (red + 0.3 * torch.randn(red.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    base = held(red, ["a sphere"] * 2)
    assert (held(painted, ["a sphere"] * 2) < base).all()
    assert (held(noisy, ["a sphere"] * 2) < base).all()
    train = tiny.tiny_reward()
    assert (train(painted, ["a sphere"] * 2) > train(red, ["a sphere"] * 2)).all(), "the train reward can be hacked"


def test_prior_cache_follows_camera_values_not_memory():
    """A new camera batch at a reused address must not get the previous batch's renders."""
    prior = tiny.tiny_prior(16)
    a, b = tiny.tiny_cameras(2, 16, seed=0), tiny.tiny_cameras(2, 16, seed=1)
    mu_a = prior.means(a).clone()
    b.c2w = a.c2w  # same tensor object and address, new values below
    with torch.no_grad():
        a.c2w.copy_(tiny.tiny_cameras(2, 16, seed=1).c2w)
    assert not torch.allclose(prior.means(b), mu_a)
    assert torch.allclose(prior.means(b), render_objects(prior.objects, tiny.tiny_cameras(2, 16, seed=1)) * 2 - 1)


def test_extra_objects_are_opt_in_and_give_a_three_answer_prompt():
    from psdkit_plugins.priors.analytic import AnalyticPrior

    from psdkit.config.schema import build_config
    from psdkit.world import EXTRA_OBJECTS, WORLD_OBJECTS

    default = AnalyticPrior(AnalyticPrior.Config(resolution=16))
    assert [o.name for o in default.objects] == [o.name for o in DEFAULT_OBJECTS], "the default world is unchanged"
    names = [o.name for o in WORLD_OBJECTS]
    wide = AnalyticPrior(build_config(AnalyticPrior.Config, {"resolution": 16, "objects": names}, "prior.config"))
    assert len(wide.objects) == len(DEFAULT_OBJECTS) + len(EXTRA_OBJECTS)
    assert wide.answers("a bead") == ["orange-bead", "yellow-bead", "teal-bead"]
    assert wide.answers("a block") == ["pink-block", "grey-block"]
    assert wide.answers("a sphere") == default.answers("a sphere")
    cams = tiny.tiny_cameras(2, 16)
    emb = wide.encode_text(["a bead"])
    w = wide.mixture_weights(emb)[0]
    beads = [names.index(n) for n in wide.answers("a bead")]
    assert w[beads].sum() > 0.85 and torch.allclose(w[beads], w[beads[0]].expand(3))
    refs = wide.references(cams)
    assert set(refs) == set(names) and all(torch.isfinite(r).all() for r in refs.values())
