"""Score distillation as an objective of the one fitting loop (:func:`scene4d.train.fit`).

Stages (the step decides; no hidden state):

1. **static** (``static_share`` of the steps): the deformation is off; each step renders
   ``views`` cameras 360/views degrees apart at one random elevation (MVDream's layout) and takes the
   image / multi-view prior's SDS gradient (time-conditioned priors are asked for time 0: the
   canonical is the scene at t = 0).
2. **motion**: the deformation is on and trained, the canonical frozen (or slowed,
   ``canonical_lr_scale``). With probability ``video_prob`` a step is a *video* step — one camera,
   ``frames`` times spread over the clip, the video prior's SDS over the G frames at once, weighted
   by ``motion_strength`` — else a multi-view step at one random time (4D-fy's hybrid). Regularisers
   keep identity: the fields' time smoothness and per-entity ARAP between neighbouring nodes, and a
   drift bound on each entity's centre and spread.
3. **refine** (optional): everything trained at ``refine_lr_scale``, both kinds of step.

With two characters, ``entity_prob`` of the steps (any kind, any stage) render one of them alone
from cameras framing it and score it with its own words (Comp4D's per-entity score distillation),
so a prior that knows single objects well gives each its own colour and motion; the other steps
score the whole scene with the whole prompt.

``--image`` adds a reference-view loss at t = 0 from the front camera (DreamGaussian4D's, ramped up
over the run) in every stage.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from cameras import Cameras, intrinsics_from_fov, look_at
from diffusion_prior import DiffusionPrior, PromptEmbeds, TimestepSchedule

from ..train.objective import StepContext, StepPlan
from .config import GenerateConfig


def orbit_camera(azimuth_deg: float, elevation_deg: float, radius: float, fov_deg: float, size: int,
                 center=(0.0, 0.0, 0.0)) -> Tuple[Tensor, Tensor]:
    """(4, 4) OpenCV world-to-camera and (3, 3) K of a camera on a sphere about ``center``, z up,
    looking at the centre; azimuth 0 is the camera on the +x axis (the front view of ``--image``)."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    c = torch.tensor(center, dtype=torch.float32)
    eye = c + radius * torch.tensor([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    w2c = look_at(eye[None], c, torch.tensor([0.0, 0.0, 1.0]))[0]
    return w2c, intrinsics_from_fov(math.radians(fov_deg), size, size)


class ScoreDistillation:
    """The generate objective. ``prior`` serves static and multi-view steps, ``video_prior`` video
    steps (the same object when one model does both, as the toy prior does)."""

    label = "generate"

    def __init__(self, cfg: GenerateConfig, prior: DiffusionPrior, emb: PromptEmbeds, *,
                 video_prior: Optional[DiffusionPrior] = None, video_emb: Optional[PromptEmbeds] = None,
                 center=(0.0, 0.0, 0.0), scale: float = 1.0, reference: Optional[Tuple[Tensor, Tensor]] = None,
                 canonical_stats: Optional[List[Tuple[Tensor, Tensor]]] = None,
                 entity_views: Optional[List[dict]] = None):
        self.cfg = cfg
        self.prior, self.emb = prior, emb
        self.video_prior = video_prior
        self.video_emb = video_emb if video_emb is not None else emb
        self.center = tuple(float(c) for c in center)
        self.scale = float(scale)
        self.reference = reference  # (image (H, W, 3), mask (H, W, 1)) at the front camera, t = 0
        self.canonical_stats = canonical_stats or []  # per entity (centre (3,), spread ()) at t = 0
        # per entity {center, size, emb, video_emb}: its own steps (cfg.entity_prob), see GenerateConfig
        self.entity_views = entity_views or []
        self.generator = torch.Generator().manual_seed(cfg.seed + 1)
        s1, s2, s3 = cfg.stage_steps()
        self.bounds = (s1, s1 + s2, s1 + s2 + s3)
        self.schedule = TimestepSchedule(t_min=cfg.t_min, t_max=cfg.t_max, anneal=cfg.anneal,
                                         t_max_end=max(cfg.t_min, min(cfg.t_max_end, cfg.t_max)))
        self.video_schedule = self.schedule if cfg.video_t_min is None else \
            TimestepSchedule(t_min=cfg.video_t_min, t_max=cfg.video_t_max, anneal="none")
        self.weights = {"sds": 1.0, "sds_video": cfg.motion_strength, "reference": cfg.reference_weight,
                        "reference_alpha": cfg.reference_alpha_weight, "drift": cfg.drift_weight,
                        "arap": cfg.arap_weight, "time_smoothness": cfg.time_smoothness_weight,
                        "plane_tv": cfg.plane_tv_weight}
        self._info: Dict[str, str] = {}
        self.last_preview: Optional[Tensor] = None

    # ------------------------------------------------------------------ the loop's protocol
    def stage(self, step: int) -> str:
        s1, s2, _ = self.bounds
        if step <= s1:
            return "static"
        if step <= s2:
            return "motion"
        return "refine"

    def plan(self, step: int) -> StepPlan:
        st = self.stage(step)
        c = self.cfg
        if st == "static":
            return StepPlan(deform=False, train_canonical=True, train_deformation=False, sh_degree=c.sh_degree)
        if st == "motion":
            frozen = c.canonical_lr_scale == 0
            # a slowed canonical: lr_scale multiplies every rate, so the field's rates are divided back
            return StepPlan(deform=True, train_canonical=not frozen, train_deformation=True, sh_degree=c.sh_degree,
                            lr_scale=1.0 if frozen else c.canonical_lr_scale)
        return StepPlan(deform=True, train_canonical=True, train_deformation=True, sh_degree=c.sh_degree,
                        lr_scale=c.refine_lr_scale)

    def render_size(self, step: int) -> int:
        c = self.cfg
        if not c.start_size or c.start_size >= c.size:
            return c.size
        f = min(1.0, step / max(1, int(0.5 * c.iters)))
        s = c.start_size + (c.size - c.start_size) * f
        return int(round(s / 8)) * 8 or 8

    def _uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand(1, generator=self.generator))

    def _camera(self, az: float, el: float, radius: float, fov: float, size: int, entity: Optional[dict] = None):
        if entity is not None:  # framing one entity as the prior frames a scene of its own
            return orbit_camera(az, el, radius * self.scale * entity["size"], fov, size, entity["center"])
        return orbit_camera(az, el, radius * self.scale, fov, size, self.center)

    def _cameras(self, az: float, el: float, radius: float, fov: float, size: int, entity: Optional[dict] = None):
        """``(w2c, K, told)``: the camera that renders and the world-to-camera the prior is told. In an
        entity's step the render frames the entity while the prior is told the camera as the entity's
        own frame has it (centred on the scene, at the usual distance), as a time expert knows its
        camera; otherwise the two are the same."""
        w2c, K = self._camera(az, el, radius, fov, size, entity)
        return w2c, K, (w2c if entity is None else self._camera(az, el, radius, fov, size)[0])

    def losses(self, ctx: StepContext) -> Dict[str, Tensor]:
        c, step = self.cfg, ctx.step
        st = self.stage(step)
        size = self.render_size(step)
        ratio = (step - 1) / max(1, c.iters - 1)
        bg = torch.tensor(c.background, dtype=torch.float32, device=ctx.scene.device)
        terms: Dict[str, Tensor] = {}
        video = st != "static" and float(torch.rand(1, generator=self.generator)) < c.video_prob
        el = self._uniform(*c.elevation)
        radius = self._uniform(*c.radius)
        fov = self._uniform(*c.fov)
        az0 = self._uniform(0.0, 360.0)
        ent, only = None, None
        if self.entity_views and float(torch.rand(1, generator=self.generator)) < c.entity_prob:
            i = int(torch.randint(len(self.entity_views), (1,), generator=self.generator))
            ent, only = self.entity_views[i], [i]
        want_preview = c.preview_every > 0 and step % c.preview_every == 0
        if video:
            prior, G = self.video_prior or self.prior, c.frames
            emb = self.video_emb if ent is None else ent["video_emb"]
            # G times over (nearly) the whole clip, in order, jittered so every moment gets scored
            t_first, t_last = self._uniform(0.0, 0.15), self._uniform(0.85, 1.0)
            ts = [t_first + (t_last - t_first) * i / (G - 1) for i in range(G)]
            if c.video_cameras:  # e.g. the time experts' own cameras
                pick = int(torch.randint(len(c.video_cameras), (1,), generator=self.generator))
                az0, el = (float(v) for v in c.video_cameras[pick])
            w2c, K, told = self._cameras(az0, el, radius, fov, size, ent)
            cam = Cameras(K[None], w2c[None], size, size).to(device=ctx.scene.device)
            frames = [ctx.render(t, cam, background=bg, entities=only).rgb[0] for t in ts]  # G x (H, W, 3)
            images = torch.stack(frames).permute(0, 3, 1, 2)[None]  # (1, G, 3, H, W)
            w2cs, Ks = told.expand(1, G, 4, 4), K.expand(1, G, 3, 3)
            times = torch.tensor([ts])
            guidance, name, schedule = c.video_guidance, "sds_video", self.video_schedule
        else:
            prior, G = self.prior, c.views
            emb = self.emb if ent is None else ent["emb"]
            t = 0.0 if st == "static" else self._uniform(0.0, 1.0)
            w2c, K, told = (torch.stack(x) for x in zip(*(self._cameras(az0 + 360.0 * i / G, el, radius, fov, size, ent)
                                                           for i in range(G))))
            cam = Cameras(K, w2c, size, size).to(device=ctx.scene.device)
            r = ctx.render(t, cam, background=bg, entities=only)
            images = r.rgb.permute(0, 3, 1, 2)[None]  # (1, G, 3, H, W)
            w2cs, Ks = told[None], K[None]
            times = torch.full((1, G), t)
            guidance, name, schedule = c.guidance, "sds", self.schedule
        out = prior.sds(images, emb, cameras=w2cs, intrinsics=Ks, times=times, guidance_scale=guidance,
                        schedule=schedule, step_ratio=ratio, weighting=c.weighting, grad_clip=c.grad_clip,
                        generator=self.generator, want_preview=want_preview)
        terms[name] = out.loss
        if want_preview and out.preview is not None:
            self.last_preview = torch.cat([images.detach().cpu().clamp(0, 1), out.preview.cpu()], dim=0)
        if self.reference is not None:
            terms.update(self._reference_terms(ctx, bg, ratio))
        if st != "static" and self.canonical_stats and c.drift_weight > 0:
            terms["drift"] = self._drift(ctx, self._uniform(0.0, 1.0))
        self._info = {"stage": st, "t": str(int(out.t[0])), "g": f"{float(out.grad_norm):.2f}"}
        return terms

    def _reference_terms(self, ctx: StepContext, bg: Tensor, ratio: float) -> Dict[str, Tensor]:
        c = self.cfg
        img, mask = self.reference
        H = img.shape[0]
        w2c, K = self._camera(0.0, 0.5 * (c.elevation[0] + c.elevation[1]), 0.5 * (c.radius[0] + c.radius[1]),
                              0.5 * (c.fov[0] + c.fov[1]), H)
        cam = Cameras(K[None], w2c[None], H, H).to(device=ctx.scene.device)
        r = ctx.render(0.0, cam, background=bg, deform=True)
        ramp = min(1.0, 0.2 + ratio)  # DreamGaussian4D weights its reference loss by the step ratio
        dev = ctx.scene.device
        return {"reference": ramp * (r.rgb[0] - img.to(dev)).square().mean(),
                "reference_alpha": ramp * (r.alpha[0] - mask.to(dev)).square().mean()}

    def _drift(self, ctx: StepContext, t: float) -> Tensor:
        """Each entity's centre may travel ``drift_free`` x the scene radius and its spread change by
        x2.5 for free; beyond that a quadratic cost (keeps a character from dissolving or flying off
        while its motion is only scored through a 32-pixel prior)."""
        scene = ctx.scene
        total = None
        free = self.cfg.drift_free * self.scale
        for i, (c0, s0) in enumerate(self.canonical_stats):
            g = scene.at(t, deform=True, entities=[i])
            w = g.opacities.detach()[:, None]
            cen = (g.means * w).sum(0) / w.sum().clamp_min(1e-8)
            spread = ((g.means - cen).square().sum(-1) * w[:, 0]).sum() / w.sum().clamp_min(1e-8)
            d = torch.relu((cen - c0.to(cen)).norm() - free) / self.scale
            ls = torch.relu((0.5 * torch.log(spread.clamp_min(1e-12) / s0.to(spread).clamp_min(1e-12))).abs()
                            - math.log(2.5))
            term = d.square() + ls.square()
            total = term if total is None else total + term
        return total

    def state_tensors(self) -> Dict[str, Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_tensors(self, tensors: Dict[str, Tensor]) -> None:
        self.generator.set_state(tensors["generator"])

    def progress_info(self) -> Dict[str, str]:
        return dict(self._info)
