"""``scene4d generate``: fit a 4D scene to a prompt (and optionally a reference image).

The job builds the initial scene (one entity per character the prompt names), loads the priors,
and hands a :class:`~scene4d.generate.objective.ScoreDistillation` objective to the one fitting
loop, which owns optimisers, densification, checkpoints, bit-exact resume, progress and the scene
folder. Beside the ordinary scene folder it writes ``previews/`` (views x times grids, PNG),
``orbit.mp4`` and, for prompts of the toy world, ``metrics.json`` against the ground truth.
"""

from __future__ import annotations

import copy
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import torch

from cameras import Cameras
from diffusion_prior.experts import expert_meta

from ..field import Scene4D, init_params
from ..render import render_split
from ..train import FitConfig, LearningRates, fit
from ..train.state import read_checkpoint
from .config import GenerateConfig, config_from_json, config_to_json
from .errors import GenerateError
from .objective import ScoreDistillation, orbit_camera
from .priors import default_experts, load_image_prior, load_video_prior, parse_spec

RELATION_WORDS = ("next to", "on top of", "beside", "behind")


@dataclass
class GenerateResult:
    out: Path
    scene: Scene4D
    steps: int
    seconds: float
    metrics: dict
    video: Optional[Path]


def split_entities(prompt: str, n: Optional[int]) -> List[Tuple[str, str]]:
    """The characters a prompt names: ``[(name, relation to the next)]``. "a red ball bouncing next
    to a blue cube" -> two; ``n = 1`` keeps one field for everything."""
    text = prompt.strip().rstrip(".")
    for rel in RELATION_WORDS:
        m = re.search(rf"\s{rel}\s", text)
        if m and (n is None or n == 2):
            return [(text[: m.start()].strip(), rel), (text[m.end():].strip(), "")]
    return [(text, "")]


def entity_layout(entities: List[Tuple[str, str]], center, scale: float,
                  toy_scene=None) -> List[Tuple[Tuple[float, float, float], float]]:
    """Per entity ``(centre, size)``: where it starts and its size as a fraction of the scene's (its
    initial ball, and the camera of its own score-distillation steps: looking at the centre from
    ``size`` x the usual distance). A toy-world prompt takes its grammar's layout
    (:func:`toyworld.entity_frames`); otherwise the relation word places two entities side by side
    as the front camera (on +x) sees them, or one on top of the other."""
    c = torch.tensor(center, dtype=torch.float32)
    if len(entities) == 1:
        return [(tuple(float(v) for v in c), 1.0)]
    if toy_scene is not None and len(toy_scene.objects) == len(entities):
        from .toyworld import entity_frames

        return [(tuple(float(v) for v in c + scale * torch.tensor(o)), s) for o, s in entity_frames(toy_scene)]
    rel = entities[0][1]
    d = 0.42 * scale
    if rel == "on top of":
        offsets = [(0.0, 0.0, 0.35 * scale), (0.0, 0.0, -0.3 * scale)]
    elif rel == "behind":
        offsets = [(-d, 0.0, 0.0), (d, 0.0, 0.0)]
    else:
        offsets = [(0.0, -d, 0.0), (0.0, d, 0.0)]
    return [(tuple(float(v) for v in c + torch.tensor(o)), 0.65) for o in offsets]


def _name(text: str, i: int) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "_".join(words[1:3] if len(words) > 2 and words[0] in ("a", "an", "the") else words[:2]) or f"entity{i}"


def initial_scene(cfg: GenerateConfig, entities: List[Tuple[str, str]], center, scale: float,
                  layout: Optional[List[Tuple[Tuple[float, float, float], float]]] = None) -> Scene4D:
    """Random Gaussians in a ball per entity (grey, faint), each entity with its own field, placed
    by ``layout`` (:func:`entity_layout`; by default the relation word's)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    layout = layout or entity_layout(entities, center, scale)
    n_each = max(16, cfg.init_points // len(entities))
    parts = []
    names = []
    for i, ((text, _), (cen, size)) in enumerate(zip(entities, layout)):
        r = cfg.init_radius * scale * size
        d = torch.randn(n_each, 3, generator=gen)
        d = d / d.norm(dim=-1, keepdim=True) * torch.rand(n_each, 1, generator=gen) ** (1 / 3)
        pts = torch.tensor(cen, dtype=torch.float32) + r * d
        colors = 0.5 + 0.1 * torch.randn(n_each, 3, generator=gen)
        p = init_params(pts, colors.clamp(0, 1), cfg.sh_degree, opacity=cfg.init_opacity)
        name = _name(text, i)
        while name in names:
            name += "_2"
        names.append(name)
        dcfg = copy.deepcopy(cfg.deformation)
        if dcfg is not None:
            dcfg.bounds_center = tuple(float(c) for c in cen)
            dcfg.bounds_radius = float(r * 2.5)
        parts.append((name, p, dcfg))
    scene = Scene4D.from_entities(parts, sh_degree=cfg.sh_degree)
    scene.initialize_fields()
    return scene


def fit_config(cfg: GenerateConfig, scale: float) -> FitConfig:
    s1, _, _ = cfg.stage_steps()
    lrs = LearningRates(means=cfg.lr_means, quats=cfg.lr_quats, scales=cfg.lr_scales, opacity=cfg.lr_opacity,
                        sh=cfg.lr_sh, deform=cfg.lr_deform, planes=cfg.lr_planes, motion=cfg.lr_motion,
                        rotation=cfg.lr_rotation, nodes=cfg.lr_nodes)
    return FitConfig(iters=cfg.iters, lrs=lrs, scene_scale=scale, means_lr_decay=10.0, deformation_lr_decay=10.0,
                     deformation_lr_start=s1, densify=copy.deepcopy(cfg.densify), checkpoint_every=cfg.checkpoint_every)


def _read_image(path: Path, size: int, background) -> Tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
        im.load()
    except FileNotFoundError:
        raise GenerateError(f"--image {path}: no such file") from None
    except (UnidentifiedImageError, OSError) as e:
        raise GenerateError(f"--image {path}: not an image PIL can read ({type(e).__name__}); give a PNG or JPEG") from None
    im = im.convert("RGBA").resize((size, size), Image.LANCZOS)
    import numpy as np

    a = torch.from_numpy(np.asarray(im, dtype=np.float32).copy()).reshape(size, size, 4) / 255.0
    rgb, alpha = a[..., :3], a[..., 3:]
    bg = torch.tensor(background)
    if float(alpha.min()) > 0.99:  # no alpha channel: the foreground is what differs from the background
        alpha = ((rgb - bg).abs().amax(-1, keepdim=True) > 0.08).float()
    rgb = rgb * alpha + bg * (1 - alpha)
    return rgb, alpha


def generate(prompt: str, out: Path, cfg: GenerateConfig, *, prior: str = "toy", video_prior: Optional[str] = None,
             negative: str = "", image: Optional[Path] = None, resume: bool = False, device=None,
             backend: str = "auto", progress: bool = True, stop_at: Optional[int] = None, video: bool = True,
             allow_cpu: bool = False, command: str = "", watch=None) -> GenerateResult:
    """Fit a 4D scene to ``prompt`` into the scene folder ``out`` (see the module docstring)."""
    from ..train.state import claim

    out = Path(out)
    prompt = (prompt or "").strip()
    if not prompt:
        raise GenerateError("the prompt is empty; say what to make, e.g. scene4d generate \"a red ball bouncing\"")
    meta = read_checkpoint(out) if resume else None
    claim(out, resume)  # before any minutes are spent
    if meta is not None:
        saved = meta.get("generate", {})
        if saved.get("prompt") not in (None, prompt):
            raise GenerateError(f"{out}: the unfinished run there was generating {saved.get('prompt')!r}, not "
                                f"{prompt!r}; resume it with that prompt, or choose another --out")
        cfg = config_from_json(saved["config"])
        # a run recorded without a video prior keeps none (the shipped expert's default came later)
        prior, video_prior, negative = saved["prior"], saved.get("video_prior") or "none", saved.get("negative", "")
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cpu":
        from renderers import configure_cpu_threads

        configure_cpu_threads(cfg.threads or None)  # never collapses beside a busy process (bench/threads.py)
    elif cfg.threads:
        torch.set_num_threads(cfg.threads)
    kind, prior_path = parse_spec(prior, "--prior", ("toy", "analytic", "sd", "mvdream"))
    if video_prior is None and kind == "toy" and default_experts(prior_path):
        video_prior = "toy"  # the shipped time expert beside the shipped prior
    torch_threads = None
    if device.type == "cpu" and not cfg.threads and kind != "analytic":
        # a neural prior's U-Net is the run's time: every idle core for torch (a resumed run keeps the
        # count it started with, so it continues bit for bit); --threads N fixes it
        from renderers import idle_cores

        torch_threads = (meta or {}).get("generate", {}).get("torch_threads") or idle_cores()
        torch.set_num_threads(torch_threads)
    toy_scene = None
    if kind == "toy" or (kind == "analytic" and prior_path == "toy"):
        from .toyworld import ToyPromptError, parse_prompt

        try:
            toy_scene = parse_prompt(prompt)
        except ToyPromptError as e:
            raise GenerateError(f"{e}. The embedded toy prior knows only its small world (scene4d prior info "
                                "shows it); for other prompts bring real weights: --prior sd:PATH or "
                                "--prior mvdream:PATH with --video-prior zeroscope:PATH (see README)") from None
    if image is not None:
        image = Path(image)
        if not image.is_file():
            raise GenerateError(f"--image {image}: no such file")
    img_prior = load_image_prior(prior, device, allow_cpu, toy_scene=toy_scene)
    vid_prior = load_video_prior(video_prior, device, allow_cpu) if video_prior else None
    if isinstance(vid_prior, list) or (vid_prior is not None and expert_meta(vid_prior) is not None):
        vid_prior = _pair_with_experts(img_prior, vid_prior if isinstance(vid_prior, list) else [vid_prior],
                                       video_prior, cfg)
    if vid_prior is None and img_prior.kind in ("multiview", "analytic") and getattr(img_prior, "needs_times", False):
        vid_prior = img_prior  # one model is image, multi-view and video prior (the toy prior; the analytic one)
    if vid_prior is not None and vid_prior.kind not in ("video", "image_to_video", "multiview", "analytic"):
        raise GenerateError(f"--video-prior {video_prior}: that is an {vid_prior.kind} prior, not a video prior")
    if img_prior.kind in ("video", "image_to_video"):
        raise GenerateError(f"--prior {prior}: that is a video prior; pass it as --video-prior and give an image or "
                            "multi-view prior as --prior")
    if vid_prior is None and cfg.static_share < 1:
        print("generate: no video prior: motion is learned from the image / multi-view prior at single times only")
    center, scale = (0.0, 0.0, 0.0), 1.0
    if kind == "analytic" and toy_scene is None:
        c, r = img_prior.scene.bounds()
        center, scale = tuple(float(v) for v in c), float(r)
        cfg.background = tuple(img_prior.background)
    reference = None
    if image is not None:
        rgb, alpha = _read_image(image, cfg.size, cfg.background)
        reference = (rgb, alpha)
    emb = img_prior.encode_prompt(prompt, negative)
    if vid_prior is not None and vid_prior.kind == "image_to_video":
        if reference is None:
            raise GenerateError(f"--video-prior {video_prior}: an image-to-video prior animates a picture; give one "
                                "with --image ref.png (image-to-4D)")
        vemb = vid_prior.encode_prompt(prompt, negative, image=reference[0].permute(2, 0, 1))
    else:
        vemb = vid_prior.encode_prompt(prompt, negative) if vid_prior is not None and vid_prior is not img_prior else emb
    ents = split_entities(prompt, cfg.entities)
    # a run resumed from before the grammar's layout keeps the relation word's (its drift anchors)
    old_run = meta is not None and "entity_prob" not in meta.get("generate", {}).get("config", {})
    layout = entity_layout(ents, center, scale, None if old_run else toy_scene)
    scene = initial_scene(cfg, ents, center, scale, layout).to(device)
    entity_views = []
    if len(ents) > 1 and cfg.entity_prob > 0:  # each entity's own steps, with its own words (Comp4D's)
        texts = [text for text, _ in ents]
        if toy_scene is not None and len(toy_scene.objects) == len(ents):  # "a blue cube" -> "a blue cube still"
            from .toyworld import ToyScene

            texts = [ToyScene(objects=(o,)).prompt() for o in toy_scene.objects]
        for text, (cen, size) in zip(texts, layout):
            e_img = img_prior.encode_prompt(text, negative)
            e_vid = vid_prior.encode_prompt(text, negative) if vid_prior is not None and vid_prior is not img_prior \
                else e_img
            entity_views.append({"center": cen, "size": size, "emb": e_img, "video_emb": e_vid})
    stats = []
    with torch.no_grad():
        for i in range(scene.n_entities):
            g = scene.at(0.0, deform=False, entities=[i])
            cen = g.means.mean(0)
            stats.append((cen.cpu(), (g.means - cen).square().sum(-1).mean().cpu()))
    objective = ScoreDistillation(cfg, img_prior, emb, video_prior=vid_prior, video_emb=vemb, center=center,
                                  scale=scale, reference=reference, canonical_stats=stats,
                                  entity_views=entity_views)
    fcfg = fit_config(cfg, scale)
    out.mkdir(parents=True, exist_ok=True)

    preview_failed = []

    def on_step(step, sc, terms, report):
        if cfg.preview_every and (step % cfg.preview_every == 0 or step == cfg.iters):
            try:
                write_preview(sc, out / "previews" / f"step_{step:05d}.png", cfg, center, scale)
            except OSError as e:  # a preview is worth less than the run: say so once and go on
                if not preview_failed:
                    print(f"generate: the preview at step {step} could not be written to {out / 'previews'} "
                          f"({e.strerror or e}); training goes on", file=sys.stderr)
                preview_failed.append(step)
        if watch is not None:  # e.g. scene4d.view.LiveView (generate --view)
            watch(step, sc, terms, report)

    record = {"prompt": prompt, "negative": negative, "prior": prior, "video_prior": video_prior,
              "config": config_to_json(cfg), "image": None if image is None else str(image),
              "torch_threads": torch_threads}
    evaluate = None
    if toy_scene is not None:
        def evaluate(sc):
            return toy_metrics(sc, toy_scene, cfg)
    elif kind == "analytic":
        def evaluate(sc):
            return analytic_metrics(sc, img_prior.target_fn, cfg, center, scale)
    t0 = time.perf_counter()
    hint = f"scene4d generate \"{prompt}\" --out {out} --resume"
    res = fit(scene, objective, out, fcfg, resume=resume, stop_at=stop_at, progress=progress, backend=backend,
              provenance={"job": "generate", "command": command, **record},
              publish={"background": tuple(cfg.background)}, evaluate=evaluate,
              checkpoint_meta={"generate": record}, on_step=on_step, resume_command=hint)
    vid = None
    if res.steps >= cfg.iters and video:
        vid = write_orbit(res.scene, out / "orbit.mp4", cfg, center, scale)
    return GenerateResult(out, res.scene, res.steps, time.perf_counter() - t0, res.metrics, vid)


def _pair_with_experts(img_prior, experts, spec: str, cfg: GenerateConfig):
    """Time experts as the video prior: paired with the multi-view prior (:mod:`diffusion_prior.experts`);
    their cameras and their part of the schedule become the video steps' unless the preset sets them."""
    from diffusion_prior import PriorError
    from diffusion_prior.experts import TimeExpertPrior

    if img_prior.kind != "multiview":
        raise GenerateError(f"--video-prior {spec}: a time expert pairs with a multi-view --prior (the toy prior), "
                            f"not with this {img_prior.kind} prior")
    try:
        pair = TimeExpertPrior(img_prior, experts)
    except PriorError as e:
        raise GenerateError(f"--video-prior {spec}: {e}") from None
    if cfg.video_cameras is None:
        cfg.video_cameras = [(float(m["azimuth"]), float(m["elevation"])) for m in pair.metas]
    if cfg.video_t_min is None and max(pair.t_from) > 0:  # experts of the top of the schedule only
        cfg.video_t_min = max(pair.t_from)
        cfg.video_t_max = max(cfg.video_t_min, cfg.t_max)
    return pair


# ----------------------------------------------------------------------------- outputs
def preview_cameras(cfg: GenerateConfig, center, scale: float, size: int, n_views: int = 4):
    el = 0.5 * (cfg.elevation[0] + cfg.elevation[1])
    r = 0.5 * (cfg.radius[0] + cfg.radius[1])
    fov = 0.5 * (cfg.fov[0] + cfg.fov[1])
    cams = [orbit_camera(360.0 * i / n_views + 20.0, el, r * scale, fov, size, center) for i in range(n_views)]
    return Cameras(torch.stack([k for _, k in cams]), torch.stack([w for w, _ in cams]), size, size)


@torch.no_grad()
def render_grid(scene, cfg: GenerateConfig, center, scale: float, size: int = 64, n_views: int = 4,
                times=(0.0, 0.33, 0.67, 1.0)) -> torch.Tensor:
    """(views * size, times * size, 3): rows are views, columns times."""
    from renderers import rasterize

    cams = preview_cameras(cfg, center, scale, size, n_views).to(device=scene.device)
    bg = torch.tensor(cfg.background, dtype=torch.float32, device=scene.device)
    cols = [rasterize(scene.at(float(t)), cams, background=bg, check=False).rgb.clamp(0, 1).cpu() for t in times]
    grid = torch.stack(cols, dim=1)  # (V, T, s, s, 3)
    V, T = grid.shape[:2]
    return grid.permute(0, 2, 1, 3, 4).reshape(V * size, T * size, 3)


def write_preview(scene, path: Path, cfg: GenerateConfig, center, scale: float) -> Path:
    from ..media import write_image

    write_image(Path(path), render_grid(scene, cfg, center, scale, size=max(64, cfg.size)))
    return Path(path)


def write_orbit(scene, path: Path, cfg: GenerateConfig, center, scale: float, frames: int = 60, size: int = 192):
    from cameras.paths import orbit

    from ..render import render_video

    el = 0.5 * (cfg.elevation[0] + cfg.elevation[1])
    r = 0.5 * (cfg.radius[0] + cfg.radius[1]) * scale
    fov = 0.5 * (cfg.fov[0] + cfg.fov[1])
    from cameras import intrinsics_from_fov

    cams = orbit(center, r, el, frames, K=intrinsics_from_fov(math.radians(fov), size, size), width=size,
                 height=size, time="play")
    return render_video(scene, cams, Path(path), fps=20, background=cfg.background, device=scene.device).video


def _novel_cameras(cfg: GenerateConfig, center, scale: float, size: int, n_views: int = 8, n_times: int = 8,
                   seed: int = 12345):
    """(views x times) evaluation cameras, at views and times no training step drew on purpose."""
    g = torch.Generator().manual_seed(seed)
    ws, ks, ts = [], [], []
    for i in range(n_views):
        az = 360.0 * (i + 0.37) / n_views
        el = cfg.elevation[0] + (cfg.elevation[1] - cfg.elevation[0]) * float(torch.rand(1, generator=g))
        w, k = orbit_camera(az, el, 0.5 * (cfg.radius[0] + cfg.radius[1]) * scale, 0.5 * (cfg.fov[0] + cfg.fov[1]),
                            size, center)
        for j in range(n_times):
            ws.append(w)
            ks.append(k)
            ts.append((j + 0.5) / n_times)
    return Cameras(torch.stack(ks), torch.stack(ws), size, size, times=torch.tensor(ts))




def analytic_metrics(scene, target_fn, cfg: GenerateConfig, center, scale: float, size: Optional[int] = None) -> dict:
    from .. import losses

    size = size or cfg.size
    cams = _novel_cameras(cfg, center, scale, size)
    pred = render_split(scene, cams, cfg.background, cfg.sh_degree).clamp(0, 1)
    gt = target_fn(cams.world_to_camera[:, None], cams.K[:, None], cams.times[:, None], size, size)[:, 0]
    gt = gt.permute(0, 2, 3, 1)
    static = render_split(_Frozen(scene), cams, cfg.background, cfg.sh_degree).clamp(0, 1)
    return {"psnr": round(float(losses.psnr(pred, gt)), 3), "ssim": round(float(losses.ssim(pred, gt)), 4),
            "psnr_deformation_off": round(float(losses.psnr(static, gt)), 3), "eval_views": len(cams)}


class _Frozen:
    """The scene with its deformation off (the canonical at every time)."""

    def __init__(self, scene):
        self.scene = scene
        self.device = scene.device

    def at(self, t):
        return self.scene.at(t, deform=False)


def toy_metrics(scene, toy_scene, cfg: GenerateConfig, size: Optional[int] = None) -> dict:
    """PSNR / SSIM against the toy world's ground truth at novel views and times, and the attributes
    the model-free classifier reads off the generated scene's renders."""
    from .. import losses
    from . import toyworld as tw

    size = size or cfg.size
    cams = _novel_cameras(cfg, (0.0, 0.0, 0.0), 1.0, size)
    pred = render_split(scene, cams, cfg.background, cfg.sh_degree).clamp(0, 1)
    gt = tw.render_gt(toy_scene, cams)
    m = {"psnr": round(float(losses.psnr(pred, gt)), 3), "ssim": round(float(losses.ssim(pred, gt)), 4),
         "psnr_deformation_off": round(float(losses.psnr(render_split(_Frozen(scene), cams, cfg.background, cfg.sh_degree).clamp(0, 1), gt)), 3),
         "eval_views": len(cams), "prompt": toy_scene.prompt()}
    try:
        acc = toy_attributes(scene, toy_scene, cfg)
        m.update(acc)
    except Exception as e:  # the classifier must never cost a finished scene
        m["attributes_error"] = f"{type(e).__name__}: {e}"
    return m


def toy_attributes(scene, toy_scene, cfg: GenerateConfig) -> dict:
    """Attribute accuracy of a generated scene, judged like a prior sample: a clip of 8 times from
    each of 4 cameras, classified without a learned model."""
    from . import toyworld as tw

    size = max(32, cfg.size)
    out = {}
    n_obj = len(toy_scene.objects)
    per_view = []
    for v in range(4):
        w, k = orbit_camera(360.0 * v / 4 + 30.0, 15.0, 0.5 * (cfg.radius[0] + cfg.radius[1]),
                            0.5 * (cfg.fov[0] + cfg.fov[1]), size)
        ts = torch.linspace(0, 1, 8)
        cams = Cameras(k.expand(8, 3, 3), w.expand(8, 4, 4), size, size, times=ts)
        frames = render_split(scene, cams, cfg.background, cfg.sh_degree).clamp(0, 1)
        if n_obj == 1:
            cls = tw.classify(frames, cams)
        else:
            cls = tw.classify_scene(frames, cams, n_obj)
        per_view.append(tw.attribute_accuracy(toy_scene, cls))
    keys = sorted({k for d in per_view for k in d if isinstance(d[k], (int, float, bool))})
    for k in keys:
        out[f"acc_{k}"] = round(sum(float(d.get(k, 0)) for d in per_view) / len(per_view), 3)
    return out
