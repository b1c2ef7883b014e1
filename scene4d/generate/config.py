"""Generation settings: typed dataclasses, loaded from JSON presets in ``configs/generate/``.

A preset file holds ``{"description", "base", "generate": {...}, "densify": {...}, "field": KIND,
"fields": {KIND: {...}}}``; like reconstruction presets it may hold only what it changes from its
``base`` (a preset name or a path relative to the file). Unknown keys, wrong types and values out of
range are errors naming the file and the key.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import List, Optional, Tuple, Union

from ..deformation import FIELD_CONFIGS
from ..densify import DensifyConfig
from ..presets import PRESET_DIR, PresetError, _check_keys, _check_types, _merge, _no_constants, _no_duplicates

GENERATE_PRESET_DIR = PRESET_DIR / "generate"


@dataclass
class GenerateConfig:
    """A text-to-4D run: stages, cameras, score distillation and regularisers."""

    iters: int = 1200
    """Total steps over all stages (``--iters``), split as the shares below say."""
    static_share: float = 0.5
    """Stage 1: static canonical Gaussians from the image / multi-view prior."""
    refine_share: float = 0.0
    """Stage 3 (optional): everything trained jointly at ``refine_lr_scale``."""
    refine_lr_scale: float = 0.1
    canonical_lr_scale: float = 0.0
    """Stage 2: learning-rate multiplier of the canonical Gaussians (0: frozen, as 4D-fy and
    DreamGaussian4D do while motion is learned)."""
    size: int = 32
    """Render size (square) once the resolution schedule is done."""
    start_size: int = 0
    """Render size at the start (progressive resolution; 0: ``size`` throughout)."""
    views: int = 4
    """Cameras per multi-view step (MVDream's 4, 90 degrees apart)."""
    frames: int = 4
    """Frames per video step (G)."""
    video_prob: float = 0.5
    """Stage 2: share of steps that are video steps (one camera, ``frames`` times); the others are
    multi-view steps at one random time (4D-fy's hybrid)."""
    guidance: float = 5.0
    """Classifier-free guidance scale, diffusers' form ``eps_u + s (eps_c - eps_u)``."""
    video_guidance: float = 5.0
    t_min: float = 0.02
    t_max: float = 0.98
    t_max_end: float = 0.5
    anneal: str = "sqrt"
    """t_max annealing: none, linear, sqrt (HiFA) or deterministic (DreamGaussian)."""
    video_t_min: Optional[float] = None
    video_t_max: Optional[float] = None
    """Video steps draw their timestep uniformly in [video_t_min, video_t_max], not annealed (None:
    the image steps' schedule). Where an object is at a time is decided at high noise: below about
    t = 0.6 the toy prior's clean-image estimate of a noised still clip stays still (measured), so
    its video steps score motion only up there."""
    video_cameras: Optional[List[Tuple[float, float]]] = None
    """[azimuth, elevation] pairs in degrees: each video step's camera is one of them, drawn at
    random (None: a random camera, as the multi-view steps). Time experts (``--video-prior
    toy:DIR[,DIR2]`` from ``train-toy --video-camera``) set them to their own cameras, and
    ``video_t_min`` / ``video_t_max`` to their part of the schedule, unless the preset gives them."""
    weighting: str = "sds"
    grad_clip: Optional[float] = None
    elevation: Tuple[float, float] = (0.0, 30.0)
    """Camera elevation range in degrees (MVDream's 0-30)."""
    radius: Tuple[float, float] = (3.0, 3.0)
    """Camera distance range, scene units (times the target's radius for the analytic prior)."""
    fov: Tuple[float, float] = (42.0, 42.0)
    """Vertical field-of-view range in degrees."""
    init_points: int = 1500
    init_radius: float = 0.5
    init_opacity: float = 0.1
    sh_degree: int = 0
    lr_means: float = 1.6e-3
    lr_quats: float = 1e-3
    lr_scales: float = 5e-3
    lr_opacity: float = 5e-2
    lr_sh: float = 5e-3
    lr_motion: float = 5e-3
    lr_rotation: float = 5e-3
    lr_nodes: float = 1e-3
    lr_deform: float = 1.6e-3
    lr_planes: float = 1.6e-2
    motion_strength: float = 1.0
    """Weight of the video score distillation (4D-fy's ``lambda_sds_video``): more motion."""
    arap_weight: float = 0.1
    """As-rigid-as-possible between neighbouring motion nodes of one entity."""
    time_smoothness_weight: float = 1e-3
    plane_tv_weight: float = 2e-4
    drift_weight: float = 1.0
    """Bound on each entity's centre and spread drifting from its canonical (AYG's idea)."""
    drift_free: float = 0.6
    """Drift of an entity's centre (in canonical radii) that costs nothing."""
    reference_weight: float = 1000.0
    """Image-to-4D: weight of the reference-view loss at t = 0 (MSE on colour)."""
    reference_alpha_weight: float = 100.0
    entities: Optional[int] = None
    """Characters (None: as many as the prompt names, at most 2; 1 keeps one field)."""
    entity_prob: float = 0.0
    """With two characters: share of steps (every stage) that render one of them alone, from a camera
    framing it, and score it with its own part of the prompt ("a red ball bouncing" of "a red ball
    bouncing next to a blue cube"), so each keeps its own colour and motion (Comp4D's per-entity
    score distillation); the other steps score the whole scene with the whole prompt."""
    preview_every: int = 200
    checkpoint_every: int = 300
    background: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    seed: int = 0
    threads: Optional[int] = None
    densify: DensifyConfig = field(default_factory=lambda: DensifyConfig(
        grow_grad2d=0.0002, refine_start=100, refine_stop=500, refine_every=100, reset_every=100000,
        max_gaussians=3000, prune_opacity=0.01))
    deformation: object = None
    """The deformation field config of each entity (a copy per entity)."""

    def stage_steps(self) -> Tuple[int, int, int]:
        """(static, motion, refine) step counts, summing to ``iters``."""
        s1 = int(round(self.iters * self.static_share))
        s3 = int(round(self.iters * self.refine_share))
        return s1, max(0, self.iters - s1 - s3), s3


_RANGES = {"iters": (1, None), "static_share": (0, 1), "refine_share": (0, 1), "canonical_lr_scale": (0, None),
           "refine_lr_scale": (0, None), "size": (8, 1024), "start_size": (0, 1024), "views": (1, 16),
           "frames": (2, 64), "video_prob": (0, 1), "guidance": (0, None), "video_guidance": (0, None),
           "t_min": (0, 1), "t_max": (0, 1), "t_max_end": (0, 1),
           "video_t_min": (0, 1), "video_t_max": (0, 1), "init_points": (1, 10_000_000),
           "init_radius": (1e-6, None), "init_opacity": (1e-6, 1 - 1e-6), "sh_degree": (0, 3),
           "motion_strength": (0, None), "preview_every": (0, None), "checkpoint_every": (1, None),
           "entities": (1, 2), "entity_prob": (0, 1), "seed": (0, None), "threads": (1, None)}
_KEYS = ("description", "base", "generate", "densify", "field", "fields")


def generate_preset_names() -> List[str]:
    return sorted(p.stem for p in GENERATE_PRESET_DIR.glob("*.json"))


def _path(name: Union[str, Path], named_in: Optional[Path] = None) -> Path:
    s = str(name)
    if s.endswith(".json") or "/" in s:
        p = Path(s)
        if named_in is not None and not p.is_absolute():
            p = named_in.parent / p
        if not p.is_file():
            raise PresetError(f"{p}: no such generate preset file; named presets: {', '.join(generate_preset_names())}")
        return p
    if s not in generate_preset_names():
        near = difflib.get_close_matches(s, generate_preset_names(), n=1)
        raise PresetError(f"unknown generate preset {s!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
                          + f"; choose one of {', '.join(generate_preset_names())}, or give a .json file")
    return GENERATE_PRESET_DIR / f"{s}.json"


def _read(name, seen=(), named_in=None) -> dict:
    path = _path(name, named_in)
    where = str(path)
    try:
        d = json.loads(path.read_text(), object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as e:
        raise PresetError(f"{where}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except Exception as e:  # duplicates / NaN, named by the helpers
        raise PresetError(f"{where}: {type(e).__name__} {e}") from None
    if not isinstance(d, dict):
        raise PresetError(f"{where}: a preset file holds one JSON object")
    layout = {"": list(_KEYS), "generate.": [f.name for f in fields(GenerateConfig) if f.name not in ("densify", "deformation")],
              "densify.": [f.name for f in fields(DensifyConfig)], "fields.": list(FIELD_CONFIGS)}
    for kind, cls in FIELD_CONFIGS.items():
        layout[f"fields.{kind}."] = [f.name for f in fields(cls) if f.name not in ("kind", "bounds_radius", "bounds_center")]
    _check_keys(d, layout, where, "")
    for sect, prefix in (("generate", "generate."), ("densify", "densify.")):
        if not isinstance(d.get(sect, {}), dict):
            raise PresetError(f"{where}: '{sect}' must be an object")
        _check_keys(d.get(sect, {}), layout, where, prefix)
    _check_types(GenerateConfig, {k: v for k, v in d.get("generate", {}).items()}, where, "generate.")
    _check_types(DensifyConfig, d.get("densify", {}), where, "densify.")
    if "field" in d and d["field"] not in FIELD_CONFIGS:
        raise PresetError(f"{where}: 'field' is {json.dumps(d['field'])}; choose one of {', '.join(FIELD_CONFIGS)}")
    for k, v in d.get("fields", {}).items():
        _check_keys(v, layout, where, f"fields.{k}.")
        _check_types(FIELD_CONFIGS[k], v, where, f"fields.{k}.")
    if "base" in d:
        key = str(_path(d["base"], path).resolve())
        if key in seen:
            raise PresetError(f"{where}: 'base' chain loops back to {d['base']}")
        d = _merge(_read(d["base"], seen + (str(path.resolve()),), path), {k: v for k, v in d.items() if k != "base"})
    return d


def load_generate_preset(name: Union[str, Path], field_kind: Optional[str] = None) -> GenerateConfig:
    """A :class:`GenerateConfig` from a preset name (``configs/generate/NAME.json``) or file."""
    d = _read(name)
    g = dict(d.get("generate", {}))
    for k in ("elevation", "radius", "fov", "background"):
        if k in g:
            g[k] = tuple(g[k])
    if g.get("video_cameras") is not None:
        g["video_cameras"] = [tuple(c) for c in g["video_cameras"]]
    cfg = GenerateConfig(**g, densify=DensifyConfig(**d.get("densify", {})))
    kind = field_kind or d.get("field", "nodes")
    if kind not in FIELD_CONFIGS:
        raise PresetError(f"unknown deformation field {kind!r}; choose one of {', '.join(FIELD_CONFIGS)}")
    cfg.deformation = FIELD_CONFIGS[kind](**d.get("fields", {}).get(kind, {}))
    check_ranges(cfg, str(_path(name)))
    return cfg


def check_ranges(cfg: GenerateConfig, where: str) -> None:
    for key, (lo, hi) in _RANGES.items():
        v = getattr(cfg, key)
        if v is None:
            continue
        if v < lo or (hi is not None and v > hi):
            rng = f"between {lo:g} and {hi:g}" if hi is not None else f"at least {lo:g}"
            raise PresetError(f"{where}: 'generate.{key}' is {v}; it must be {rng}")
    if cfg.static_share + cfg.refine_share > 1:
        raise PresetError(f"{where}: 'generate.static_share' + 'generate.refine_share' exceed 1")
    if cfg.t_min > cfg.t_max:
        raise PresetError(f"{where}: 'generate.t_min' is above 'generate.t_max'")
    if (cfg.video_t_min is None) != (cfg.video_t_max is None):
        raise PresetError(f"{where}: give both 'generate.video_t_min' and 'generate.video_t_max', or neither")
    if cfg.video_t_min is not None and cfg.video_t_min > cfg.video_t_max:
        raise PresetError(f"{where}: 'generate.video_t_min' is above 'generate.video_t_max'")
    if cfg.anneal not in ("none", "linear", "sqrt", "deterministic"):
        raise PresetError(f"{where}: 'generate.anneal' is {cfg.anneal!r}; choose none, linear, sqrt or deterministic")
    if cfg.weighting not in ("sds", "uniform", "fantasia3d"):
        raise PresetError(f"{where}: 'generate.weighting' is {cfg.weighting!r}; choose sds, uniform or fantasia3d")
    if cfg.video_cameras is not None and (not cfg.video_cameras or any(
            len(c) != 2 or not -90 <= c[1] <= 90 for c in cfg.video_cameras)):
        raise PresetError(f"{where}: 'generate.video_cameras' is {[list(c) for c in cfg.video_cameras]}; give a list "
                          "of [azimuth, elevation] pairs in degrees (elevations within [-90, 90]), or null")
    for k in ("elevation", "radius", "fov"):
        a, b = getattr(cfg, k)
        if a > b:
            raise PresetError(f"{where}: 'generate.{k}' is [{a}, {b}]; give [low, high]")


def config_to_json(cfg: GenerateConfig) -> dict:
    d = asdict(cfg)
    d["deformation"] = None if cfg.deformation is None else asdict(cfg.deformation)
    return d


def config_from_json(d: dict) -> GenerateConfig:
    from ..deformation import config_from_dict

    d = dict(d)
    d["densify"] = DensifyConfig(**d["densify"])
    d["deformation"] = None if d.get("deformation") is None else config_from_dict(d["deformation"])
    for k in ("elevation", "radius", "fov", "background"):
        d[k] = tuple(d[k])
    if d.get("video_cameras") is not None:
        d["video_cameras"] = [tuple(c) for c in d["video_cameras"]]
    return GenerateConfig(**d)
