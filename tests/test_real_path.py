"""The real-model path, point by point (issue 10): what the analytic world cannot show.

Each test names the defect it guards against; each failed on the commit before the fix (c771c55). Names
that the fix introduced are imported inside the tests, so that the file runs against that commit (before
the module moves of issue 11).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers", reason="pip install 'psdkit[diffusers]' for the real-model path")

from psdkit_plugins.guidance.dreamdpo import DreamDPO  # noqa: E402
from psdkit_plugins.guidance.dreamreward import DreamReward  # noqa: E402
from psdkit_plugins.guidance.naive_reward import NaiveReward  # noqa: E402
from psdkit_plugins.guidance.psd import PSD  # noqa: E402
from psdkit_plugins.guidance.reward_sds import RewardSDS  # noqa: E402
from psdkit_plugins.priors.deepfloyd_if import DeepFloydIFPrior  # noqa: E402
from psdkit_plugins.priors.stable_diffusion import StableDiffusionPrior  # noqa: E402
from psdkit_plugins.rewards.clip_score import ClipScore  # noqa: E402
from psdkit_plugins.rewards.hpsv2 import HPSv2  # noqa: E402
from psdkit_plugins.rewards.imagereward import ImageReward  # noqa: E402

from psdkit.config.recipe_schema import PromptConfig  # noqa: E402
from psdkit.config.schema import build_config  # noqa: E402
from psdkit.contracts import GuidanceContext, GuidanceInput, RewardModel  # noqa: E402
from psdkit.errors import PluginError  # noqa: E402
from psdkit.ops.distill import guide  # noqa: E402
from psdkit.run.build import make_conditioning  # noqa: E402
from psdkit.testing import tiny  # noqa: E402

W: dict[str, Path] = {}


@pytest.fixture(scope="module", autouse=True)
def _weights(tiny_weights):
    W.update(tiny_weights)


def sd(**kw) -> StableDiffusionPrior:
    cfg = {"model": str(W["sd"]), "resolution": 64, "text_cache": None, **kw}
    return StableDiffusionPrior(build_config(StableDiffusionPrior.Config, cfg, "prior.config")).requires_grad_(False)


def image_reward() -> ImageReward:
    return ImageReward(
        ImageReward.Config(checkpoint=str(W["ir"]), tokenizer=str(W["ir"] / "tokenizer"), vision_heads=4, text_heads=4)
    )


def step_input(images: torch.Tensor, seed: int, step: int = 0, max_steps: int = 10, camera_seed: int = 0):
    """A strategy's input for ``images`` [B, 3, H, W]: B tiny cameras, every view the first label."""
    b = images.shape[0]
    cams = tiny.tiny_cameras(b, 16, seed=camera_seed)
    return GuidanceInput(
        images, cams, torch.zeros(b, dtype=torch.long), step, max_steps, torch.Generator().manual_seed(seed)
    )


def noised(prior, b: int = 2, t=(150, 400), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = prior.encode_images(torch.rand(b, 3, 64, 64, generator=g) * 0.6 + 0.2)
    t = torch.tensor(t[:b])
    alpha, sigma = prior.alpha_sigma(t)
    eps = torch.randn(z.shape, generator=g)
    return z, t, eps, alpha.view(-1, 1, 1, 1) * z + sigma.view(-1, 1, 1, 1) * eps


# ---- 2. rewards score the base prompt -------------------------------------------------------------------
class Recording(RewardModel):
    """A reward that records the prompts it is asked to score (value: mean brightness)."""

    Config = dataclasses.make_dataclass("RecordingConfig", [], frozen=True)

    def __init__(self) -> None:
        super().__init__(self.Config())
        self.seen: list[str] = []

    def forward(self, images, prompts):
        self.seen += prompts
        return images.mean(dim=(1, 2, 3))


@pytest.mark.parametrize(
    ("cls", "cfg"),
    [
        (PSD, {}),
        (PSD, {"neg_loss": "reward", "reward_estimate": {"t_max": 1.0}}),
        (PSD, {"neg_loss": "pairwise", "reward_estimate": {"t_max": 1.0}}),
        (PSD, {"form": "p2", "reward_scaling": {}}),
        (DreamDPO, {}),
        (RewardSDS, {}),
        (DreamReward, {"reward_start": 0.0}),
        (NaiveReward, {}),
        (NaiveReward, {"space": "x0"}),
    ],
    ids=[
        "psd-pool",
        "psd-reward",
        "psd-pairwise",
        "psd-p2-scaling",
        "dreamdpo",
        "reward-sds",
        "dreamreward",
        "naive",
        "naive-x0",
    ],
)
def test_training_rewards_score_the_base_prompt(cls, cfg):
    prior = tiny.tiny_prior()
    cond = make_conditioning(prior, PromptConfig(text="a sphere", view_dependent=True))
    assert any(p != "a sphere" for p in cond.prompts), "the prior's prompts carry view suffixes"
    reward = Recording()
    strategy = cls(build_config(cls.Config, cfg, "guidance.config"))
    prompt = PromptConfig(text="a sphere", view_dependent=True)
    strategy.setup(GuidanceContext(prior=prior, reward=reward, cond=cond, views=tiny.tiny_views(cond, prompt, 16)))
    views = torch.tensor([0, len(cond.labels) - 1])
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    strategy(GuidanceInput(images, tiny.tiny_cameras(2, 16), views, 0, 10, torch.Generator().manual_seed(0)))
    assert reward.seen and set(reward.seen) == {"a sphere"}, set(reward.seen)


# ---- 3. CFG rescale in the model's native prediction space ---------------------------------------------
def test_v_prediction_rescale_matches_diffusers():
    """diffusers rescales the raw (v) outputs; psdkit converts to eps after. On main it rescaled in eps space:
    the x0 estimate then differed by 26% (abar 0.5) to 71% (abar 0.1) on random tensors."""
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

    prior = StableDiffusionPrior(
        build_config(StableDiffusionPrior.Config, {"model": str(W["sd_v"]), "resolution": 64, "text_cache": None}, "")
    ).requires_grad_(False)
    assert prior.prediction_type == "v_prediction"
    z, t, _, x_t = noised(prior, t=(250, 800))
    e_y, e_u = prior.encode_text(["lower", ""]).split(1)
    e_y, e_u = e_y.expand(2, -1, -1), e_u.expand(2, -1, -1)
    scale, phi = 7.5, 0.7
    with torch.no_grad():
        v_c = prior.unet(x_t, t, encoder_hidden_states=e_y).sample
        v_u = prior.unet(x_t, t, encoder_hidden_states=e_u).sample
        v_ref = rescale_noise_cfg(v_u + scale * (v_c - v_u), v_c, guidance_rescale=phi)
        alpha, sigma = prior.alpha_sigma(t)
        expected = alpha.view(-1, 1, 1, 1) * v_ref + sigma.view(-1, 1, 1, 1) * x_t
        from psdkit.ops.distill import NativeSpace

        space = NativeSpace(prior.prediction_type, x_t, alpha, sigma)
        ours = guide(prior.predict_noise(x_t, t, e_u), prior.predict_noise(x_t, t, e_y), scale, phi, space)
        eps_space = guide(prior.predict_noise(x_t, t, e_u), prior.predict_noise(x_t, t, e_y), scale, phi)
    assert torch.allclose(ours, expected, atol=1e-4, rtol=1e-4), (ours - expected).abs().max()
    assert (eps_space - expected).abs().max() > 1e-2, "eps-space rescale is a different function for v-models"


def test_eps_model_rescale_is_unchanged_and_matches_diffusers():
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

    prior = sd()
    _, t, _, x_t = noised(prior)
    e_y, e_u = (e.expand(2, -1, -1) for e in prior.encode_text(["lower", ""]).split(1))
    with torch.no_grad():
        c, u = prior.predict_noise(x_t, t, e_y), prior.predict_noise(x_t, t, e_u)
    from psdkit.ops.distill import NativeSpace

    alpha, sigma = prior.alpha_sigma(t)
    ours = guide(u, c, 7.5, 0.7, NativeSpace("epsilon", x_t, alpha, sigma))
    assert torch.allclose(ours, rescale_noise_cfg(u + 7.5 * (c - u), c, guidance_rescale=0.7), atol=1e-6)


def test_sample_prediction_is_converted_and_unknown_types_are_refused(tmp_path):
    """On main a ``sample`` (x0) model was silently treated as eps, and the IF prior never read the type."""
    from psdkit_plugins.priors.checkpoints import save_stable_diffusion

    path = save_stable_diffusion(tmp_path / "sd_x0", prediction_type="sample")
    prior = StableDiffusionPrior(
        build_config(StableDiffusionPrior.Config, {"model": str(path), "resolution": 64, "text_cache": None}, "")
    ).requires_grad_(False)
    assert prior.prediction_type == "sample"
    _, t, _, x_t = noised(prior)
    emb = prior.encode_text(["lower"]).expand(2, -1, -1)
    x0 = prior.unet(x_t, t, encoder_hidden_states=emb).sample
    alpha, sigma = (v.view(-1, 1, 1, 1) for v in prior.alpha_sigma(t))
    assert torch.allclose(prior.predict_noise(x_t, t, emb), (x_t - alpha * x0) / sigma, atol=1e-5)
    assert torch.allclose(prior.predict_x0(x_t, t, prior.predict_noise(x_t, t, emb)), x0, atol=1e-4)

    sched = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    (path / "scheduler" / "scheduler_config.json").write_text(json.dumps({**sched, "prediction_type": "flow"}))
    with pytest.raises(PluginError, match=r"prior\.config\.prediction_type: the model predicts 'flow'"):
        StableDiffusionPrior(build_config(StableDiffusionPrior.Config, {"model": str(path)}, ""))


def test_deepfloyd_if_reads_its_prediction_type(tmp_path):
    from psdkit_plugins.priors.checkpoints import save_deepfloyd_if

    path = save_deepfloyd_if(tmp_path / "if")
    sched = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    (path / "scheduler" / "scheduler_config.json").write_text(json.dumps({**sched, "prediction_type": "v_prediction"}))
    prior = DeepFloydIFPrior(DeepFloydIFPrior.Config(model=str(path), resolution=16, text_cache=None))
    assert prior.prediction_type == "v_prediction"
    x_t = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([100, 700])
    emb = prior.encode_text(["a red sphere"]).expand(2, -1, -1)
    with torch.no_grad():
        v = prior.unet(x_t, t, encoder_hidden_states=emb).sample[:, :3]
        alpha, sigma = (a.view(-1, 1, 1, 1) for a in prior.alpha_sigma(t))
        assert torch.allclose(prior.predict_noise(x_t, t, emb), alpha * v + sigma * x_t, atol=1e-5)


# ---- 4. the e_n gradient in fp16 --------------------------------------------------------------------------
def psd_neg_grad(prior, reward, **cfg) -> torch.Tensor:
    cond = make_conditioning(prior, PromptConfig(text="a red sphere", negative="blue", view_dependent=False))
    base = {"neg_loss": "reward", "reward_estimate": {"t_max": 1.0}, "guidance_scale": 7.5}
    psd = PSD(build_config(PSD.Config, {**base, **cfg}, ""))
    psd.setup(GuidanceContext(prior=prior, reward=reward, cond=cond))
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    out = psd(step_input(images, seed=0))
    (grad,) = torch.autograd.grad(out.loss, psd.neg_offset)
    return grad


def test_fp16_negative_embedding_gradient_survives_with_loss_scaling():
    """Through the tiny fp16 UNet and VAE with ImageReward, e_n's gradient underflows without loss scaling: with a
    vision tower at transformers 5's BLIP init (weights ~1e-10) every entry was exactly zero; at BERT's init (0.02)
    8% of the entries flush to zero and the direction drifts to cosine 0.89 from fp32's. Dynamic loss scaling keeps
    every entry and fp32's direction (measured: no zeros, cosine 0.9994)."""
    ref = psd_neg_grad(sd(dtype="fp32"), image_reward())
    grad = psd_neg_grad(sd(dtype="fp16"), image_reward())
    unscaled = psd_neg_grad(sd(dtype="fp16"), image_reward(), negative={"loss_scaling": "off"})
    assert torch.isfinite(grad).all() and (grad != 0).all()
    cos = torch.nn.functional.cosine_similarity
    assert cos(grad.flatten(), ref.flatten(), dim=0) > 0.99
    assert (unscaled == 0).float().mean() > 0.01, "the measurement this fix rests on: fp16 alone flushes entries"


class Linear(RewardModel):
    """A well-conditioned reward: a fixed random linear functional of the pixels (per-pixel gradient ~1/N)."""

    Config = dataclasses.make_dataclass("LinearConfig", [], frozen=True)

    def __init__(self) -> None:
        super().__init__(self.Config())
        self.register_buffer("w", torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5)))

    def forward(self, images, prompts):
        return (images * self.w).mean(dim=(1, 2, 3))


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_replay_pool_trains_e_n_through_the_stable_diffusion_unet(dtype):
    """neg_loss pool on a latent UNet: the pool's DDIM samples decode and score, and e_n gets a finite, non-zero
    gradient from the implicit rewards alone; in fp16 the first steps overflow at the initial loss scale, which
    backs off until they do not. (The tiny ImageReward scores the tiny UNet's samples alike to 4 digits, and
    tied pairs teach nothing, so the reward here is the sensitive ``Linear``.)"""
    prior = sd(dtype=dtype)
    prompt = PromptConfig(text="a red sphere", negative="blue", view_dependent=False)
    cond = make_conditioning(prior, prompt)
    psd = PSD(build_config(PSD.Config, {"pool": {"size": 2, "copies": 2, "steps": 3}}, ""))
    psd.setup(GuidanceContext(prior=prior, reward=Linear(), cond=cond, views=tiny.tiny_views(cond, prompt, 64)))
    psd.prepare()
    assert psd.learner.pool.x0.shape == (2, 2, 1, 4, 8, 8)  # entries, copies, views, VAE latents of 64 px
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    for step in range(24):
        out = psd(step_input(images, seed=step, step=step, max_steps=100))
        (grad,) = torch.autograd.grad(out.loss, psd.neg_offset)
        if grad.abs().sum() > 0:
            break
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert step == 0 if dtype == "fp32" else psd.loss_scale.scale < 2.0**16


def test_fp16_gradient_keeps_the_fp32_direction_with_loss_scaling():
    """With a reward whose gradient is well conditioned, fp16 without scaling flushes part of e_n's gradient
    to zero; scaled, every entry survives and the direction matches fp32."""
    ref = psd_neg_grad(sd(dtype="fp32"), Linear())
    scaled = psd_neg_grad(sd(dtype="fp16"), Linear())
    unscaled = psd_neg_grad(sd(dtype="fp16"), Linear(), negative={"loss_scaling": "off"})
    cos = torch.nn.functional.cosine_similarity(scaled.flatten(), ref.flatten(), dim=0)
    assert cos > 0.99, cos
    assert (scaled == 0).float().mean() < (unscaled == 0).float().mean()


def test_loss_scaling_is_exact_in_fp32_and_backs_off_on_overflow():
    from psdkit.ops.loss_scale import DynamicLossScale

    x = torch.randn(8, requires_grad=True)
    plain = torch.autograd.grad((x**2).sum(), x)[0]
    scaler = DynamicLossScale(init=2.0**16, growth_interval=2)
    scaler.update()
    scaled = torch.autograd.grad(scaler.scale_loss((scaler.unscale(x) ** 2).sum()), x)[0]
    assert torch.equal(scaled, plain), "a power-of-two scale is exact"
    huge = DynamicLossScale(init=2.0**16)
    y = huge.unscale(x)
    grad = torch.autograd.grad(huge.scale_loss((y * 1e36).sum()), x)[0]  # 1e36 * 65536 overflows fp32
    assert torch.equal(grad, torch.zeros_like(grad)), "an overflowed gradient is dropped, not applied"
    huge.update()
    assert huge.scale.item() == 2.0**15 and not huge.overflow.item()
    for _ in range(2):  # growth after growth_interval clean backwards
        torch.autograd.grad(scaler.scale_loss((scaler.unscale(x) ** 2).sum()), x)
        scaler.update()
    assert scaler.scale.item() == 2.0**17


# ---- 5. the reward branch's own CFG scale -----------------------------------------------------------------
def test_reward_guidance_scale_changes_only_the_reward_branch():
    ctx = tiny.tiny_context("a sphere", negative="a blue cube")

    def step(**cfg):
        estimate = {"t_max": 1.0, **cfg}
        psd = PSD(
            build_config(PSD.Config, {"neg_loss": "reward", "reward_estimate": estimate, "guidance_scale": 20.0}, "")
        )
        psd.setup(ctx)
        images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)).requires_grad_()
        out = psd(step_input(images, seed=1))
        return torch.autograd.grad(out.loss, [images, psd.neg_offset])

    img_a, neg_a = step()
    img_b, neg_b = step(guidance_scale=2.0)
    assert torch.equal(img_a, img_b), "the 3D update uses the teacher's scale"
    assert not torch.allclose(neg_a, neg_b), "the e_n update scores the reward branch's teacher"


def test_cfg_100_saturates_the_reward_branch_x0():
    """The measurement behind the reward estimate's own guidance_scale (the variants' recipes): decoding the
    tiny UNet's one-step x0 with SD's linear latent->RGB map (``latents: direct``), s = 100 clamps far more pixels
    than s = 7.5 (measured 59.5% vs 7.0%; 6.0% at s = 1). The random tiny VAE hides this: its GroupNorm
    renormalizes the 5x larger latents."""
    prior = sd(latents="direct")
    g = torch.Generator().manual_seed(0)
    z = prior.encode_images(torch.rand(16, 3, 64, 64, generator=g) * 0.6 + 0.2)
    t = torch.randint(20, 500, (16,), generator=g)
    alpha, sigma = prior.alpha_sigma(t)
    x_t = alpha.view(-1, 1, 1, 1) * z + sigma.view(-1, 1, 1, 1) * torch.randn(z.shape, generator=g)
    e_y, e_n = (prior.encode_text([p]).expand(16, -1, -1) for p in ("lower", "wider newer"))
    with torch.no_grad():
        ey, en = prior.predict_noise(x_t, t, e_y), prior.predict_noise(x_t, t, e_n)

        def clamped(s: float) -> float:
            rgb = torch.einsum("blhw,lc->bchw", prior.predict_x0(x_t, t, en + s * (ey - en)), prior.latent_rgb)
            rgb = rgb * 0.5 + 0.5
            return ((rgb < 0) | (rgb > 1)).float().mean().item()

        low, high = clamped(7.5), clamped(100.0)
    assert high > 0.4 and high > 4 * low, (low, high)


# ---- 6. reward-based scaling: warm-up and the variance update ----------------------------------------------
def test_running_moments_are_exact_then_exponential():
    from psdkit.ops.running_moments import RunningMoments

    rng = torch.Generator().manual_seed(0)
    stats = RunningMoments(momentum=0.9)  # exact pooling for the first 10 samples
    seen = []
    for _ in range(5):
        x = torch.randn(2, generator=rng) * 3 + 1
        seen.append(x)
        stats.update(x)
    pooled = torch.cat(seen)
    assert torch.allclose(stats.mean, pooled.mean(), atol=1e-6)
    assert torch.allclose(stats.var, pooled.var(unbiased=False), atol=1e-5)
    for _ in range(200):  # EMA regime: the weights of the exact two-group merge
        stats.update(torch.randn(1, generator=rng) * 3 + 1)
    assert 4.0 < stats.var.item() < 16.0 and abs(stats.mean.item() - 1) < 2


def test_rho_stays_at_one_during_warm_up_and_off_the_bounds_after():
    """On main the running variance started near 1e-8, so rho sat on its clamp bounds for tens of steps
    (simulated: 65% of rho values in steps 1-20). Now rho is 1 until ``reward_scaling.warmup`` rewards are seen, and
    the statistics are exact pooled moments from the first sample on."""
    ctx = tiny.tiny_context("a sphere", negative="a blue cube")
    psd = PSD(build_config(PSD.Config, {"form": "p2", "reward_scaling": {"range": [0.0, 2.0], "warmup": 8}}, ""))
    psd.setup(ctx)
    rhos = []
    for step in range(40):
        images = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(step))
        inp = step_input(images, seed=step, step=step, max_steps=40, camera_seed=step)
        rhos.append(psd(inp).logs["rho"].item())
    assert psd.reward_stats.count.item() == 40
    assert all(r == 1.0 for r in rhos[:7]), rhos[:8]
    after = rhos[8:]
    assert any(r != 1.0 for r in after), "scaling must switch on after the warm-up"
    on_bounds = sum(r in (0.0, 2.0) for r in after) / len(after)
    assert on_bounds < 0.2, rhos


# ---- 7. smaller points -------------------------------------------------------------------------------------
def test_grad_clip_is_per_parameter_group():
    from psdkit.system import clip_per_group

    big = torch.nn.Parameter(torch.zeros(4))
    small = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([{"params": [big]}, {"params": [small]}], lr=1.0)
    big.grad = torch.full((4,), 100.0)
    small.grad = torch.full((4,), 0.1)
    clip_per_group(opt, 1.0)
    assert torch.allclose(big.grad.norm(), torch.tensor(1.0))
    assert torch.allclose(small.grad, torch.full((4,), 0.1)), "a small group is not shrunk by a large one"


def test_text_cache_keys_on_everything_that_changes_an_embedding(tmp_path):
    from psdkit.text_cache import TextCache

    base = {"model": "m", "revision": None, "dtype": torch.float32, "max_length": 77}
    path = TextCache(str(tmp_path), **base).path("a cat")
    for change in ({"dtype": torch.float16}, {"max_length": 32}, {"revision": "v2"}, {"model": "n"}):
        assert TextCache(str(tmp_path), **{**base, **change}).path("a cat") != path, change


def test_deepfloyd_if_cache_with_another_max_length_is_not_reused(tmp_path):
    """On main the key omitted max_length: an entry of the wrong length was reused, or torch.stack crashed."""
    cache = str(tmp_path / "cache")
    short = DeepFloydIFPrior(
        DeepFloydIFPrior.Config(model=str(W["if"]), resolution=16, text_cache=cache, max_length=8)
    )
    assert short.encode_text(["a red sphere"]).shape[1] == 8
    long = DeepFloydIFPrior(
        DeepFloydIFPrior.Config(model=str(W["if"]), resolution=16, text_cache=cache, max_length=16)
    )
    assert long.encode_text(["a red sphere", "a blue cube"]).shape[1] == 16


def test_clip_score_follows_torchmetrics():
    """max(100 cos, 0) per image (torchmetrics' CLIPScore); on main negative cosines gave negative scores."""
    floored = ClipScore(ClipScore.Config(model=str(W["clip"])))
    raw = ClipScore(ClipScore.Config(model=str(W["clip"]), floor=None))
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = floored(images, ["a red sphere"] * 4), raw(images, ["a red sphere"] * 4)
    assert (b < 0).any(), "the tiny CLIP gives negative cosines, which this checks"
    assert torch.equal(a, b.clamp_min(0.0))


# ---- 9. ImageReward's released key set ----------------------------------------------------------------------
def test_imagereward_checkpoint_carries_the_original_key_set():
    state = torch.load(W["ir"] / "ImageReward.pt", weights_only=True)
    assert "blip.text_encoder.embeddings.position_ids" in state
    assert {"blip.vision_proj.weight", "blip.text_proj.weight"} <= set(state)
    image_reward()  # and loads (on main: PluginError: ['embeddings.position_ids'])


def test_imagereward_refuses_unknown_keys(tmp_path):
    from psdkit_plugins.rewards.checkpoints import save_imagereward

    folder = save_imagereward(tmp_path / "ir")
    state = torch.load(folder / "ImageReward.pt", weights_only=True)
    state["blip.text_encoder.encoder.layer.0.extra.weight"] = torch.zeros(2)
    torch.save(state, folder / "ImageReward.pt")
    with pytest.raises(PluginError, match=r"unexpected \['encoder\.layer\.0\.extra\.weight'\]"):
        ImageReward(
            ImageReward.Config(
                checkpoint=str(folder), tokenizer=str(folder / "tokenizer"), vision_heads=4, text_heads=4
            )
        )


def test_hpsv2_refuses_keys_it_cannot_convert(tmp_path):
    from psdkit_plugins.rewards.checkpoints import save_hpsv2

    folder = save_hpsv2(tmp_path / "hps")
    ckpt = torch.load(folder / "HPS_v2.1_compressed.pt", weights_only=True)
    ckpt["state_dict"]["module.visual.transformer.resblocks.0.ls_1.gamma"] = torch.ones(32)
    torch.save(ckpt, folder / "HPS_v2.1_compressed.pt")
    with pytest.raises(PluginError, match=r"ls_1\.gamma"):
        HPSv2(HPSv2.Config(checkpoint=str(folder), tokenizer=str(folder / "clip"), vision_heads=4, text_heads=4))


# ---- 10. each reward's reference preprocessing --------------------------------------------------------------
@pytest.mark.parametrize(
    ("hw", "fit", "resize", "crop", "pad"),
    [
        # square: every fit is a plain resize
        ((512, 512), "torchvision", (224, 224), (0, 0), (0, 0, 0, 0)),
        ((512, 512), "transformers", (224, 224), (0, 0), (0, 0, 0, 0)),
        ((512, 512), "pad", (224, 224), (0, 0), (0, 0, 0, 0)),
        # 512 x 384: short side 224, long int(224 * 512 / 384) = 298 (298.67 rounded down); HPSv2 pads
        ((512, 384), "torchvision", (298, 224), (37, 0), (0, 0, 0, 0)),
        ((512, 384), "transformers", (298, 224), (37, 0), (0, 0, 0, 0)),
        ((512, 384), "pad", (224, 168), (0, 0), (28, 0, 28, 0)),
        # odd remainders: long side int(224 * 300 / 251) = 267, crop (267 - 224) / 2 = 21.5 -> round half to even 22;
        # (251 - 224) / 2 = 13.5 -> torchvision 14 (half to even), transformers 13 (floor)
        ((300, 251), "torchvision", (267, 224), (22, 0), (0, 0, 0, 0)),
        ((224, 251), "torchvision", (224, 251), (0, 14), (0, 0, 0, 0)),
        ((224, 251), "transformers", (224, 251), (0, 13), (0, 0, 0, 0)),
        # pad: round(100 * 224 / 300) = 75 (74.67), padding 149 split 74 before, 75 after
        ((100, 300), "pad", (75, 224), (0, 0), (0, 74, 0, 75)),
    ],
)
def test_reference_geometry(hw, fit, resize, crop, pad):
    from psdkit_plugins.backbones.clip import geometry

    g = geometry(*hw, 224, fit)
    assert (g.resize, g.crop, g.pad) == (resize, crop, pad)


def test_hpsv2_scores_a_non_square_image_like_its_padded_square():
    """HPSv2's reference fits the longest side and pads with black; on main psdkit centre-cropped instead."""
    hps = HPSv2(HPSv2.Config(checkpoint=str(W["hps"]), tokenizer=str(W["hps"] / "clip"), vision_heads=4, text_heads=4))
    wide = torch.rand(1, 3, 16, 32, generator=torch.Generator().manual_seed(0))  # long side = the input size
    squared = torch.zeros(1, 3, 32, 32)
    squared[..., 8:24, :] = wide
    with torch.no_grad():
        assert torch.allclose(hps(wide, ["lower"]), hps(squared, ["lower"]), atol=1e-6)
    from psdkit_plugins.backbones.clip import preprocess

    x = preprocess(wide, 32, "pad")
    assert x.shape == (1, 3, 32, 32)
    black = (0.0 - torch.tensor([0.48145466, 0.4578275, 0.40821073])) / torch.tensor(
        [0.26862954, 0.26130258, 0.27577711]
    )
    assert torch.allclose(x[0, :, 0, 0], black, atol=1e-5) and torch.allclose(x[0, :, -1, -1], black, atol=1e-5)
