"""Fit a 4D scene to a calibrated dynamic capture: the ``scene4d reconstruct`` job.

Reconstruction is one objective (:class:`PhotometricObjective`) over the shared fitting loop
(:func:`scene4d.train.fit`, which owns optimisers, densification, checkpoints, bit-exact resume,
progress and publishing the scene folder). One step: sample a training view (camera, t) ->
``scene.at(t)`` -> rasterize -> L1 + D-SSIM (+ the fields' regularisers, weighted by name) ->
backward -> densification hooks -> optimiser steps. The first ``warmup_iters`` fit static canonical
Gaussians (the deformation is skipped), as in 4DGaussians.

This module keeps the run's config (:class:`TrainConfig`, presets), the initial scene
(:func:`initial_scene`), the objective, evaluation and :func:`train`, which joins them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Optional, Union

import torch

from cameras import Cameras
from renderers import configure_cpu_threads, default_device

from . import losses
from .deformation import FIELD_CONFIGS, HexPlaneConfig, MLPConfig, MotionNodesConfig, config_from_dict, config_to_dict
from .densify import DensifyConfig
from .field import Scene4D, init_params
from .render import render_split  # noqa: F401  (reconstruct.render_split: its old home)
from .io import SceneFolderError
from .train import FitConfig, FitResult, LearningRates, StepContext, StepPlan, claim, fit, read_checkpoint
from .train import existing_run  # noqa: F401 (re-exported: the CLI checks a folder before the camera step)


@dataclass
class TrainConfig:
    """A reconstruction run. Presets (``configs/*.json``, :func:`preset`) set it; CLI flags override fields."""

    iters: int = 3000
    """Optimisation steps."""
    warmup_iters: int = 300
    """Steps fitting static canonical Gaussians before the deformation is switched on."""
    deformation: Union[HexPlaneConfig, MLPConfig, MotionNodesConfig, None] = field(default_factory=HexPlaneConfig)
    """Deformation field; None reconstructs a static scene."""
    sh_degree: int = 1
    """Highest SH degree; one band is unlocked every ``sh_interval`` steps."""
    sh_interval: int = 500
    init_points: int = 4000
    """Random initial Gaussians inside the region all training cameras see."""
    init_opacity: float = 0.1
    temporal_opacity: bool = False
    """Per-Gaussian temporal opacity (time centre + extent): objects that travel far or enter/leave."""
    init_time_scale: float = 0.25
    """Initial temporal standard deviation of each Gaussian (time in [0, 1]); centres are random."""
    lr_t_center: float = 1e-3
    lr_t_scale: float = 1e-2
    lr_t_velocity: float = 1.6e-3
    """Per-Gaussian velocity learning rate x scene scale (temporal opacity only)."""
    lr_means: float = 1.6e-4
    """Position learning rate x scene scale, decayed exponentially to 1/100 at the end."""
    lr_quats: float = 1e-3
    lr_scales: float = 5e-3
    lr_opacity: float = 5e-2
    lr_sh: float = 2.5e-3
    lr_deform: float = 1.6e-3
    """MLP head learning rate x scene scale, decayed to 1/10."""
    lr_planes: float = 1.6e-2
    """Plane-grid learning rate, decayed to 1/10."""
    lr_motion: float = 5e-3
    """Motion-node translations x scene scale, decayed to 1/10."""
    lr_rotation: float = 5e-3
    """Motion-node rotation vectors (radians), decayed to 1/10."""
    lr_nodes: float = 1e-3
    """Motion-node centres x scene scale (radii: 10x, in log units), decayed to 1/10."""
    lambda_dssim: float = 0.2
    plane_tv_weight: float = 2e-4
    time_smoothness_weight: float = 1e-3
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    time_curriculum: float = 0.0
    """Share of the steps over which the trained time window grows from ``[0, time_window_start]``
    to ``[0, 1]`` (0: every frame from the start). Motion is then fitted the way a tracker follows
    it: each new moment starts from the last fitted one, so objects that travel further than their
    own size are followed instead of lost. Fields that can (planes, nodes) are held constant past
    the window."""
    time_window_start: float = 0.1
    downscales: int = 0
    """Train at 1/2^downscales of the image size first, halving the factor every
    ``resolution_schedule`` steps (nerfstudio's splatfacto does the same): early steps only fix
    coarse structure, and cost a quarter per halving."""
    resolution_schedule: int = 500
    checkpoint_every: int = 1000
    seed: int = 0
    threads: Optional[int] = None
    """torch CPU threads (None: torch's default)."""


FIELDS = tuple(FIELD_CONFIGS)
"""Deformation field kinds: space-time planes, positional-encoding MLP, rigid motion nodes."""


def preset(name: str, field: Optional[str] = None) -> TrainConfig:
    """A named preset from ``configs/`` (``fast``: CPU minutes; ``dnerf``: the D-NeRF benchmark
    setting; ``quality``; ``handheld``) or a preset file (``my.json``). ``field`` (one of
    :data:`FIELDS`) replaces the preset's deformation field by that kind, sized for the preset.
    See :mod:`scene4d.presets` for the file format."""
    from .presets import load_preset

    return load_preset(name, field)


def with_iters(cfg: TrainConfig, iters: int) -> TrainConfig:
    """``cfg`` shortened (or lengthened) to ``iters`` steps: the static warm-up takes at most a fifth
    of them and densification stops by three quarters. Changes and returns ``cfg``."""
    cfg.iters = int(iters)
    cfg.warmup_iters = min(cfg.warmup_iters, cfg.iters // 5)
    cfg.densify.refine_stop = min(cfg.densify.refine_stop, int(cfg.iters * 0.75))
    return cfg


def without_motion(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` as a static-scene baseline (same budget): no deformation, no temporal opacity, and
    every frame from the start (nothing to track). Changes and returns ``cfg``."""
    cfg.deformation = None
    cfg.temporal_opacity = False
    cfg.time_curriculum = 0.0
    return cfg


def config_to_json(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["deformation"] = None if cfg.deformation is None else config_to_dict(cfg.deformation)
    return d


def config_from_json(d: dict) -> TrainConfig:
    d = dict(d)
    d["deformation"] = None if d.get("deformation") is None else config_from_dict(d["deformation"])
    d["densify"] = None if d.get("densify") is None else DensifyConfig(**d["densify"])
    return TrainConfig(**d)


# ----------------------------------------------------------------------------- set-up


def sample_init_points(train: Cameras, center: torch.Tensor, radius: float, n: int, gen: torch.Generator) -> torch.Tensor:
    """n points in the ball (center, radius) that at least half of the train cameras see."""
    pts = []
    total = 0
    for _ in range(50):
        cand = torch.randn(4 * n, 3, generator=gen)
        cand = cand / cand.norm(dim=-1, keepdim=True) * torch.rand(4 * n, 1, generator=gen) ** (1 / 3)
        cand = center + radius * cand
        R, t = train.world_to_camera[:, :3, :3], train.world_to_camera[:, :3, 3]
        pc = torch.einsum("cij,nj->cni", R, cand) + t[:, None]
        uv = torch.einsum("cij,cnj->cni", train.K, pc)
        z = pc[..., 2]
        u, v = uv[..., 0] / z.clamp_min(1e-6), uv[..., 1] / z.clamp_min(1e-6)
        seen = (z > 0) & (u >= 0) & (u < train.width) & (v >= 0) & (v < train.height)
        keep = seen.float().mean(0) >= 0.5
        pts.append(cand[keep])
        total += int(keep.sum())
        if total >= n:
            break
    pts = torch.cat(pts)[:n]
    if pts.shape[0] < max(16, n // 10):
        raise RuntimeError(
            "could not place initial Gaussians: the training cameras do not look at a common region "
            "(check the capture's camera poses and conventions)"
        )
    return pts


def fit_config(cfg: TrainConfig, scene_scale: float) -> FitConfig:
    """The loop's settings for a reconstruction run: ``cfg``'s learning rates, densification and
    checkpoints; the deformation's learning rates decay after the static warm-up."""
    lrs = LearningRates(
        means=cfg.lr_means, quats=cfg.lr_quats, scales=cfg.lr_scales, opacity=cfg.lr_opacity, sh=cfg.lr_sh,
        t_center=cfg.lr_t_center, t_scale=cfg.lr_t_scale, t_velocity=cfg.lr_t_velocity, deform=cfg.lr_deform,
        planes=cfg.lr_planes, motion=cfg.lr_motion, rotation=cfg.lr_rotation, nodes=cfg.lr_nodes,
    )
    return FitConfig(iters=cfg.iters, lrs=lrs, scene_scale=scene_scale, deformation_lr_start=cfg.warmup_iters,
                     densify=cfg.densify, checkpoint_every=cfg.checkpoint_every)


def initial_scene(capture, cfg: TrainConfig, gen: torch.Generator) -> Scene4D:
    """The scene a run starts from (on the CPU): Gaussians at the capture's sparse points (topped up
    with random ones) or at random points all training cameras see, grey unless the points are
    coloured; one entity with ``cfg.deformation`` (its bounds set from the capture: ``cfg`` is
    changed), nodes laid over the points. Draws from ``gen``."""
    cams: Cameras = capture.train.cameras
    center, radius = capture.bounds()
    dcfg = cfg.deformation
    if dcfg is not None:
        dcfg.bounds_center = tuple(float(c) for c in center)
        dcfg.bounds_radius = float(radius)
    colors = None
    if getattr(capture, "points", None) is not None and capture.points.shape[0] >= 16:
        # sparse structure-from-motion points: where the surfaces are; a few random ones fill the gaps
        pts, colors = capture.points.float(), capture.point_colors
        if pts.shape[0] > cfg.init_points:
            keep = torch.randperm(pts.shape[0], generator=gen)[: cfg.init_points]
            pts, colors = pts[keep], None if colors is None else colors[keep]
        extra = sample_init_points(cams, center, radius, max(16, cfg.init_points // 10), gen)
        pts = torch.cat([pts, extra])
        if colors is not None:
            colors = torch.cat([colors.float(), torch.full((extra.shape[0], 3), 0.5)])
    else:
        pts = sample_init_points(cams, center, radius, cfg.init_points, gen)
    times = torch.rand(pts.shape[0], generator=gen) if cfg.temporal_opacity else None
    scene = Scene4D(init_params(pts, colors, cfg.sh_degree, opacity=cfg.init_opacity, times=times,
                                time_scale=cfg.init_time_scale), dcfg, sh_degree=cfg.sh_degree)
    scene.initialize_fields()
    return scene


class PhotometricObjective:
    """Reconstruction as an :class:`scene4d.train.Objective`: each step draws one training view
    (inside the time curriculum's window), renders it at the resolution pyramid's level and
    returns ``photometric`` (L1 + D-SSIM). The first ``warmup_iters`` steps fit static canonical
    Gaussians (deformation off), as in 4DGaussians; SH bands unlock every ``sh_interval`` steps.

    ``images`` (C, H, W, 3) and ``cameras`` (C views with times) on the training device;
    ``background`` (3,) on it; ``generator`` draws the views (checkpointed as ``sampler``)."""

    label = "reconstruct"

    def __init__(self, images: torch.Tensor, cameras: Cameras, background: torch.Tensor, cfg: TrainConfig,
                 generator: torch.Generator):
        self.cfg = cfg
        self.images, self.cameras, self.background = images, cameras, background
        self.generator = generator
        self.weights = {
            "photometric": 1.0,
            "plane_tv": cfg.plane_tv_weight,
            "time_smoothness": cfg.time_smoothness_weight,
            # 0: in reconstruction one field carries every object and the term ties neighbouring
            # objects together (-1.6 to -2 dB; see MotionNodesField.regularizers)
            "arap": 0.0,
        }
        self._sorted_times, self._frame_order = torch.sort(cameras.times.reshape(-1).double().cpu())
        self._view_times = cameras.times.reshape(-1).tolist()  # on the host: no device sync per step
        self._pyramid: Dict[int, tuple] = {}
        self.ema_psnr: Optional[float] = None

    def plan(self, step: int) -> StepPlan:
        cfg = self.cfg
        deform = step > cfg.warmup_iters
        return StepPlan(deform=deform, train_canonical=True, train_deformation=deform,
                        sh_degree=min(cfg.sh_degree, step // max(cfg.sh_interval, 1)))

    def losses(self, ctx: StepContext) -> Dict[str, torch.Tensor]:
        cfg, gen, step = self.cfg, self.generator, ctx.step
        window = time_window(cfg, step)
        if window < 1.0:
            n_in = max(1, int(torch.searchsorted(self._sorted_times, window, right=True)))
            i = int(self._frame_order[int(torch.randint(n_in, (1,), generator=gen))])
            ctx.scene.hold_after(float(self._sorted_times[n_in - 1]))
        else:
            i = int(torch.randint(len(self.cameras), (1,), generator=gen))
        d = train_resolution(cfg, step)
        if d not in self._pyramid:
            self._pyramid.clear()  # levels are used in order; keep one
            self._pyramid[d] = downscaled_views(self.images, self.cameras, d)
        level_images, level_cams = self._pyramid[d]
        out = ctx.render(self._view_times[i], level_cams[i], background=self.background)
        gt = level_images[i : i + 1]
        if step % 5 == 0:  # for the progress bar; reading a value back waits for the device
            with torch.no_grad():
                p = float(losses.psnr(out.rgb.detach(), gt))
                self.ema_psnr = p if self.ema_psnr is None else 0.8 * self.ema_psnr + 0.2 * p
        return {"photometric": losses.photometric(out.rgb, gt, cfg.lambda_dssim)}

    def state_tensors(self) -> Dict[str, torch.Tensor]:
        return {"sampler": self.generator.get_state()}

    def load_state_tensors(self, tensors: Dict[str, torch.Tensor]) -> None:
        self.generator.set_state(tensors["sampler"])

    def progress_info(self) -> Dict[str, str]:
        return {} if self.ema_psnr is None else {"psnr": f"{self.ema_psnr:.2f}"}


# ----------------------------------------------------------------------------- the run


RunResult = FitResult
"""What :func:`train` returns: scene, steps, seconds, metrics."""


def train(
    capture,
    out: Path,
    cfg: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_at: Optional[int] = None,
    evaluate: bool = True,
    provenance: Optional[dict] = None,
    debug: bool = False,
    reference_at=None,
    device: Union[str, torch.device, None] = None,
    backend: str = "auto",
    watch=None,
) -> RunResult:
    """Reconstruct ``capture`` (a :class:`scene4d.data.Capture`) into the scene folder ``out``.

    ``stop_at`` ends the run early after that many steps, with a checkpoint (as Ctrl-C does).
    ``reference_at(t, camera) -> (H, W, 3)`` (ground truth at any time, for procedural captures)
    adds the flicker of a static-camera render against the truth to the metrics.
    ``device``: where the scene, the images and the rasterizer live (None: CUDA when available,
    else the CPU). On CUDA the rasterizer is gsplat's when it is installed. A run may be resumed on
    another device; it is bit-exact on the CPU (CUDA's atomic adds make GPU runs vary in the last
    bits from run to run anyway). ``backend``: the rasterizer (auto, torch or gsplat; see
    :func:`renderers.rasterize`). ``cfg`` is not changed. The loop is :func:`scene4d.train.fit`.
    """
    out = Path(out)
    device = torch.device(device) if device is not None else default_device()
    cfg = copy.deepcopy(cfg)  # the capture's bounds are written into the field's config
    if device.type == "cpu":
        configure_cpu_threads(cfg.threads or None)  # never collapses beside a busy process (bench/threads.py)
    elif cfg.threads:
        torch.set_num_threads(cfg.threads)
    cams: Cameras = capture.train.cameras
    if cams.times is None:
        raise ValueError("training cameras carry no times; a dynamic capture needs a time per view")
    source = str(capture.source)
    claim(out, resume)
    if resume:
        if conflict := resume_conflict(out, source):
            raise SceneFolderError(conflict)
        meta = read_checkpoint(out) or {}
        was = meta.get("image_size")
        if was is not None and list(was) != [capture.width, capture.height]:
            raise SceneFolderError(f"{out}: the unfinished run there trained on {was[0]}x{was[1]} images, this capture "
                                   f"loads as {capture.width}x{capture.height} (another --downscale?); resume with "
                                   "the run's own --downscale, or start afresh into another --out")
        cfg_saved = config_from_json(meta["config"])
        center, radius = capture.bounds()
        if cfg.deformation is not None:  # as the run's own config has them, so they compare equal
            cfg.deformation.bounds_center = tuple(float(c) for c in center)
            cfg.deformation.bounds_radius = float(radius)
        if config_to_json(cfg_saved) != config_to_json(cfg):
            # the run continues with the configuration it started with, not today's flags: say so
            old, new = config_to_json(cfg_saved), config_to_json(cfg)
            changed = [k for k in new if k not in ("threads",) and old.get(k) != new[k]]
            if changed:
                print("resuming with the settings the run started with; ignored: "
                      + ", ".join(f"{k} {new[k]} (the run's: {old.get(k)})" if not isinstance(new[k], dict) else k
                                  for k in changed[:6]) + (" ..." if len(changed) > 6 else ""))
            cfg = cfg_saved
    bg = torch.tensor(capture.background, dtype=torch.float32, device=device)
    scene_scale = float(capture.bounds()[1])

    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    # on resume this only builds the run's entities and fields; the checkpoint replaces the rest
    scene = initial_scene(capture, cfg, gen).to(device)
    objective = PhotometricObjective(capture.train.images.to(device), cams.to(device=device), bg, cfg, gen)

    def on_step(step, scene, terms, report):
        if debug and report:
            print(step, report, len(scene), f"psnr {objective.ema_psnr}")
        if watch is not None:  # e.g. scene4d.view.LiveView (reconstruct --view)
            watch(step, scene, terms, report)

    def evaluate_fn(scene: Scene4D) -> dict:
        if not evaluate:
            return {}
        return evaluate_scene(scene, capture, out, cfg.sh_degree, reference_at=reference_at, backend=backend)

    return fit(
        scene, objective, out, fit_config(cfg, scene_scale), resume=resume, stop_at=stop_at, progress=progress,
        backend=backend, evaluate=evaluate_fn, on_step=on_step,
        checkpoint_meta={"config": config_to_json(cfg), "source": source, "image_size": [capture.width, capture.height]},
        publish={"train_cameras": cams, "test_cameras": capture.test.cameras, "background": capture.background},
        provenance={"source": source, "format": capture.format, "config": config_to_json(cfg), **(provenance or {})},
        resume_command=f"scene4d reconstruct DATA --out {out} --resume",
    )


def _same_path(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError):
        return str(a) == str(b)


def resume_conflict(out: Path, source, shown: Optional[str] = None) -> Optional[str]:
    """Why the unfinished run in ``out`` cannot be resumed on ``source`` (None: it can, or there is
    no checkpoint, or an older one that did not record its data): it was fitting other data.
    ``shown``: how the message names ``source`` (the video a pose folder comes from)."""
    latest = Path(out) / "checkpoints" / "latest.json"
    try:
        was = json.loads(latest.read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        return None
    if was is None or _same_path(was, source):
        return None
    return (f"{out}: the unfinished run there was fitting {was}, not {shown or source}; resume it with that data "
            f"(scene4d reconstruct {was} --out {out} --resume), or choose another --out")


def curriculum_steps(cfg: TrainConfig) -> int:
    return int(round(cfg.time_curriculum * cfg.iters))


def time_window(cfg: TrainConfig, step: int) -> float:
    """The end of the time window ``[0, w]`` that step ``step`` (1-based) draws training frames from."""
    steps = curriculum_steps(cfg)
    if steps <= 0:
        return 1.0
    f = min(1.0, (step - 1) / steps)
    return cfg.time_window_start + (1.0 - cfg.time_window_start) * f


def train_resolution(cfg: TrainConfig, step: int) -> int:
    """The downscale factor (a power of two) that step ``step`` (1-based) trains at."""
    level = max(0, cfg.downscales - (step - 1) // max(cfg.resolution_schedule, 1))
    return 2**level


def downscaled_views(images: torch.Tensor, cams: Cameras, d: int):
    """(C, H, W, 3) images and their cameras at 1/d size: d x d area averages, the last ``H % d`` rows
    and ``W % d`` columns dropped, so the principal point stays put and ``K`` is exactly divided by d."""
    if d == 1:
        return images, cams
    C, H, W, _ = images.shape
    h, w = H // d, W // d
    small = torch.nn.functional.avg_pool2d(images[:, : h * d, : w * d].permute(0, 3, 1, 2), d).permute(0, 2, 3, 1)
    K = cams.K.clone()
    K[:, :2] /= d
    from dataclasses import replace

    return small.contiguous(), replace(cams, K=K, width=w, height=h)




@torch.no_grad()
def evaluate_scene(scene: Scene4D, capture, out: Path, sh_degree: int, *, write_images: bool = True,
                   reference_at=None, backend: str = "auto") -> dict:
    """Test-split PSNR / SSIM / (LPIPS when available) and a static-camera flicker figure."""
    from .media import write_image

    test = capture.test
    bg = torch.tensor(capture.background, dtype=torch.float32)
    pred = render_split(scene, test.cameras, bg, sh_degree, backend).clamp(0, 1)
    gt = test.images
    tr = capture.train
    held_out = not (len(test.cameras) == len(tr.cameras)
                    and torch.equal(test.cameras.world_to_camera, tr.cameras.world_to_camera)
                    and torch.equal(test.times.reshape(-1), tr.times.reshape(-1)))
    m = {
        "test_views": len(test.cameras),
        "held_out": held_out,
        "psnr": round(float(torch.stack([losses.psnr(pred[i : i + 1], gt[i : i + 1]) for i in range(len(gt))]).mean()), 3),
        "ssim": round(float(torch.stack([losses.ssim(pred[i : i + 1], gt[i : i + 1]) for i in range(len(gt))]).mean()), 4),
    }
    lp, why = losses.LPIPS.load()
    if lp is not None:
        m["lpips"] = round(float(sum(lp(pred[i : i + 1], gt[i : i + 1]) for i in range(len(gt))) / len(gt)), 4)
    else:
        m["lpips"] = None
        m["lpips_note"] = why
    # flicker: a fixed camera (the first test view) while time plays
    cam = test.cameras[0]
    ts = torch.linspace(0, 1, 30)
    still = Cameras(cam.K.expand(len(ts), 3, 3), cam.world_to_camera.expand(len(ts), 4, 4), cam.width, cam.height,
                    times=ts)
    frames = render_split(scene, still, bg, sh_degree, backend)
    m["flicker_static_camera"] = round(float(losses.flicker(frames.clamp(0, 1))), 4)
    if reference_at is not None:
        ref = torch.stack([reference_at(float(t), cam) for t in ts])
        m["flicker_truth"] = round(float(losses.flicker(ref)), 4)
        m["flicker_vs_truth"] = round(float(losses.flicker(frames.clamp(0, 1), ref)), 4)
    if write_images:
        try:
            for i in range(len(gt)):
                write_image(Path(out) / "renders" / "test" / f"{i:03d}.png", torch.cat([pred[i], gt[i]], dim=1))
        except OSError as e:  # a failing disk must not cost the scene: the metrics stand without the pictures
            m["test_renders_note"] = f"test views not written to {Path(out) / 'renders' / 'test'} ({e.strerror or e})"
    return m
