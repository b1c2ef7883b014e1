"""Fit a 4D scene to a calibrated dynamic capture: the ``scene4d reconstruct`` job.

One step: sample a training view (camera, t) -> ``scene.at(t)`` -> rasterize -> L1 + D-SSIM (+ plane
TV and time smoothness) -> backward -> densification hooks -> optimiser steps. The first
``warmup_iters`` fit static canonical Gaussians (the deformation is skipped), as in 4DGaussians.

Checkpoints (safetensors + JSON) hold everything the next step depends on — parameters, Adam
moments, densification statistics, RNG states, the step — so a resumed run is bit-for-bit the run
that was interrupted.
"""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from safetensors.torch import load_file
from tqdm import tqdm

from cameras import Cameras
from renderers import default_device, rasterize

from . import losses
from .deformation import FIELD_CONFIGS, HexPlaneConfig, MLPConfig, MotionNodesConfig, config_from_dict, config_to_dict
from .densify import DefaultStrategy, DensifyConfig
from .field import PARAM_NAMES, TEMPORAL_NAMES, Scene4D, init_params
from .io import SceneFolderError, atomic_save_tensors, atomic_write_json, save_scene


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
    d["densify"] = DensifyConfig(**d["densify"])
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


def make_optimizers(scene: Scene4D, cfg: TrainConfig, scene_scale: float):
    lrs = {
        "means": cfg.lr_means * scene_scale, "quats": cfg.lr_quats, "log_scales": cfg.lr_scales,
        "opacity_logits": cfg.lr_opacity, "sh_dc": cfg.lr_sh, "sh_rest": cfg.lr_sh / 20,
        "t_center": cfg.lr_t_center, "t_log_scale": cfg.lr_t_scale, "t_velocity": cfg.lr_t_velocity * scene_scale,
    }
    opts = {k: torch.optim.Adam([scene.params[k]], lr=lrs[k], eps=1e-15) for k in scene.param_names}
    deform_opt = None
    if scene.deformation is not None:
        group_lr = {
            "planes": cfg.lr_planes, "rotvecs": cfg.lr_rotation, "translations": cfg.lr_motion * scene_scale,
            "centers": cfg.lr_nodes * scene_scale, "log_radii": cfg.lr_nodes * 10,
        }
        groups: Dict[str, list] = {}
        for n, p in scene.deformation.named_parameters():
            groups.setdefault(n.split(".")[0] if n.split(".")[0] in group_lr else "mlp", []).append(p)
        deform_opt = torch.optim.Adam(
            [{"params": ps, "lr": group_lr.get(name, cfg.lr_deform * scene_scale), "base_lr": group_lr.get(name, cfg.lr_deform * scene_scale),
              "name": name} for name, ps in sorted(groups.items(), key=lambda kv: kv[0] != "mlp")], eps=1e-15)
    return opts, deform_opt, lrs


def _exp_decay(lr0: float, lr1: float, step: int, total: int) -> float:
    f = min(max(step / max(total, 1), 0.0), 1.0)
    return math.exp(math.log(lr0) * (1 - f) + math.log(lr1) * f)


# ----------------------------------------------------------------------------- checkpoints


def _opt_tensors(prefix: str, opt: torch.optim.Optimizer) -> Dict[str, torch.Tensor]:
    out = {}
    i = 0
    for g in opt.param_groups:
        for p in g["params"]:
            st = opt.state.get(p)
            if st:
                out[f"{prefix}.{i}.exp_avg"] = st["exp_avg"]
                out[f"{prefix}.{i}.exp_avg_sq"] = st["exp_avg_sq"]
                out[f"{prefix}.{i}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1)
            i += 1
    return out


def _load_opt(prefix: str, opt: torch.optim.Optimizer, tensors: Dict[str, torch.Tensor]) -> None:
    i = 0
    for g in opt.param_groups:
        for p in g["params"]:
            key = f"{prefix}.{i}.exp_avg"
            if key in tensors:
                opt.state[p] = {
                    "step": tensors[f"{prefix}.{i}.step"].reshape(()).clone(),
                    "exp_avg": tensors[key].clone(),
                    "exp_avg_sq": tensors[f"{prefix}.{i}.exp_avg_sq"].clone(),
                }
            i += 1


def save_checkpoint(folder: Path, step: int, scene: Scene4D, opts, deform_opt, strat_state, gen: torch.Generator,
                    cfg: TrainConfig, extra: dict) -> Path:
    ck = Path(folder) / "checkpoints"
    tensors = {f"canonical.{k}": scene.params[k].data for k in scene.param_names}
    if scene.deformation is not None:
        tensors.update({f"deformation.{k}": v for k, v in scene.deformation.state_dict().items()})
    for k, o in opts.items():
        tensors.update(_opt_tensors(f"adam.{k}", o))
    if deform_opt is not None:
        tensors.update(_opt_tensors("adam.deformation", deform_opt))
    tensors.update({f"densify.{k}": v for k, v in strat_state.items()})
    tensors["rng.sampler"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    if scene.device.type == "cuda":  # split offsets are drawn on the device
        tensors["rng.cuda"] = torch.cuda.get_rng_state(scene.device)
    atomic_save_tensors(ck / "latest.safetensors", tensors)
    # the JSON goes last: it names the step the tensors belong to
    atomic_write_json(ck / "latest.json", {"step": step, "config": config_to_json(cfg), **extra})
    return ck


# ----------------------------------------------------------------------------- the run


@dataclass
class RunResult:
    scene: Scene4D
    steps: int
    seconds: float
    metrics: dict


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
) -> RunResult:
    """Reconstruct ``capture`` (a :class:`scene4d.data.Capture`) into the scene folder ``out``.

    ``stop_at`` ends the run early after that many steps, with a checkpoint (as Ctrl-C does).
    ``reference_at(t, camera) -> (H, W, 3)`` (ground truth at any time, for procedural captures)
    adds the flicker of a static-camera render against the truth to the metrics.
    ``device``: where the scene, the images and the rasterizer live (None: CUDA when available,
    else the CPU). On CUDA the rasterizer is gsplat's when it is installed. A run may be resumed on
    another device; it is bit-exact on the CPU (CUDA's atomic adds make GPU runs vary in the last
    bits from run to run anyway). ``backend``: the rasterizer (auto, torch or gsplat; see
    :func:`renderers.rasterize`).
    """
    out = Path(out)
    device = torch.device(device) if device is not None else default_device()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train_split = capture.train
    images = train_split.images
    cams: Cameras = train_split.cameras
    if cams.times is None:
        raise ValueError("training cameras carry no times; a dynamic capture needs a time per view")
    bg = torch.tensor(capture.background, dtype=torch.float32, device=device)
    center, radius = capture.bounds()
    scene_scale = float(radius)

    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
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
    if hasattr(scene.deformation, "place_nodes"):
        scene.deformation.place_nodes(pts)
    scene.to(device)
    strategy = DefaultStrategy(cfg.densify, scene_scale)
    strat_state = strategy.initialize_state(len(scene), device)
    opts, deform_opt, base_lrs = make_optimizers(scene, cfg, scene_scale)
    start = 0

    ck = out / "checkpoints"
    source = str(capture.source)
    if resume:
        if (out / "scene.json").is_file() or not (ck / "latest.json").is_file():
            if (out / "scene.json").is_file():
                raise FileNotFoundError(f"{out}: nothing to resume, the run there finished (scene.json is written); "
                                        "render it, or choose another --out (or delete the folder) to run again")
            raise FileNotFoundError(f"{out}: nothing to resume (no checkpoints/latest.json); start without --resume")
        if conflict := resume_conflict(out, source):
            raise SceneFolderError(conflict)
        meta = json.loads((ck / "latest.json").read_text())
        tensors = load_file(str(ck / "latest.safetensors"))
        rng = {k: tensors.pop(k) for k in [k for k in tensors if k.startswith("rng.")]}
        tensors = {k: v.to(device) for k, v in tensors.items()}
        cfg_saved = config_from_json(meta["config"])
        if config_to_json(cfg_saved) != config_to_json(cfg):
            # the run continues with the configuration it started with, not today's flags: say so
            old, new = config_to_json(cfg_saved), config_to_json(cfg)
            changed = [k for k in new if k not in ("threads",) and old.get(k) != new[k]]
            if changed:
                print("resuming with the settings the run started with; ignored: "
                      + ", ".join(f"{k} {new[k]} (the run's: {old.get(k)})" if not isinstance(new[k], dict) else k
                                  for k in changed[:6]) + (" ..." if len(changed) > 6 else ""))
            cfg = cfg_saved
            dcfg = cfg.deformation
        names = PARAM_NAMES + (TEMPORAL_NAMES if cfg.temporal_opacity else ())
        params = {k: tensors[f"canonical.{k}"] for k in names}
        scene = Scene4D(params, dcfg, sh_degree=cfg.sh_degree).to(device)
        if scene.deformation is not None:
            scene.deformation.load_state_dict({k[12:]: v for k, v in tensors.items() if k.startswith("deformation.")})
        opts, deform_opt, base_lrs = make_optimizers(scene, cfg, scene_scale)
        for k, o in opts.items():
            _load_opt(f"adam.{k}", o, tensors)
        if deform_opt is not None:
            _load_opt("adam.deformation", deform_opt, tensors)
        strategy = DefaultStrategy(cfg.densify, scene_scale)
        strat_state = {k[len("densify."):]: v.clone() for k, v in tensors.items() if k.startswith("densify.")}
        gen.set_state(rng["rng.sampler"])
        torch.set_rng_state(rng["rng.torch"])
        if device.type == "cuda" and "rng.cuda" in rng:
            torch.cuda.set_rng_state(rng["rng.cuda"], device)
        start = int(meta["step"])
    elif why := existing_run(out):
        raise FileExistsError(why)

    out.mkdir(parents=True, exist_ok=True)
    total = cfg.iters
    last = total if stop_at is None else min(total, stop_at)
    interrupted = {"flag": False}

    def _on_sigint(signum, frame):  # finish the current step, then checkpoint and stop
        interrupted["flag"] = True

    old_handler = signal.signal(signal.SIGINT, _on_sigint) if _main_thread() else None
    t0 = time.perf_counter()
    bar = tqdm(total=total, initial=start, desc="reconstruct", unit="it", disable=not progress, dynamic_ncols=True)
    ema_loss, ema_psnr = None, None
    pyramid: Dict[int, tuple] = {}
    sorted_times, frame_order = torch.sort(cams.times.reshape(-1).double().cpu())
    view_times = cams.times.reshape(-1).tolist()  # on the host: no device sync per step
    images, dev_cams = images.to(device), cams.to(device=device)
    step = start
    try:
        while step < last:
            step += 1
            _set_lrs(opts, deform_opt, base_lrs, cfg, step, scene_scale)
            window = time_window(cfg, step)
            if window < 1.0:
                n_in = max(1, int(torch.searchsorted(sorted_times, window, right=True)))
                i = int(frame_order[int(torch.randint(n_in, (1,), generator=gen))])
                if scene.deformation is not None and hasattr(scene.deformation, "hold_after"):
                    scene.deformation.hold_after(float(sorted_times[n_in - 1]))
            else:
                i = int(torch.randint(len(cams), (1,), generator=gen))
            d = train_resolution(cfg, step)
            if d not in pyramid:
                pyramid.clear()  # levels are used in order; keep one
                pyramid[d] = downscaled_views(images, dev_cams, d)
            level_images, level_cams = pyramid[d]
            cam = level_cams[i]
            t = view_times[i]
            deform = step > cfg.warmup_iters
            degree = min(cfg.sh_degree, step // max(cfg.sh_interval, 1))
            g = scene.at(t, deform=deform)
            out_r = rasterize(g, cam, background=bg, sh_degree=degree, backend=backend, check=False)
            strategy.step_pre_backward(out_r)
            gt = level_images[i : i + 1]
            loss = losses.photometric(out_r.rgb, gt, cfg.lambda_dssim)
            if deform and scene.deformation is not None:
                reg = scene.deformation.regularizers()
                if "plane_tv" in reg:
                    loss = loss + cfg.plane_tv_weight * reg["plane_tv"]
                if "time_smoothness" in reg:
                    loss = loss + cfg.time_smoothness_weight * reg["time_smoothness"]
            loss.backward()
            report = strategy.step_post_backward(scene.params, opts, strat_state, step, out_r)
            if report and debug:
                print(step, report, len(scene), f"psnr {ema_psnr}")
            for o in opts.values():
                o.step()
                o.zero_grad(set_to_none=True)
            if deform_opt is not None:
                if deform:
                    deform_opt.step()
                deform_opt.zero_grad(set_to_none=True)
            if step % 5 == 0 or report or debug:  # reading a value back waits for the device: not every step
                with torch.no_grad():
                    p = float(losses.psnr(out_r.rgb.detach(), gt))
                    ema_loss = float(loss) if ema_loss is None else 0.8 * ema_loss + 0.2 * float(loss)
                    ema_psnr = p if ema_psnr is None else 0.8 * ema_psnr + 0.2 * p
            bar.update(1)
            if (step % 10 == 0 or report) and ema_loss is not None:
                bar.set_postfix(loss=f"{ema_loss:.4f}", psnr=f"{ema_psnr:.2f}", N=len(scene))
            if step % cfg.checkpoint_every == 0 and step < total:
                save_checkpoint(out, step, scene, opts, deform_opt, strat_state, gen, cfg, {"source": source})
            if interrupted["flag"]:
                break
    finally:
        bar.close()
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    seconds = time.perf_counter() - t0
    if step < total:
        save_checkpoint(out, step, scene, opts, deform_opt, strat_state, gen, cfg, {"source": source})
        if interrupted["flag"]:
            raise KeyboardInterrupt(
                f"stopped at step {step}/{total}; checkpoint saved in {out / 'checkpoints'}. "
                f"Continue with: scene4d reconstruct DATA --out {out} --resume"
            )
        return RunResult(scene, step, seconds, {})

    scene.eval()
    metrics = evaluate_scene(scene, capture, out, cfg.sh_degree, reference_at=reference_at, backend=backend) if evaluate else {}
    metrics.update({"train_seconds": round(seconds, 2), "steps": step, "n_gaussians": len(scene)})
    atomic_write_json(out / "metrics.json", metrics)
    save_scene(out, scene, train_cameras=cams, test_cameras=capture.test.cameras, background=capture.background,
               provenance={"source": str(capture.source), "format": capture.format, "config": config_to_json(cfg),
                           **(provenance or {})})
    # the scene is complete (scene.json is written last): a checkpoint left behind would let a later
    # --resume go back to an earlier step and overwrite the finished scene
    for name in ("latest.json", "latest.safetensors"):
        (out / "checkpoints" / name).unlink(missing_ok=True)
    return RunResult(scene, step, seconds, metrics)


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


def existing_run(out: Path) -> Optional[str]:
    """Why ``out`` cannot take a new run (None: it can): an unfinished run (continue it with
    --resume) or a finished scene (never overwritten silently)."""
    out = Path(out)
    latest = out / "checkpoints" / "latest.json"
    if (out / "scene.json").is_file():
        return (f"{out} already holds a finished scene; choose another --out, or delete the folder to run "
                "again (render it with: scene4d render " + str(out) + ")")
    if latest.is_file():
        try:
            step = f" at step {int(json.loads(latest.read_text())['step'])}"
        except (ValueError, KeyError, TypeError):
            step = ""
        return (f"{out} holds an unfinished run (stopped{step}); pass --resume to continue it, or choose another "
                "--out")
    return None


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


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _set_lrs(opts, deform_opt, base, cfg: TrainConfig, step: int, scene_scale: float) -> None:
    opts["means"].param_groups[0]["lr"] = _exp_decay(base["means"], base["means"] / 100, step, cfg.iters)
    if deform_opt is not None:
        for g in deform_opt.param_groups:
            lr0 = g["base_lr"]
            g["lr"] = _exp_decay(lr0, lr0 / 10, max(0, step - cfg.warmup_iters), max(1, cfg.iters - cfg.warmup_iters))


@torch.no_grad()
def render_split(scene: Scene4D, cams: Cameras, background, sh_degree: int, backend: str = "auto") -> torch.Tensor:
    """Every view of ``cams`` at its own time, rendered where the scene lives; (C, H, W, 3) on the CPU."""
    dev = scene.device
    times = cams.times.reshape(-1).tolist()
    cams = cams.to(device=dev)
    bg = torch.as_tensor(background, dtype=torch.float32, device=dev)
    frames = []
    for i in range(len(cams)):
        g = scene.at(times[i])
        frames.append(rasterize(g, cams[i], background=bg, sh_degree=sh_degree, backend=backend, check=False).rgb[0].cpu())
    return torch.stack(frames)


@torch.no_grad()
def evaluate_scene(scene: Scene4D, capture, out: Path, sh_degree: int, *, write_images: bool = True,
                   reference_at=None, backend: str = "auto") -> dict:
    """Test-split PSNR / SSIM / (LPIPS when available) and a static-camera flicker figure."""
    from .media import write_image

    test = capture.test
    bg = torch.tensor(capture.background, dtype=torch.float32)
    pred = render_split(scene, test.cameras, bg, sh_degree, backend).clamp(0, 1)
    gt = test.images
    m = {
        "test_views": len(test.cameras),
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
        for i in range(len(gt)):
            write_image(Path(out) / "renders" / "test" / f"{i:03d}.png", torch.cat([pred[i], gt[i]], dim=1))
    return m
