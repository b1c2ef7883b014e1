"""A multi-view prior paired with a *time expert*: expert denoisers (eDiff-I, Balaji et al. 2022).

eDiff-I trains separate denoisers for separate noise levels because the top of the schedule does a
different job (lay out the picture from the text) than the bottom (render detail). A 4D prior has
the same split in time: where an object is at a scene time is decided only at high noise (lower
down, the noisy image itself shows it), and a model trained on the whole schedule spends almost all
of its gradient below (the epsilon loss at t = 0.9 is ~1/40 of the clean-image error it stands for):
the embedded toy prior learnt colour, shape and camera but not time (README, "Where the toy prior
stands"). A *time expert* is a small model trained only on the top (``t >= t_from``) and only on
video clips from one camera, where it learns time in a CPU budget (``bench/toy_time.py``).

:class:`TimeExpertPrior` routes each group: to an expert when its timestep is at or above that
expert's ``t_from`` and every image of the group is seen from its camera, else to the base model.
One camera sees motion only across its view; experts at two cameras 90 degrees apart see it in
depth too.
So a video step of ``generate`` rendered from that camera is scored for motion by the expert, and
everything else (other cameras, lower noise) by the base; a sample at that camera is laid out by
the expert, which also draws it a little lower (:data:`SAMPLE_FROM`), and finished by the base.

The expert's folder is an ordinary prior folder whose ``scene4d_prior.json`` holds
``time_expert``: ``camera`` (the 16 MVDream numbers of its camera), ``azimuth`` / ``elevation`` /
``radius`` / ``fov`` (degrees, scene units: how to render from it) and ``t_from``.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .base import DiffusionPrior, PriorError, PromptEmbeds
from .multiview import ddim_sample, mvdream_camera

EXPERT_KEY = "time_expert"
CAMERA_TOLERANCE = 1e-3
"""Largest difference of MVDream camera numbers that still counts as the expert's camera."""
SAMPLE_FROM = 0.6
"""Where a *sample* hands its experts' groups to the base (a fraction of the schedule; the expert's
own ``t_from``, where it scores and was trained, when that is lower). Time is laid out above an
expert's ``t_from`` (0.8), but the fine detail that shows it -- a spinning object's stripes -- is
drawn lower, and the time-blind base finishing from 0.8 redraws the stripes at no particular phase:
the shipped experts' samples of "a blue cube spinning" read spinning in 2 of 4 seeds finishing
from 0.8 and 3 of 4 from 0.6, and the seen prompts' samples the right motion in 25 and 27 of 28
(session 21; README, "Time experts"). Scoring (``generate``'s video steps) keeps the trained range."""


def expert_meta(prior) -> Optional[dict]:
    """The ``time_expert`` record of a prior's config (None: not a time expert)."""
    return (getattr(prior, "config", None) or {}).get(EXPERT_KEY)


def seen_by(metas: Sequence[dict], world_to_camera: Tensor) -> Tensor:
    """(..., 4, 4) cameras -> (..., E) bool: whether each is expert ``e``'s camera (its MVDream
    numbers within :data:`CAMERA_TOLERANCE`), for the ``time_expert`` records ``metas``."""
    cams = torch.tensor([m["camera"] for m in metas], dtype=torch.float32)  # (E, 16)
    got = mvdream_camera(world_to_camera.float().cpu())[..., None, :]  # (..., 1, 16)
    return (got - cams).abs().amax(-1) <= CAMERA_TOLERANCE


def expert_cameras(prior) -> List[dict]:
    """The time-expert records a prior carries: one for an expert folder, one per expert for a
    :class:`TimeExpertPrior`, none for any other prior."""
    if isinstance(prior, TimeExpertPrior):
        return list(prior.metas)
    meta = expert_meta(prior)
    return [] if meta is None else [meta]


class TimeExpertPrior(DiffusionPrior):
    """``base`` (a multi-view prior) with ``experts`` (time experts, each at its own camera) on the
    top of the schedule at their cameras."""

    kind = "multiview"
    needs_cameras = True
    needs_times = True

    def __init__(self, base, experts: Sequence):
        experts = list(experts)
        if not experts:
            raise PriorError("a time expert pair needs at least one expert")
        if base.kind != "multiview":
            raise PriorError(f"a time expert pairs with a multi-view prior, not a {base.kind} prior")
        for e in experts:
            if expert_meta(e) is None or e.kind != "multiview":
                raise PriorError("the video prior is not a time expert (its scene4d_prior.json has no 'time_expert'); "
                                 "pass a folder from `scene4d prior train-toy --video-camera AZ,EL`")
            if base.native_size != e.native_size or base.group_size != e.group_size:
                raise PriorError(f"the time expert ({e.native_size}px, groups of {e.group_size}) does not match "
                                 f"the prior ({base.native_size}px, groups of {base.group_size})")
            if base.alphas_cumprod.shape != e.alphas_cumprod.shape or \
                    not torch.allclose(base.alphas_cumprod, e.alphas_cumprod):
                raise PriorError("the time expert and the prior use different noise schedules")
        self.base, self.experts = base, experts
        self.metas = [dict(expert_meta(e)) for e in experts]
        self.t_from = [float(m["t_from"]) for m in self.metas]
        self.native_size = base.native_size
        self.group_size = base.group_size
        self.prediction_type = base.prediction_type

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def alphas_cumprod(self) -> Tensor:
        return self.base.alphas_cumprod

    def encode_prompt(self, prompt: str, negative: str = "") -> PromptEmbeds:
        emb = self.base.encode_prompt(prompt, negative)
        emb.extra["experts"] = [e.encode_prompt(prompt, negative) for e in self.experts]
        return emb

    def encode_images(self, images: Tensor) -> Tensor:
        return self.base.encode_images(images)

    def decode_preview(self, x0: Tensor) -> Tensor:
        return self.base.decode_preview(x0)

    def owner(self, t: Tensor, cameras: Tensor, expert_from: Optional[float] = None) -> Tensor:
        """(B,) long: the expert that answers each group (its index; -1: the base), i.e. the first
        expert whose camera sees every image of the group, if the timestep is in its part (from its
        ``t_from``, or from ``expert_from`` where that is lower: :meth:`sample`)."""
        T = len(self.alphas_cumprod)
        at = seen_by(self.metas, cameras).all(1)  # (B, E): every image of the group
        out = torch.full((at.shape[0],), -1, dtype=torch.long)
        for i in reversed(range(len(self.experts))):  # the first listed wins
            t_from = self.t_from[i] if expert_from is None else min(self.t_from[i], expert_from)
            out[at[:, i] & (t.cpu() >= round(t_from * (T - 1)))] = i  # TimestepSchedule's scaling
        return out

    def predict_noise(self, x_t: Tensor, t: Tensor, emb: PromptEmbeds, *, cameras: Optional[Tensor],
                      times: Optional[Tensor], expert_from: Optional[float] = None) -> Tuple[Tensor, Tensor]:
        if cameras is None or times is None:
            raise PriorError("a time expert pair needs the cameras and times of every group")
        own = self.owner(t, cameras, expert_from)
        eps_c, eps_u = torch.empty_like(x_t), torch.empty_like(x_t)
        for i in torch.unique(own).tolist():
            model, e = (self.base, emb) if i < 0 else (self.experts[i], emb.extra["experts"][i])
            idx = torch.nonzero(own == i).flatten()
            dev = idx.to(x_t.device)
            c, u = model.predict_noise(x_t[dev], t.to(x_t.device)[dev], e, cameras=cameras[idx],
                                       times=times[idx] if model.needs_times else None)
            eps_c[dev], eps_u[dev] = c, u
        return eps_c, eps_u

    @torch.no_grad()
    def sample(self, prompt: str, cameras: Tensor, times: Optional[Tensor] = None, *, steps: int = 50,
               guidance_scale: float = 3.0, negative: str = "", generator: Optional[torch.Generator] = None,
               eta: float = 1.0, expert_from: Optional[float] = SAMPLE_FROM) -> Tensor:
        """DDIM samples as :meth:`MultiViewPrior.sample`, each step of each group answered by the
        model that owns it; an expert's groups stay with it down to ``expert_from`` (its own
        ``t_from`` when lower; None: its ``t_from``), see :data:`SAMPLE_FROM`."""
        if expert_from is not None and not 0.0 <= expert_from <= 1.0:
            raise PriorError(f"expert_from is a fraction of the noise schedule (0 to 1), got {expert_from}")
        emb = self.encode_prompt(prompt, negative)
        cfg = self.base.unet.config
        shape = (*cameras.shape[:2], cfg.in_channels, cfg.sample_size, cfg.sample_size)
        return ddim_sample(self, emb, shape, cameras, times, steps=steps, guidance_scale=guidance_scale,
                           generator=generator, eta=eta, clamp=self.base.vae is None, expert_from=expert_from)
