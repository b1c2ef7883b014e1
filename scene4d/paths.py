"""The camera path of ``scene4d render``: named paths, paths built from the capture's own cameras,
and camera path files.

A scene folder keeps the capture's input cameras (``cameras.json``, train and test views). From
them :func:`scene_rig` builds a :class:`cameras.CaptureRig` (average pose, up, forward-facing or
360, focus point, spread); the focus depth of a forward-facing capture comes from the scene's own
depth along the mean view, as LLFF takes it from its sparse points (:func:`depth_range`). Then:

* no ``--path``: an orbit for a 360 capture (and for a .ply or a scene without cameras), the
  tracking spiral (``track``) for a forward-facing one; :class:`PathPlan.note` says which and why;
* ``spiral``: forward-facing, LLFF's spiral around the mean input camera within the input spread
  (:func:`cameras.input_spiral`); otherwise the spiral around the scene's bounds;
* ``smooth``: the input trajectory stabilised, same timing (:func:`cameras.stabilized`);
* ``track``: a spiral around that stabilised trajectory at each frame's time, half the input
  spread wide (:func:`cameras.tracking_spiral`): every moment seen from near where the camera saw
  it, which is where a monocular fit is sharp;
* ``arc``: bullet time around the focus point across the captured angles (:func:`cameras.input_arc`);
* ``orbit`` / ``dolly``: around the scene's bounds as always, with the capture's up; a
  forward-facing capture's dolly runs back from the mean input camera along its view;
* ``train`` / ``test`` / a ``camera_path.json``: those cameras.

``extrapolate`` scales how far beyond the inputs spiral, arc and dolly go;
:class:`PathPlan.warning` says when any path leaves the region the inputs saw
(:func:`cameras.seen_region`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

import torch

from cameras import (
    CaptureRig,
    Cameras,
    capture_rig,
    dolly_zoom,
    input_arc,
    input_spiral,
    intrinsics_from_fov,
    llff_focus_depth,
    orbit,
    read_camera_path,
    schedule_times,
    seen_region,
    spiral,
    stabilized,
    tracking_spiral,
)
from cameras.capture_paths import FORWARD_FACING, TRACKING_RADIUS, arc_range

from .render import UP, SceneLike, UsageError, fit_size

NAMED = ("orbit", "spiral", "track", "dolly", "arc", "smooth", "train", "test")
FROM_INPUTS = ("arc", "smooth", "track")
"""Paths that exist only where the scene has input cameras."""
DEFAULT_FRAMES = 120
DEFAULT_SIZE = (640, 480)
DEFAULT_FOV = 45.0


@dataclass(frozen=True)
class PathPlan:
    """The cameras of a path and what to tell the user about them.

    Attributes:
        cameras: N cameras with ``times``.
        name: the path actually built (the default resolved: ``orbit`` or ``spiral``), or the file.
        note: how the path was chosen and built, one or two lines ("" for train/test and files).
        warning: one line when frames leave the region the input cameras saw, else "".
        rig: the capture's rig, when the scene has input cameras.
    """

    cameras: Cameras
    name: str
    note: str = ""
    warning: str = ""
    rig: Optional[CaptureRig] = None


def input_cameras(train: Optional[Cameras], test: Optional[Cameras]) -> Optional[Cameras]:
    """The capture's input cameras: train and test views together (test resized to train's size
    if they differ), or None when the scene has none."""
    cams = [c for c in (train, test) if c is not None and len(c) > 0]
    if not cams:
        return None
    w, h = cams[0].width, cams[0].height
    cams = [c if (c.width, c.height) == (w, h) else fit_size(c, w, h) for c in cams]
    if any(c.times is None for c in cams):
        cams = [c.with_times(torch.zeros(len(c))) if c.times is None else c for c in cams]
    return Cameras.cat([c.to(device="cpu", dtype=torch.float64) for c in cams])


@torch.no_grad()
def depth_range(scene: SceneLike, camera: Cameras, t: float = 0.5, long_side: int = 160) -> Optional[Tuple[float, float]]:
    """(near, far): the 5th and 95th percentiles of the scene's rendered depth where it is opaque
    (alpha >= 0.5) in ``camera`` (one camera, rendered with its long side at ``long_side`` pixels),
    at time ``t``; None when nothing opaque is in view. LLFF takes the 0.1 / 99.9 percentiles of
    its sparse points' depths; a fitted scene's stray Gaussians call for a wider margin."""
    from renderers import rasterize

    s = min(1.0, long_side / max(camera.width, camera.height))
    cam = camera.resized(max(1, round(camera.width * s)), max(1, round(camera.height * s)))
    g = scene.at(float(t))
    cam = cam.to(device=g.means.device, dtype=g.means.dtype)
    out = rasterize(g, cam, background=0.0, check=False)
    d = out.depth[0, ..., 0][out.alpha[0, ..., 0] >= 0.5].double().cpu()
    d = d[d > 0]
    if d.numel() < 16:
        return None
    return float(torch.quantile(d, 0.05)), float(torch.quantile(d, 0.95))


def scene_rig(scene: SceneLike, inputs: Cameras, *, up=None) -> Tuple[CaptureRig, str]:
    """(rig, how its focus was found) for a scene and its input cameras. A forward-facing capture's
    focus depth is LLFF's, from the scene's depth along the mean view at the middle input time."""
    rig = capture_rig(inputs, focus_depth=1.0, up=up)  # kind and average pose do not depend on the focus
    if rig.kind != FORWARD_FACING:
        return rig, "the point where the input optical axes meet"
    times = rig.inputs.times
    t = float(times.median()) if times is not None else 0.5
    rng = depth_range(scene, rig.mean_camera(dtype=torch.float64), t)
    if rng is None:
        c, r = scene.bounds()
        z = float((torch.as_tensor(c, dtype=torch.float64).cpu() - rig.center) @ rig.forward)
        if z <= 0:
            raise UsageError("the scene shows nothing in front of its mean input camera, so paths built from its "
                             "cameras have nothing to look at; check the scene with --path train")
        rng, how = (max(z - r, 0.1 * z), z + r), "the scene's bounds (nothing opaque along the mean view)"
    else:
        how = "the scene's depth along the mean view"
    near, far = rng
    rig = capture_rig(inputs, focus_depth=llff_focus_depth(near, far), up=up)
    return rig, f"LLFF focus from {how}, {near:.3g}..{far:.3g}"


def _up_vector(up) -> Optional[Tuple[float, float, float]]:
    if up is None:
        return None
    if isinstance(up, str):
        if up not in UP:
            raise UsageError(f"--up must be one of {sorted(set(UP))}, got {up!r}")
        return UP[up]
    return tuple(float(x) for x in up)


def _check_extrapolate(extrapolate: Optional[float]) -> float:
    if extrapolate is None:
        return 1.0
    x = float(extrapolate)
    if not math.isfinite(x) or not 0 < x <= 10:
        raise UsageError(f"--extrapolate must be a number in (0, 10] (1: as far as the input cameras went), "
                         f"got {extrapolate}")
    return x


def plan_path(
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
    scene_up: Optional[str] = None,
    center: Optional[Tuple[float, float, float]] = None,
    train_cameras: Optional[Cameras] = None,
    test_cameras: Optional[Cameras] = None,
    fps: Optional[float] = None,
    extrapolate: Optional[float] = None,
) -> PathPlan:
    """Build the cameras of ``path`` (None: the default for the capture) for ``scene``.

    Args:
        path: None, orbit, spiral, track, dolly, arc, smooth, train, test or a camera_path.json.
        frames: frames of a generated path; None: 120, and the input count for ``smooth``.
        size: (width, height); None: the input cameras' size for paths built from them (spiral
            and dolly of a forward-facing capture, arc, smooth) and for train/test, a camera path
            file's own, else 640x480. Another aspect ratio keeps the vertical field of view.
        time: schedule; None: ``play`` (``freeze:0.5`` for ``arc``; the input times for
            ``smooth``, ``train``, ``test`` and a file's own times).
        fov_deg: vertical field of view; None: the inputs' for paths built from them, else 45.
        elevation_deg, radius, center: orbit and the spiral / dolly around the scene's bounds.
        up: world up (``"+z"``... or a vector); None: the capture's (mean camera up, snapped to
            an axis within 15 degrees), else ``scene_up`` (scene.json), else +z.
        train_cameras, test_cameras: the capture's input cameras (a scene folder's cameras.json).
        fps: resamples a keyframed camera path file at this rate.
        extrapolate: scales how far spiral, track, arc and dolly go beyond the input cameras (default 1).
    """
    up_vec = _up_vector(up)
    X = _check_extrapolate(extrapolate)
    inputs = input_cameras(train_cameras, test_cameras)
    name = None if path is None else str(path)
    low = None if name is None else name.lower()
    is_file = low is not None and low not in NAMED
    if is_file and Path(name).suffix.lower() != ".json":
        raise UsageError(f"--path must be orbit, spiral, track, dolly, arc, smooth, train, test or a camera_path.json; "
                         f"got {path!r}")
    if low in FROM_INPUTS and inputs is None:
        raise UsageError(f"--path {low} is built from the capture's input cameras, and this scene has none (a .ply "
                         "file or a generated scene keeps no cameras.json); render a scene folder made by scene4d "
                         "reconstruct, or use --path orbit, spiral, dolly or a camera_path.json")
    if is_file and not Path(name).is_file():
        raise UsageError(f"--path {path}: no such camera path file")
    if frames is not None and int(frames) < 1:
        raise UsageError(f"--frames must be at least 1, got {frames}")

    rig, focus_how = None, ""
    if inputs is not None and low not in ("train", "test"):
        rig, focus_how = scene_rig(scene, inputs, up=up_vec)
    forward = rig is not None and rig.kind == FORWARD_FACING
    scales = rig is not None and (low in ("arc", "track") or (forward and low in ("spiral", "dolly", None)))
    if extrapolate is not None and not scales:
        if inputs is None:
            raise UsageError("--extrapolate scales paths built from the input cameras, and this scene has none (a "
                             ".ply file or a generated scene keeps no cameras.json)")
        raise UsageError(f"--extrapolate scales the paths built from the input cameras (spiral and dolly of a "
                         f"forward-facing capture, track, arc); it does not apply to {low or 'the default orbit'}"
                         + (" of this 360 capture" if rig is not None and not forward else ""))

    note = ""
    if low is None:
        if rig is None:
            low = "orbit"
            note = "path: orbit (the default: the scene has no input cameras to build a path from)"
        elif rig.kind == FORWARD_FACING:
            low = "track"
            note = (f"path: track, the default for a forward-facing capture ({len(rig.inputs)} input cameras; "
                    f"{rig.reason}): a spiral that follows the input camera, so each moment is seen from near "
                    "where it was filmed; --path spiral circles the mean input camera instead; a 360 capture "
                    "gets an orbit")
        else:
            low = "orbit"
            note = (f"path: orbit, the default for a 360 capture ({len(rig.inputs)} input cameras; {rig.reason}); "
                    "a forward-facing capture gets a spiral that follows its camera (track)")

    n = DEFAULT_FRAMES if frames is None else int(frames)
    if up_vec is not None:
        up_src = "--up"
    elif rig is not None:
        up_vec, up_src = tuple(rig.up.tolist()), "the input cameras'"
    else:
        up_vec, up_src = (UP[scene_up], "scene.json's") if scene_up in UP else (UP["+z"], "the default")
    built = _build(low, name, scene, rig, n=n, frames=frames, size=size, time=time, fov_deg=fov_deg,
                   elevation_deg=elevation_deg, radius=radius, up=up_vec, center=center, X=X,
                   train=train_cameras, test=test_cameras, fps=fps, focus_how=focus_how, up_src=up_src)
    cams, how = built
    note = "\n".join(s for s in (note, how) if s)
    warning = ""
    if rig is not None and low not in ("train", "test"):
        what = f"the {low} path" if low in NAMED else f"the camera path {Path(name).name}"
        warning = seen_region(rig, cams).summary(what)
        if warning and low in ("orbit", "dolly") and forward:
            warning += "; for this forward-facing capture try --path track, spiral, arc or smooth"
        elif warning and scales:
            warning += f" (--extrapolate {X:g}; lower it to stay nearer the inputs)"
    return PathPlan(cams, low if low in NAMED else name, note, warning, rig)


def _sized(cams: Cameras, size, fov_deg) -> Cameras:
    if size is not None:
        cams = fit_size(cams, *size)
    if fov_deg is not None:
        K = intrinsics_from_fov(math.radians(fov_deg), cams.width, cams.height, dtype=cams.dtype)
        cams = Cameras(K.expand(len(cams), 3, 3).clone(), cams.world_to_camera, cams.width, cams.height, cams.times)
    return cams


def _with_time(cams: Cameras, time: Optional[str]) -> Cameras:
    """Cameras that carry times keep them for ``None`` and ``"play"`` (their own play)."""
    if cams.times is None or time not in (None, "play"):
        cams = cams.with_times(schedule_times(time or "play", len(cams)))
    return cams


def _build(low, name, scene, rig, *, n, frames, size, time, fov_deg, elevation_deg, radius, up, center, X,
           train, test, fps, focus_how, up_src) -> Tuple[Cameras, str]:
    forward = rig is not None and rig.kind == FORWARD_FACING
    if low in ("train", "test"):
        cams = train if low == "train" else test
        if cams is None:
            raise UsageError(f"--path {low} needs the scene's {low} cameras: a .ply file has none, and a scene "
                             "folder keeps them in cameras.json (missing here, or without that split); use "
                             "--path orbit, spiral, dolly or a camera_path.json")
        if size is not None:
            cams = fit_size(cams, *size)
        return _with_time(cams, time), ""
    if low not in NAMED:
        cams = read_camera_path(Path(name), fps=fps)
        if size is not None:
            cams = fit_size(cams, *size)
        return _with_time(cams, time), ""
    if low == "smooth":
        cams = stabilized(rig, n_frames=frames, time=None if time in (None, "play") else time)
        return _sized(cams, size, fov_deg), (f"smooth: the {len(rig.inputs)} input cameras' trajectory stabilised "
                                             "(positions and rotations low-passed over 5 % of the clip), same timing")
    if low == "arc":
        start, sweep = arc_range(rig, X)
        cams = _sized(input_arc(rig, n, extrapolate=X, time=time or "freeze:0.5"), size, fov_deg)
        t = "" if time else "; time frozen at 0.5 (--time freeze:T to choose)"
        return cams, (f"arc: {sweep:.0f} deg around the focus point ({focus_how}): the {rig.az_length:.0f} deg of "
                      f"azimuth the input cameras see it from, widened 15 % x extrapolate {X:g}{t}")
    if low == "track":
        _, half = rig.spread(X * TRACKING_RADIUS)
        cams = _sized(tracking_spiral(rig, n, extrapolate=X, time=time or "play"), size, fov_deg)
        return cams, (f"track: a spiral around the stabilised input trajectory at each frame's time (half-widths "
                      f"{half[0]:.3g} x {half[1]:.3g} x {half[2]:.3g}: {TRACKING_RADIUS:g} x the input spread x "
                      f"extrapolate {X:g}), looking {rig.focus_depth:.3g} ahead ({focus_how})")
    if low == "spiral" and forward:
        mid, half = rig.spread(X)
        cams = _sized(input_spiral(rig, n, extrapolate=X, time=time or "play"), size, fov_deg)
        return cams, (f"spiral around the mean input camera within the spread of the inputs (half-widths "
                      f"{half[0]:.3g} x {half[1]:.3g} x {half[2]:.3g}, extrapolate {X:g}), looking at the focus "
                      f"{rig.focus_depth:.3g} ahead ({focus_how})")
    if low == "dolly" and forward:
        d0 = float(rig.dist.median())
        direction = rig.center - rig.focus
        fov = fov_deg if fov_deg is not None else math.degrees(2 * math.atan(0.5 * rig.height / float(rig.K[1, 1])))
        w, h = size if size is not None else (rig.width, rig.height)
        cams = dolly_zoom(tuple(rig.focus.tolist()), d0, d0 * (1 + X), n, direction=tuple(direction.tolist()),
                          fov_start_deg=fov, width=w, height=h, up=up, time=time or "play")
        return cams, (f"dolly: back from the mean input camera along its view, {d0:.3g} -> {d0 * (1 + X):.3g} from "
                      f"the focus point ({focus_how}), zooming to keep it the same size")

    # around the scene's bounds: orbit, and spiral / dolly without a forward-facing capture
    w, h = size if size is not None else DEFAULT_SIZE
    fov = DEFAULT_FOV if fov_deg is None else fov_deg
    c, r = scene.bounds()
    if center is not None:
        c = torch.as_tensor(center, dtype=torch.float32)
    K = intrinsics_from_fov(math.radians(fov), w, h)
    dist = radius if radius is not None else 1.0 * r / math.sin(math.radians(fov) / 2)  # frames the bounding sphere
    t = time or "play"
    if low == "orbit":
        cams = orbit(c, dist, elevation_deg, n, K=K, width=w, height=h, up=up, time=t)
    elif low == "spiral":
        cams = spiral(c, dist, n, K=K, width=w, height=h, up=up, elevation_deg=elevation_deg, time=t,
                      z_amplitude=0.25 * r)
    else:
        el = math.radians(elevation_deg)
        u = torch.tensor(up, dtype=torch.float32)
        e1 = torch.tensor([1.0, 0.0, 0.0]) if abs(u[0]) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
        e1 = e1 - (e1 @ u) * u
        e1 = e1 / e1.norm()
        direction = math.cos(el) * e1 + math.sin(el) * u
        cams = dolly_zoom(c, dist, dist * 2.0, n, direction=tuple(direction.tolist()), fov_start_deg=fov,
                          width=w, height=h, up=up, time=t)
    axis = next((k for k, v in UP.items() if k[0] in "+-" and torch.allclose(torch.tensor(v, dtype=torch.float64),
                                                                           torch.tensor(up, dtype=torch.float64))), None)
    return cams, f"{low} around the scene's bounds, up {axis or tuple(round(x, 3) for x in up)} ({up_src})"
