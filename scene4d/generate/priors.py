"""Which prior a ``generate`` run uses: ``--prior KIND[:PATH]`` and ``--video-prior KIND:PATH``.

* ``toy`` (default): the embedded toy prior shipped in ``assets/toy_prior`` (or ``toy:PATH``, a folder
  made by ``scene4d prior train-toy``); image, multi-view and video prior in one model.
* ``analytic:SCENE``: the closed-form prior whose targets are renders of ``SCENE`` (a scene folder or
  a 3DGS ``.ply``): the exact test of the machinery, and the ceiling of every evaluation.
  ``analytic:toy`` takes the toy world's ground truth of the prompt itself as the target (the
  ceiling of the toy prior: the same preset and cameras, a perfect score; a scene folder that is
  itself named ``toy`` is ``analytic:./toy``).
* ``sd:PATH``, ``mvdream:PATH`` (image / multi-view), ``zeroscope:PATH``, ``animatediff:SD,ADAPTER``,
  ``svd:PATH`` (video, image-to-video): diffusers folders a user brings (see README).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import torch

from cameras import Cameras
from renderers import rasterize

from .errors import PriorSpecError

ASSETS = (Path(__file__).resolve().parent.parent / "assets_data").resolve()
"""The top-level ``assets/`` folder (``scene4d/assets_data`` links to it; a wheel carries its files)."""

TOY_PRIOR_DIR = ASSETS / "toy_prior"
TOY_EXPERT_DIR = ASSETS / "toy_time_expert"
TOY_EXPERT_DIRS = (TOY_EXPERT_DIR, ASSETS / "toy_time_expert_120")
"""The shipped time experts (:mod:`diffusion_prior.experts`), at azimuths 30 and 120 (elevation 15),
paired with the shipped toy prior by default (``--video-prior toy``; ``--video-prior none``: the toy
prior alone). Two cameras 90 degrees apart: one camera alone cannot tell a slide along its line of
sight from one across it."""


def shipped_experts() -> Optional[str]:
    """The shipped time experts' folders, comma-separated (None where none ships)."""
    found = [str(d) for d in TOY_EXPERT_DIRS if d.is_dir()]
    return ",".join(found) or None

IMAGE_KINDS = ("toy", "analytic", "sd", "mvdream")
VIDEO_KINDS = ("toy", "none", "zeroscope", "modelscope", "animatediff", "svd")


def parse_spec(spec: str, flag: str, kinds: Tuple[str, ...]) -> Tuple[str, Optional[str]]:
    kind, _, path = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in kinds:
        other = "--video-prior" if flag == "--prior" else "--prior"
        where = f" ({kind} is a {'video' if kind in VIDEO_KINDS else 'image'} prior: pass it as {other})" \
            if kind in IMAGE_KINDS + VIDEO_KINDS else ""
        raise PriorSpecError(f"{flag} {spec!r}: unknown prior kind {kind!r}{where}; choose one of "
                             f"{', '.join(k + ('' if k == 'none' else ':PATH' if k != 'toy' else '[:PATH]') for k in kinds)}")
    if kind == "none" and path:
        raise PriorSpecError(f"{flag} {spec!r}: none takes no path (it means no separate {flag[2:]})")
    if kind not in ("toy", "none") and not path:
        raise PriorSpecError(f"{flag} {spec!r}: {kind} needs a path, e.g. {flag} {kind}:/path/to/folder")
    return kind, (path or None)


def load_toy(path: Optional[str] = None, device="cpu"):
    """The toy prior (shipped, or a folder from ``scene4d prior train-toy``)."""
    from diffusion_prior.multiview import MultiViewPrior

    folder = Path(path) if path else TOY_PRIOR_DIR
    if not folder.exists():
        if path is None:
            raise PriorSpecError(f"the embedded toy prior is missing ({folder}); reinstall scene4d, or train one with "
                                 "`scene4d prior train-toy --out DIR` and pass --prior toy:DIR/prior")
        raise PriorSpecError(f"--prior toy:{path}: no such folder (a folder from scene4d prior train-toy: "
                             "pass DIR/prior)")
    if (folder / "prior").is_dir() and not (folder / "unet").is_dir():
        folder = folder / "prior"  # the train-toy output folder itself
    return MultiViewPrior.from_pretrained(folder, device=device)


def default_experts(path: Optional[str]) -> Optional[str]:
    """The time experts paired with toy prior ``path`` by default: the shipped ones with the shipped
    prior (None with a prior of your own, or where none ships)."""
    return shipped_experts() if path is None else None


def load_toy_pair(path: Optional[str] = None, experts: Optional[str] = "default", device="cpu"):
    """The toy prior, paired with the time experts in ``experts`` (folders, comma-separated;
    "default": :func:`default_experts`; None or "none": the toy prior alone)
    (:class:`diffusion_prior.experts.TimeExpertPrior`)."""
    base = load_toy(path, device)
    if experts == "default":
        experts = default_experts(path)
    if not experts or experts == "none":
        return base
    from diffusion_prior import PriorError
    from diffusion_prior.experts import TimeExpertPrior

    try:
        return TimeExpertPrior(base, [load_toy(e, device) for e in experts.split(",")])
    except PriorError as e:
        raise PriorSpecError(f"time expert {experts}: {e}") from None


class SceneTarget:
    """Renders a scene (folder or .ply) as the analytic prior's targets: ``(w2c (B, G, 4, 4), K (B, G, 3, 3),
    times (B, G), H, W) -> (B, G, 3, H, W)``."""

    def __init__(self, scene, background=(1.0, 1.0, 1.0), device="cpu"):
        self.scene = scene
        self.background = torch.tensor(background, dtype=torch.float32)
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, w2c, K, times, height: int, width: int):
        B, G = w2c.shape[:2]
        out = torch.empty(B, G, 3, height, width)
        flat_w, flat_k, flat_t = w2c.reshape(-1, 4, 4), K.reshape(-1, 3, 3), times.reshape(-1)
        for t in torch.unique(flat_t).tolist():
            idx = torch.nonzero(flat_t == t).flatten()
            cams = Cameras(flat_k[idx].float(), flat_w[idx].float(), width, height).to(device=self.device)
            g = self.scene.at(float(t))
            rgb = rasterize(g.to(self.device), cams, background=self.background.to(self.device), check=False).rgb
            out.view(-1, 3, height, width)[idx] = rgb.permute(0, 3, 1, 2).clamp(0, 1).cpu()
        return out


def load_analytic(path: str, device="cpu", toy_scene=None):
    from diffusion_prior.analytic import AnalyticPrior

    if path == "toy":
        if toy_scene is None:
            raise PriorSpecError("--prior analytic:toy needs a prompt of the toy world (scene4d prior info lists it)")
        prior = AnalyticPrior(SceneTarget(toy_scene, (1.0, 1.0, 1.0), device))  # the toy world's white
        prior.scene = toy_scene
        prior.background = (1.0, 1.0, 1.0)
        return prior

    from ..cli import load_scene

    p = Path(path)
    if not p.exists():
        raise PriorSpecError(f"--prior analytic:{path}: no such scene folder or .ply file")
    scene, _, _ = load_scene(p)
    bg = (1.0, 1.0, 1.0)
    if p.is_dir():
        import json

        bg = tuple(json.loads((p / "scene.json").read_text()).get("background", bg))
    target = SceneTarget(scene, bg, device)
    prior = AnalyticPrior(target)
    prior.scene = scene  # the target's bounds frame the cameras
    prior.background = bg
    return prior


def load_image_prior(spec: str, device="cpu", allow_cpu: bool = False, toy_scene=None):
    kind, path = parse_spec(spec, "--prior", IMAGE_KINDS)
    if kind == "toy":
        return load_toy(path, device)
    if kind == "analytic":
        return load_analytic(path, device, toy_scene)
    from diffusion_prior import loading

    return loading.load_prior({"sd": "image", "mvdream": "multiview"}[kind], path, device=device,
                              allow_cpu=allow_cpu)


def load_video_prior(spec: str, device="cpu", allow_cpu: bool = False):
    """The ``--video-prior``: ``toy`` is the shipped time experts (a list; the toy prior itself where
    none ships), ``toy:DIR1,DIR2`` (several time experts) gives a list, ``none`` gives None."""
    kind, path = parse_spec(spec, "--video-prior", VIDEO_KINDS)
    if kind == "none":
        return None
    if kind == "toy" and path is None:
        path = shipped_experts()  # None where none ships: the toy prior itself
    if kind == "toy" and path and "," in path:  # several time experts (one per camera)
        return [load_toy(p, device) for p in path.split(",")]
    if kind == "toy":
        return load_toy(path, device)
    from diffusion_prior import loading

    return loading.load_prior({"zeroscope": "video", "modelscope": "video", "animatediff": "animatediff",
                               "svd": "svd"}[kind], path, device=device, allow_cpu=allow_cpu)

