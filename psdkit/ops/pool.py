"""A replay pool of the prior's own answers to a prompt, ranked by a reward, and the loss that teaches a negative
embedding e_n from it (PSD's ``neg_loss: pool``; docs/method.md, "Comparing the prompt's answers").

The pool holds ``size`` entries per prompt label (view suffix). An entry is one camera group (a single view for a
single-view prior, the ``views_per_group`` views of one object for a multi-view prior) with ``copies`` samples of
the prompt-conditioned prior there (CFG against the empty prompt, deterministic DDIM from pure noise), each scored
once by the training reward (the mean over its views). The samples of an entry share the camera and the prompt, so
their ranking compares answers, not viewpoints. Entries depend only on the seed, the slot and its generation:
neither on the 3D model nor on e_n, nor on the batch size or the number of ranks (every rank draws the same pool).
Each e_n update picks a fixed number of entries of the whole pool, noises each entry's samples with one shared
timestep and noise, and trains e_n with Diffusion-DPO's Bradley-Terry loss on the implicit rewards
``r = -beta * (|eps - eps_y(x_t)|^2 - |eps - eps_n(x_t)|^2)`` of every ranked pair. Every rank picks and compares
the same entries (the update does not depend on the render), so e_n's gradient is the same bit for bit on any
number of ranks and the update costs each rank the same whatever the world size.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from psdkit.contracts.camera import Cameras
from psdkit.contracts.guidance import Conditioning, ViewSource
from psdkit.errors import PsdkitWarning
from psdkit.ops.distill import broadcast, ddim_step, draw_noise, guide, predict_many
from psdkit.ops.seeding import step_generator

CAMERA_FIELDS = ("c2w", "fov_y", "elevation", "azimuth", "distance")


@dataclasses.dataclass(frozen=True)
class PoolSpec:
    """How the pool is drawn."""

    size: int
    """Entries (camera groups) per prompt label."""
    copies: int
    """Samples per entry."""
    steps: int
    """DDIM steps per sample."""
    guidance_scale: float
    """CFG scale against the empty prompt."""
    draw_batch: int
    """Entries per batched prior call while drawing."""


@torch.no_grad()
def ddim_sample(
    prior: Any, noise: Tensor, cameras: Cameras, view_index: Tensor, cond: Conditioning, steps: int, scale: float
) -> Tensor:
    """[N, ...] samples of the prompt (label ``view_index`` [N] per row) from ``noise`` [N, ...]: deterministic DDIM
    (eta 0) in ``steps`` steps at CFG ``scale`` against the empty prompt."""
    x = noise
    e_y, e_u = cond.prompt_emb[view_index], cond.uncond_emb.expand(len(x), -1, -1)
    ts = torch.linspace(prior.num_train_timesteps - 1, 0, steps + 1).round().long().to(x.device)
    for i in range(steps):
        t = ts[i].repeat(len(x))
        eps = guide(prior.predict_noise(x, t, e_u, cameras), prior.predict_noise(x, t, e_y, cameras), scale)
        if i + 1 < steps:
            x = ddim_step(prior, x, t, ts[i + 1].repeat(len(x)), eps)
    return prior.predict_x0(x, t, eps)


class ReplayPool:
    """``size`` entries per label, each ``copies`` samples of ``group`` views at one camera group; entry
    ``l * size + k`` is the k-th of label ``l``.

    Its tensors (:meth:`state`) are what a checkpoint keeps: a resume continues with the very same pool.
    """

    def __init__(self, spec: PoolSpec, labels: int, group: int) -> None:
        self.spec, self.labels, self.group = spec, labels, group
        self.x0: Tensor | None = None
        """[N, copies, group, ...] the samples in the prior's space (N = labels x size)."""
        self.reward: Tensor = torch.empty(0)
        """[N, copies] each sample's reward (mean over its views); NaN where the reward was not finite."""
        self.view_index = torch.empty(0, dtype=torch.long)
        """[N, group] each view's prompt label."""
        self.cameras: dict[str, Tensor] = {}
        """Camera fields [N, group, ...] (``CAMERA_FIELDS``)."""
        self.image_size = (0, 0)
        self.generation = torch.empty(0, dtype=torch.long)
        """[N] how often each slot was drawn (0 for the first draw)."""
        self.refreshed = 0
        """Refreshes done so far (the next one replaces the slots after the last one's)."""

    @property
    def entries(self) -> int:
        """N, the number of slots."""
        return self.labels * self.spec.size

    @property
    def ready(self) -> bool:
        """Whether the pool has been drawn (or loaded from a checkpoint)."""
        return self.x0 is not None

    def ranked(self) -> bool:
        """Whether some entry has two samples whose finite rewards differ (otherwise no pair trains e_n)."""
        r = self.reward
        ok = torch.isfinite(r)
        lo = torch.where(ok, r, torch.full_like(r, math.inf)).min(1).values
        hi = torch.where(ok, r, torch.full_like(r, -math.inf)).max(1).values
        return bool((hi > lo).any())

    # ---- drawing ---------------------------------------------------------------------------------------------
    def draw(
        self, slots: list[int], prior: Any, reward: Any, cond: Conditioning, views: ViewSource,
        progress: Callable[[int], None] | None = None,
    ) -> None:  # fmt: skip
        """Draw (or redraw) ``slots``: each gets a camera group of its label and fresh noises, both from generators
        of (seed, slot, generation) alone, so the pool does not depend on the batching or the number of ranks."""
        if not self.ready:
            self._allocate(prior, views)
        assert self.x0 is not None
        dev = cond.prompt_emb.device
        c, g = self.spec.copies, self.group
        for i in range(0, len(slots), self.spec.draw_batch):
            chunk = slots[i : i + self.spec.draw_batch]
            cams, vi, noise = self._inputs(chunk, views)  # rows: entry, copy, view
            x0 = ddim_sample(prior, noise.to(dev), cams.to(dev), vi.to(dev), cond, self.spec.steps,
                             self.spec.guidance_scale)  # fmt: skip
            with torch.no_grad():
                r = reward(prior.decode(x0), [cond.base_prompt] * len(x0)).float().view(len(chunk), c, g)
            idx = torch.tensor(chunk)
            self.x0[idx] = x0.view(len(chunk), c, g, *x0.shape[1:]).to(self.x0)
            self.reward[idx] = torch.where(torch.isfinite(r).all(2), r.mean(2), torch.nan).to(self.reward)
            self.view_index[idx] = vi.view(len(chunk), c, g)[:, 0].to(self.view_index.device)
            for f in CAMERA_FIELDS:
                field = getattr(cams, f)
                self.cameras[f][idx] = field.view(len(chunk), c, g, *field.shape[1:])[:, 0].to(self.cameras[f])
            if progress is not None:
                progress(len(chunk))
        bad = int((~torch.isfinite(self.reward[torch.tensor(slots)])).sum())
        if bad:
            warnings.warn(
                f"replay pool: {bad} of {len(slots)} samples got a non-finite reward; they leave the ranking",
                PsdkitWarning,
                stacklevel=2,
            )

    def _allocate(self, prior: Any, views: ViewSource) -> None:
        """Empty tensors for every slot (the sample shape from one encoded blank image)."""
        cams, _ = views.sample(step_generator(views.seed, 0, 0, "pool-shape"))
        with torch.no_grad():
            blank = torch.ones(1, 3, cams.height, cams.width, device=prior_device(prior))
            shape = tuple(prior.encode_images(blank).shape[1:])
        n, g, dev = self.entries, self.group, prior_device(prior)
        self.x0 = torch.zeros(n, self.spec.copies, g, *shape, device=dev)
        self.reward = torch.full((n, self.spec.copies), torch.nan, device=dev)
        self.view_index = torch.zeros(n, g, dtype=torch.long, device=dev)
        self.cameras = {f: torch.zeros(n, g, *getattr(cams, f).shape[1:], device=dev) for f in CAMERA_FIELDS}
        self.image_size = (cams.height, cams.width)
        self.generation = torch.zeros(n, dtype=torch.long)

    def _inputs(self, slots: list[int], views: ViewSource) -> tuple[Cameras, Tensor, Tensor]:
        """(cameras, labels, noise [...]) of ``slots``, rows ordered entry, copy, view."""
        assert self.x0 is not None
        groups, labels, noise = [], [], []
        for s in slots:
            gen = int(self.generation[s])
            cams, vi = self._camera_group(s // self.spec.size, views, step_generator(views.seed, 0, s, f"pool-c{gen}"))
            groups.append(cams.repeat(self.spec.copies))
            labels.append(vi.repeat(self.spec.copies))
            noise_gen = step_generator(views.seed, 0, s, f"pool-n{gen}")
            noise.append(torch.randn(self.x0.shape[1:], generator=noise_gen).flatten(0, 1))
        cat = {f: torch.cat([getattr(c, f) for c in groups]) for f in CAMERA_FIELDS}
        return _cameras(cat, groups[0].height, groups[0].width), torch.cat(labels), torch.cat(noise)

    def _camera_group(self, label: int, views: ViewSource, gen: torch.Generator) -> tuple[Cameras, Tensor]:
        """The first group of views drawn from ``gen`` whose first view has ``label``."""
        g = self.group
        for _ in range(10_000):
            cams, vi = views.sample(gen)
            hits = (vi[::g] == label).nonzero()
            if len(hits):
                j = int(hits[0]) * g
                part = {f: getattr(cams, f)[j : j + g] for f in CAMERA_FIELDS}
                return _cameras(part, cams.height, cams.width), vi[j : j + g]
        raise RuntimeError(f"replay pool: the camera sampler never gave a view of label {label} in 10,000 batches")

    def refresh_slots(self, share: float) -> list[int]:
        """The next ``ceil(share x N)`` slots in round-robin order (the oldest first); advances the counters."""
        n = self.entries
        k = min(n, math.ceil(share * n))
        start = (self.refreshed * k) % n
        slots = [(start + i) % n for i in range(k)]
        self.refreshed += 1
        self.generation[torch.tensor(slots)] += 1
        return slots

    def to(self, device: torch.device) -> None:
        """Move the samples, rewards, labels and cameras to ``device`` (an update then reads nothing back)."""
        if self.x0 is not None:
            self.x0, self.reward, self.view_index = (t.to(device) for t in (self.x0, self.reward, self.view_index))
            self.cameras = {f: v.to(device) for f, v in self.cameras.items()}

    # ---- checkpoint --------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Tensor]:
        """CPU tensors (a ``weights_only`` checkpoint loads them)."""
        if self.x0 is None:
            return {}
        cameras = {f"camera.{f}": v.cpu() for f, v in self.cameras.items()}
        return {"x0": self.x0.cpu(), "reward": self.reward.cpu(), "view_index": self.view_index.cpu(),
                "generation": self.generation, "refreshed": torch.tensor(self.refreshed),
                "image_size": torch.tensor(self.image_size), **cameras}  # fmt: skip

    def load(self, state: dict[str, Tensor]) -> None:
        """Restore :meth:`state` (an empty state leaves the pool to be drawn)."""
        if not state:
            return
        want = (self.entries, self.spec.copies, self.group)
        if tuple(state["x0"].shape[:3]) != want:
            raise ValueError(
                f"the checkpoint's replay pool has {tuple(state['x0'].shape[:3])} entries x copies x views, the "
                f"recipe asks for {want} (pool.size x labels, pool.copies, the prior's views per group)"
            )
        self.x0, self.reward, self.view_index = state["x0"], state["reward"], state["view_index"]
        self.generation, self.refreshed = state["generation"], int(state["refreshed"])
        self.image_size = (int(state["image_size"][0]), int(state["image_size"][1]))
        self.cameras = {f: state[f"camera.{f}"] for f in CAMERA_FIELDS}

    def nbytes(self) -> int:
        """Bytes of the pool's tensors (what a checkpoint gains)."""
        tensors = [self.reward, self.view_index, self.generation, *self.cameras.values()]
        tensors += [self.x0] if self.x0 is not None else []
        return sum(t.numel() * t.element_size() for t in tensors)

    # ---- the e_n loss ------------------------------------------------------------------------------------------
    def pick(self, generator: torch.Generator, count: int) -> Tensor:
        """[count] slots drawn uniformly over the whole pool (every label) from ``generator``: the same on every rank
        when the generator is."""
        return torch.randint(self.entries, (count,), generator=generator)

    def rows(self, slots: Tensor) -> tuple[Tensor, Cameras, Tensor, Tensor]:
        """Rows of the entries ``slots`` [G], copies major and views consecutive: (x0 [copies * G * group, ...],
        their cameras, labels [copies * G * group], rewards [copies, G])."""
        assert self.x0 is not None
        c = self.spec.copies
        slots = slots.to(self.x0.device)
        x0 = self.x0[slots].transpose(0, 1).flatten(0, 2)
        h, w = self.image_size
        fields = {f: v[slots].flatten(0, 1).repeat(c, *([1] * (v.dim() - 2))) for f, v in self.cameras.items()}
        cams = _cameras(fields, h, w)
        return x0, cams, self.view_index[slots].flatten().repeat(c), self.reward[slots].T


def _cameras(fields: dict[str, Tensor], height: int, width: int) -> Cameras:
    """Cameras from their tensor fields (``CAMERA_FIELDS``)."""
    return Cameras(fields["c2w"], fields["fov_y"], fields["elevation"], fields["azimuth"], fields["distance"], height,
                   width)  # fmt: skip


def prior_device(prior: Any) -> torch.device:
    """The device of a prior's first parameter or buffer (the CPU for a prior without tensors)."""
    for t in (*prior.parameters(), *prior.buffers()):
        return t.device
    return torch.device("cpu")


def pool_loss(
    prior: Any, pool: ReplayPool, slots: Tensor, cond: Conditioning, e_n: Tensor, beta: float,
    t_range: tuple[float, float], generator: torch.Generator, batched: bool = False,
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:  # fmt: skip
    """([pairs] Bradley-Terry loss per ranked pair, [pairs] weight: 1 where both rewards are finite and differ, logs).

    ``slots`` [G] are the entries compared. ``e_n`` [1, L, D] carries the gradient. The samples of an entry share
    one timestep in ``t_range`` (fractions of T) and one noise, drawn from ``generator``; a sample's implicit reward
    is the mean over its views (one comparison per object). ``batched`` runs eps_y and eps_n in one prior call (its
    backward spans both: cheaper where launches, not arithmetic, bound the prior).
    """
    copies, groups = pool.spec.copies, len(slots)
    x0, cams, vi, reward = pool.rows(slots)
    dev = e_n.device
    x0, cams, vi = x0.to(dev), cams.to(dev), vi.to(dev)
    rows = groups * pool.group
    t, eps = draw_noise(generator, (rows, *x0.shape[1:]), *t_range, prior.num_train_timesteps, group=pool.group)
    t, eps = t.to(dev).repeat(copies), eps.to(x0).repeat(copies, *([1] * (eps.dim() - 1)))
    alpha, sigma = prior.alpha_sigma(t)
    x_t = broadcast(alpha, x0) * x0 + broadcast(sigma, x0) * eps
    e_y, e_n = cond.prompt_emb[vi], e_n.expand(len(x_t), -1, -1).to(x_t)
    if batched:
        eps_y, eps_n = predict_many(prior, x_t, t, [e_y, e_n], cams)
        eps_y = eps_y.detach()
    else:
        with torch.no_grad():
            eps_y = prior.predict_noise(x_t, t, e_y, cams)
        eps_n = prior.predict_noise(x_t, t, e_n, cams)
    err_y = ((eps - eps_y) ** 2).flatten(1).mean(1)
    err_n = ((eps - eps_n) ** 2).flatten(1).mean(1)
    implicit = (-beta * (err_y - err_n)).view(copies, groups, pool.group).mean(2)
    reward = reward.to(dev)
    i, j = torch.triu_indices(copies, copies, 1, device=dev)
    diff = reward[i] - reward[j]  # [pairs, G]
    sign = torch.where(torch.isfinite(diff), torch.sign(diff), torch.zeros_like(diff))
    loss = -F.logsigmoid(sign * (implicit[i] - implicit[j]))
    weight = (sign != 0).float()
    finite = torch.isfinite(reward)
    mean = torch.where(finite, reward, 0.0).sum() / finite.sum().clamp_min(1)  # no host read
    logs = {"pool_reward": mean, "pool_pairs": weight.sum()}
    return loss.flatten(), weight.flatten(), logs
