"""Does a prior know how a prompt moves? The pull of its SDS gradient toward the prompt's motion.

``generate`` learns motion only from the video step: the prior scores a clip of the scene (one
camera, four times) and its SDS gradient says how the frames should change. A prior that knows the
prompt's motion pulls a *static* clip (the object frozen at mid-clip) toward the moving one; a prior
that ignores the scene time pulls every frame the same way and the deformation learns nothing.

:func:`motion_pull` measures exactly that, on the toy world where every motion is known: the mean
SDS descent direction on the static clip (many noise draws and timesteps) against the change that
would turn the static clip into the object's clip under each motion. The prompt's own motion should
score highest (``margin`` > 0); the analytic prior (the ceiling) does by construction. It costs a
few seconds per prompt on a CPU, against minutes for a ``generate`` run, so it is the quick check of
a newly trained toy prior (``bench/generate.py --toy --probe``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from diffusion_prior.experts import expert_cameras

from . import toyworld as tw
from .samples import SAMPLE_ELEVATION, SAMPLE_TIMES, video_cameras

PROBE_MOTIONS: Tuple[str, ...] = tuple(m for m in tw.MOTIONS if m != "still")


@dataclass
class MotionPull:
    prompt: str
    cosine: Dict[str, float]
    """Cosine between the mean SDS descent direction on the static clip and the change toward each motion."""
    pull: float
    """The cosine of the prompt's own motion."""
    margin: float
    """``pull`` less the best cosine of another motion (> 0: the prior points at the right motion)."""
    points_to: str
    """The motion with the highest cosine."""


def motion_pull(prior, prompt: str, *, samples: int = 32, t_range: Optional[Tuple[float, float]] = None,
                guidance: float = 5.0, azimuth: Optional[float] = None, times: Sequence[float] = SAMPLE_TIMES,
                size: int = 0, seed: int = 0) -> MotionPull:
    """The SDS pull of ``prior`` on a static clip of a one-object toy ``prompt`` (see the module
    docstring). ``samples`` groups (noise draws and timesteps from ``t_range``) are averaged;
    ``size`` is the render size (0: the prior's own, 32 for a prior that takes any). The camera
    (``azimuth``, default 20 degrees) and ``t_range`` (default 0.5-0.98) are the first time
    expert's own when the prior has experts, as ``generate``'s video steps are."""
    metas = expert_cameras(prior)
    elevation = SAMPLE_ELEVATION
    if metas:
        meta = metas[0]
        elevation = float(meta["elevation"])
        azimuth = float(meta["azimuth"]) if azimuth is None else azimuth
        t_range = (float(meta["t_from"]), 0.98) if t_range is None else t_range
    azimuth = 20.0 if azimuth is None else azimuth
    t_range = (0.5, 0.98) if t_range is None else t_range
    scene = tw.parse_prompt(prompt)
    if len(scene.objects) != 1:
        raise ValueError(f"motion_pull: one-object prompts only, got {prompt!r}")
    if scene.objects[0].motion == "still":
        raise ValueError(f"motion_pull: {prompt!r} does not move; probe a moving prompt")
    G = max(int(getattr(prior, "group_size", 4)), 1)
    if len(times) != G:
        raise ValueError(f"motion_pull: the prior's groups hold {G} frames, got {len(times)} times")
    size = size or int(getattr(prior, "native_size", 0)) or 32
    cams = video_cameras(size, azimuths=(azimuth,), times=times, elevation=elevation)
    # the same views, every frame at mid-clip
    frozen = video_cameras(size, azimuths=(azimuth,), times=[0.5] * G, elevation=elevation)
    static = tw.render_gt(scene, frozen).clamp(0, 1).permute(0, 3, 1, 2)  # (G, 3, s, s)
    changes = {}
    for m in PROBE_MOTIONS:
        moved = replace(scene, objects=(replace(scene.objects[0], motion=m),))
        changes[m] = tw.render_gt(moved, cams).clamp(0, 1).permute(0, 3, 1, 2) - static
    dev = getattr(prior, "device", torch.device("cpu"))
    B = int(samples)
    images = static[None].expand(B, -1, -1, -1, -1).clone().to(dev).requires_grad_(True)
    w2c = cams.world_to_camera.float()[None].expand(B, -1, -1, -1).to(dev)
    K = cams.K.float()[None].expand(B, -1, -1, -1).to(dev)
    tt = cams.times.float()[None].expand(B, -1).to(dev)
    emb = prior.encode_prompt(scene.prompt())
    out = prior.sds(images, emb, cameras=w2c, intrinsics=K, times=tt, guidance_scale=guidance, t_range=t_range,
                    generator=torch.Generator().manual_seed(seed))
    out.loss.backward()
    descent = -images.grad.detach().float().mean(0).cpu()  # (G, 3, s, s)
    cos = {}
    for m, d in changes.items():
        den = float(descent.norm() * d.norm())
        cos[m] = float((descent * d).sum()) / den if den > 0 else 0.0
    own = scene.objects[0].motion
    others = [v for m, v in cos.items() if m != own]
    return MotionPull(scene.prompt(), {m: round(v, 4) for m, v in cos.items()}, round(cos[own], 4),
                      round(cos[own] - max(others), 4), max(cos, key=cos.get))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / max(len(values), 1)


def summarize(pulls: Sequence[MotionPull]) -> Dict[str, float]:
    """Mean pull and margin, and the share of prompts whose own motion scores highest."""
    return {"pull": round(_mean([p.pull for p in pulls]), 4), "margin": round(_mean([p.margin for p in pulls]), 4),
            "right_motion": round(_mean([float(p.points_to == tw.parse_prompt(p.prompt).objects[0].motion)
                                         for p in pulls]), 3), "prompts": len(pulls)}


def time_blind(prior):
    """``prior`` with every frame's scene time replaced by the clip's mean time: the control a probe
    must tell apart from a prior that knows motion (the tests use it)."""

    class _Blind:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def sds(self, images: Tensor, emb, *, times=None, **kw):
            if times is not None:
                times = times.mean(1, keepdim=True).expand_as(times)
            return self.inner.sds(images, emb, times=times, **kw)

    return _Blind(prior)
