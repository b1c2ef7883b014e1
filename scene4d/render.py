"""Render a scene along a camera path into video: the ``scene4d render`` job.

A *scene* is anything with ``at(t) -> renderers.Gaussians`` and ``bounds()``; a static 3DGS
``.ply`` is wrapped in :class:`StaticScene` so splats from other tools render through the same path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Protocol, Tuple, Union

import torch
from tqdm import tqdm

from cameras import Cameras
from renderers import Gaussians, RasterOptions, rasterize

from .media import VideoWriter, colorize_depth, write_image


class SceneLike(Protocol):
    def at(self, t: float) -> Gaussians: ...

    def bounds(self) -> Tuple[torch.Tensor, float]: ...


class UsageError(ValueError):
    """Bad command-line input: the message says what and how to fix it."""


@dataclass
class StaticScene:
    """A static Gaussian set (e.g. a 3DGS .ply): the same Gaussians at every time."""

    gaussians: Gaussians

    def at(self, t: float) -> Gaussians:
        return self.gaussians

    def bounds(self) -> Tuple[torch.Tensor, float]:
        return robust_bounds(self.gaussians)


def robust_bounds(g: Gaussians) -> Tuple[torch.Tensor, float]:
    """(centre (3,), radius) of the opaque bulk of a Gaussian set, ignoring far-flung floaters."""
    m = g.means.detach()
    keep = g.opacities.detach() > 0.1
    if keep.sum() >= 8:
        m = m[keep]
    if m.shape[0] == 0:
        return torch.zeros(3), 1.0
    lo = torch.quantile(m.float(), 0.02, dim=0)
    hi = torch.quantile(m.float(), 0.98, dim=0)
    center = (lo + hi) / 2
    radius = float((hi - lo).norm() / 2)
    return center, max(radius, 1e-3)


def parse_size(spec: str) -> Tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", spec or "")
    if not m:
        raise UsageError(f"--size must look like WIDTHxHEIGHT (e.g. 640x480), got {spec!r}")
    if int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        raise UsageError(f"--size needs a width and a height of at least 1 pixel, got {spec!r}")
    from cameras.limits import MAX_IMAGE_SIDE

    if max(int(m.group(1)), int(m.group(2))) > MAX_IMAGE_SIDE:
        raise UsageError(f"--size {spec}: at most {MAX_IMAGE_SIDE} pixels a side")
    return int(m.group(1)), int(m.group(2))


def parse_background(spec: Union[str, tuple, float]) -> Tuple[float, float, float]:
    named = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "grey": (0.5, 0.5, 0.5), "gray": (0.5, 0.5, 0.5)}
    if isinstance(spec, str):
        if spec.lower() in named:
            return named[spec.lower()]
        try:
            vals = tuple(float(x) for x in spec.split(","))
        except ValueError:
            vals = ()
        if len(vals) == 1:
            vals = vals * 3
        if len(vals) != 3 or not all(0 <= v <= 1 for v in vals):
            raise UsageError(f"--background must be white, black, grey or R,G,B in [0,1]; got {spec!r}")
        return vals  # type: ignore[return-value]
    return tuple(spec)  # type: ignore[return-value]


UP = {"+z": (0.0, 0.0, 1.0), "z": (0.0, 0.0, 1.0), "-z": (0.0, 0.0, -1.0), "+y": (0.0, 1.0, 0.0),
      "y": (0.0, 1.0, 0.0), "-y": (0.0, -1.0, 0.0), "+x": (1.0, 0.0, 0.0), "x": (1.0, 0.0, 0.0), "-x": (-1.0, 0.0, 0.0)}


def fit_size(cams: Cameras, width: int, height: int) -> Cameras:
    """``cams`` rendered at ``width`` x ``height``: the vertical field of view and the pixel aspect
    stay; with another aspect ratio the view is widened or narrowed about the principal point."""
    if (cams.width, cams.height) == (width, height):
        return cams
    sx, sy = width / cams.width, height / cams.height
    if abs(sx - sy) <= 1e-6 * max(sx, sy):
        return cams.resized(width, height)
    K = cams.K.clone()
    K[..., 0, 0] = cams.K[..., 0, 0] * sy
    K[..., 1, 1] = cams.K[..., 1, 1] * sy
    K[..., 0, 2] = cams.K[..., 0, 2] * sx
    K[..., 1, 2] = cams.K[..., 1, 2] * sy
    return replace(cams, K=K, width=int(width), height=int(height))


def make_path(
    path: Optional[str],
    scene: SceneLike,
    *,
    frames: Optional[int] = None,
    size: Optional[Tuple[int, int]] = None,
    time: Optional[str] = None,
    fov_deg: Optional[float] = None,
    elevation_deg: float = 20.0,
    radius: Optional[float] = None,
    up: Union[str, Tuple[float, float, float], None] = None,
    center: Optional[Tuple[float, float, float]] = None,
    train_cameras: Optional[Cameras] = None,
    test_cameras: Optional[Cameras] = None,
    fps: Optional[float] = None,
    extrapolate: Optional[float] = None,
    scene_up: Optional[str] = None,
) -> Cameras:
    """The cameras of a path: orbit, spiral, dolly, arc, smooth, train, test, a camera_path.json, or
    None for the capture's default (an orbit for 360 captures and scenes without input cameras, a
    spiral for forward-facing ones). Paths built from the input cameras (``train_cameras`` and
    ``test_cameras``: the capture's) are described in :mod:`scene4d.paths`, which
    :func:`scene4d.paths.plan_path` also returns the user-facing notes of.

    ``size`` (width, height): None keeps a camera path file's ``render_width/height``, the input
    cameras' size for paths built from them and for train / test, and is 640x480 for paths around
    the scene's bounds. Cameras given a size of another aspect ratio keep their vertical field of
    view and square pixels (the view widens or narrows, as nerfstudio renders a camera path at
    another size), rather than being stretched. ``fps`` resamples a keyframed camera path file at
    that rate, keeping its duration."""
    from .paths import plan_path

    return plan_path(path, scene, frames=frames, size=size, time=time, fov_deg=fov_deg, elevation_deg=elevation_deg,
                     radius=radius, up=up, scene_up=scene_up, center=center, train_cameras=train_cameras,
                     test_cameras=test_cameras, fps=fps, extrapolate=extrapolate).cameras


@torch.no_grad()
def render_split(scene, cams: Cameras, background, sh_degree: int, backend: str = "auto") -> torch.Tensor:
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


@dataclass
class RenderResult:
    video: Path
    depth_video: Optional[Path] = None
    alpha_video: Optional[Path] = None
    frames_dir: Optional[Path] = None
    n_frames: int = 0
    seconds: float = 0.0


def render_video(
    scene: SceneLike,
    cams: Cameras,
    out: Path,
    *,
    fps: float = 30.0,
    background=(1.0, 1.0, 1.0),
    backend: str = "auto",
    device: Union[str, torch.device] = "cpu",
    depth: bool = False,
    alpha: bool = False,
    png: bool = False,
    options: RasterOptions = RasterOptions(),
    progress: bool = True,
) -> RenderResult:
    """Render every camera of ``cams`` (each at its own time) and encode the video(s) as it goes:
    each frame goes to the encoder (and ``png`` frames to disk) when it is rendered, so memory does
    not grow with the number of frames, and an unwritable output fails before the first frame.
    The depth video's colour range is fixed first from up to 16 evenly spaced frames."""
    import time as _time

    out = Path(out)
    device = torch.device(device)
    cams = cams.to(device=device)
    if isinstance(scene, torch.nn.Module):  # a fitted scene: evaluate its deformation on the device too
        scene = scene.to(device)
    times = cams.times if cams.times is not None else torch.zeros(len(cams))
    frames_dir = out.with_suffix("") if png else None
    t0 = _time.perf_counter()
    cache = {"t": None, "g": None}

    def view(i: int):
        t = float(times[i])
        if cache["t"] != t:  # frozen time: evaluate the deformation once
            cache["g"], cache["t"] = scene.at(t).to(device=device), t
        return rasterize(cache["g"], cams[i], background=background, backend=backend, options=options)

    near = far = None
    with torch.no_grad():
        if depth:  # one depth range for the whole video: brightness means the same distance in every frame
            probe = sorted(set(torch.linspace(0, len(cams) - 1, min(16, len(cams))).round().long().tolist()))
            vals = []
            for i in probe:
                o = view(i)
                v = o.depth[0][o.alpha[0] > 0.5].float().cpu()
                vals.append(v[:: max(1, v.numel() // 20000)])
            vals = torch.cat(vals)
            near = float(torch.quantile(vals, 0.01)) if vals.numel() else 0.0
            far = float(torch.quantile(vals, 0.99)) if vals.numel() else 1.0
        writers = {"rgb": VideoWriter(out, fps)}
        try:
            if depth:
                writers["depth"] = VideoWriter(out.with_name(out.stem + "_depth" + out.suffix), fps)
            if alpha:
                writers["alpha"] = VideoWriter(out.with_name(out.stem + "_alpha" + out.suffix), fps)
            for i in tqdm(range(len(cams)), desc=f"render {out.name}", unit="frame", disable=not progress):
                o = view(i)
                writers["rgb"].write(o.rgb[0].cpu())
                if depth:
                    writers["depth"].write(colorize_depth(o.depth[0].cpu(), o.alpha[0].cpu(), near, far))
                if alpha:
                    writers["alpha"].write(o.alpha[0].cpu())
                if frames_dir is not None:
                    write_image(frames_dir / f"{i:05d}.png", o.rgb[0])
            paths = {k: w.close() for k, w in writers.items()}
        finally:
            for w in writers.values():
                w.abort()  # after close() this finds nothing to remove
    res = RenderResult(video=paths["rgb"], depth_video=paths.get("depth"), alpha_video=paths.get("alpha"),
                       frames_dir=frames_dir, n_frames=len(cams))
    res.seconds = _time.perf_counter() - t0
    return res
