"""A procedural dynamic scene with known motion, and a D-NeRF-format capture of it.

The scene (z up, fits in a ball of radius 1.2 about the origin, every object opaque) is three
textured rigid objects made of surface Gaussians, each moving along a smooth analytic trajectory
over t in [0, 1]:

* ``orbiter``: a red/yellow checkered sphere of radius 0.3 whose centre goes once round a circle of
  radius 0.65 at height 0.15, ``(0.65 cos 2 pi t, 0.65 sin 2 pi t, 0.15)``, keeping its
  orientation; with ``orbiter_turns`` it also spins that many turns about its own vertical axis
  (``2 pi orbiter_turns t``) - a motion only its texture shows (its outline never changes), the
  hardest case for a monocular fit, which :mod:`bench/reconstruct.py` measures with
  ``--orbiter-turns``.
* ``bobber``: a blue/white checkered sphere of radius 0.22 on the z axis bobbing up and down,
  centre ``(0, 0, 0.3 + 0.35 sin 2 pi t)`` (0.7 peak to peak), not rotating.
* ``cube``: a green/dark checkered cube of side 0.5 centred at ``(0, 0, -0.55)`` turning half a
  turn about the z axis, ``pi t``.

The objects never touch. :func:`scene_at` gives the Gaussians at any time, always in the same
order, so Gaussian ``i`` is the same material point at every t (ground-truth correspondence);
:func:`object_poses` gives each object's rigid pose and :func:`object_labels` which object each
Gaussian belongs to.

:func:`make_dnerf_capture` renders it like D-NeRF's monocular captures: train frame i at time
``i / (n_train - 1)`` seen by its own random camera on the upper hemisphere, test/val views at
other random cameras and random times.

``python -m scene4d.data.synthetic OUT_DIR`` writes a capture with the defaults.
"""

from __future__ import annotations

import json
import math
import sys
from functools import lru_cache
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor

from cameras import Cameras, intrinsics_from_fov, look_at
from cameras.conventions import opencv_w2c_to_opengl_c2w, rotmat_to_quat_wxyz
from renderers import Gaussians, quat_multiply, rasterize
from scene4d.procedural import checker_color, sphere_samples, surface_splats

from .capture import BackgroundSpec, parse_background

OBJECT_NAMES = ("orbiter", "bobber", "cube")
CAMERA_RADIUS = 4.0
"""Distance of every synthetic camera from the origin (scene units)."""
FOV_DEG = 40.0
"""Field of view of the synthetic cameras (square images, so horizontal = vertical)."""
ELEVATION_DEG = (10.0, 70.0)
"""Camera elevation range above the z = 0 plane: the upper hemisphere, avoiding the pole
(where "z up" and the viewing direction would be parallel)."""
SCENE_RADIUS = 1.2
"""Every Gaussian centre lies within this distance of the origin at every time."""


# --------------------------------------------------------------------------- the scene
def _striped_sphere(radius: float, c1, c2, cells: float, density: float = 1200.0) -> Gaussians:
    """A sphere of surface discs centred at the origin, latitude/longitude checkered.

    ``density`` is discs per unit area; the disc size makes neighbours overlap so it renders opaque.
    """
    n = int(density * 4 * math.pi * radius**2)
    p, nrm = sphere_samples(n, (0.0, 0.0, 0.0), radius)
    lat = torch.asin(nrm[:, 2].clamp(-1, 1))
    lon = torch.atan2(nrm[:, 1], nrm[:, 0])
    # a longitude checker makes spin about the vertical axis visible, latitude bands make tilt visible
    col = checker_color(lat / math.pi + 0.5, lon / (2 * math.pi) + 0.5, c1, c2, cells)
    return surface_splats(p, nrm, col, radius * math.sqrt(4 * math.pi / n) * 0.8, opacity=0.98)


def _checkered_cube(side: float, c1, c2, k: int = 14) -> Gaussians:
    """A cube of surface discs centred at the origin: each face a k x k grid of discs, checkered 4 x 4."""
    h = side / 2
    u = (torch.arange(k, dtype=torch.float32) + 0.5) / k * side - h
    uu, vv = torch.meshgrid(u, u, indexing="ij")
    uu, vv = uu.flatten(), vv.flatten()
    parts = []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            pts = torch.zeros(k * k, 3)
            others = [a for a in range(3) if a != axis]
            pts[:, axis] = sign * h
            pts[:, others[0]] = uu
            pts[:, others[1]] = vv
            nrm = torch.zeros(k * k, 3)
            nrm[:, axis] = sign
            col = checker_color((uu + h) / side, (vv + h) / side, c1, c2, 4.0)
            parts.append(surface_splats(pts, nrm, col, side / k * 0.75, opacity=0.98))
    return Gaussians.cat(parts)


@lru_cache(maxsize=1)
def _canonical() -> tuple[Gaussians, Tensor]:
    """The objects in their local frames (each centred at its origin) and (N,) object labels."""
    objs = [
        _striped_sphere(0.3, (0.9, 0.2, 0.15), (1.0, 0.85, 0.3), 6.0),
        _striped_sphere(0.22, (0.15, 0.35, 0.95), (0.95, 0.95, 0.95), 4.0),
        _checkered_cube(0.5, (0.2, 0.75, 0.3), (0.08, 0.2, 0.1)),
    ]
    labels = torch.cat([torch.full((len(g),), i, dtype=torch.long) for i, g in enumerate(objs)])
    return Gaussians.cat(objs), labels


def _rot_z(angle: float) -> Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def object_poses(t: float, orbiter_turns: float = 0.0) -> list[tuple[Tensor, Tensor]]:
    """Rigid pose ``(R (3, 3), T (3,))`` of each object (:data:`OBJECT_NAMES` order) at time t:
    a local point ``x`` is at ``R @ x + T`` in the world. ``orbiter_turns``: the orbiter's spin
    about its own vertical axis over the clip, in turns."""
    t = float(t)
    a = 2 * math.pi * t
    return [
        (_rot_z(2 * math.pi * float(orbiter_turns) * t), torch.tensor([0.65 * math.cos(a), 0.65 * math.sin(a), 0.15])),
        (torch.eye(3), torch.tensor([0.0, 0.0, 0.3 + 0.35 * math.sin(a)])),
        (_rot_z(math.pi * t), torch.tensor([0.0, 0.0, -0.55])),
    ]


def object_labels() -> Tensor:
    """(N,) index into :data:`OBJECT_NAMES` of the object each Gaussian of :func:`scene_at` belongs to."""
    return _canonical()[1].clone()


def scene_at(t: Union[float, Tensor], orbiter_turns: float = 0.0) -> Gaussians:
    """The ground-truth Gaussians (float32, SH degree 0) at time ``t`` in [0, 1] (``orbiter_turns``:
    see :func:`object_poses`).

    Gaussian i is the same material point at every t (rigidly carried by its object).
    """
    t = float(t)
    g, labels = _canonical()
    means = torch.empty_like(g.means)
    quats = torch.empty_like(g.quats)
    for i, (R, T) in enumerate(object_poses(t, orbiter_turns)):
        m = labels == i
        means[m] = g.means[m] @ R.T + T
        quats[m] = quat_multiply(rotmat_to_quat_wxyz(R).expand(int(m.sum()), 4), g.quats[m])
    return Gaussians(means, quats, g.scales.clone(), g.opacities.clone(), g.sh.clone())


# --------------------------------------------------------------------------- the capture
def _random_cameras(n: int, gen: torch.Generator, size: int) -> Cameras:
    """n cameras at :data:`CAMERA_RADIUS` with random azimuth and elevation, looking at the origin, z up."""
    az = torch.rand(n, generator=gen, dtype=torch.float64) * 2 * math.pi
    lo, hi = (math.radians(e) for e in ELEVATION_DEG)
    el = lo + torch.rand(n, generator=gen, dtype=torch.float64) * (hi - lo)
    eye = CAMERA_RADIUS * torch.stack([torch.cos(el) * torch.cos(az), torch.cos(el) * torch.sin(az), torch.sin(el)], -1)
    w2c = look_at(eye, torch.zeros(3, dtype=torch.float64), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    K = intrinsics_from_fov(math.radians(FOV_DEG), size, size, dtype=torch.float64).expand(n, 3, 3).clone()
    return Cameras(K, w2c, size, size)


def _write_split(
    out_dir: Path, name: str, cams: Cameras, times: Tensor, background: tuple[float, float, float], alpha: bool,
    orbiter_turns: float,
) -> None:
    from PIL import Image

    (out_dir / name).mkdir(parents=True, exist_ok=True)
    c2w = opencv_w2c_to_opengl_c2w(cams.world_to_camera)  # float64, written at full precision
    cams32 = cams.to(dtype=torch.float32)
    bg = torch.tensor(background, dtype=torch.float32)
    frames = []
    for i in range(len(cams)):
        t = float(times[i])
        # render over black: rgb is then premultiplied colour, the form alpha compositing needs
        out = rasterize(scene_at(t, orbiter_turns), cams32[i], background=0.0, backend="torch")
        rgb_p, a = out.rgb[0].clamp(0, 1), out.alpha[0].clamp(0, 1)
        if alpha:
            # PNG stores straight (unassociated) colour; fully transparent pixels get the background
            # colour so viewers that ignore alpha still show a sensible picture
            straight = torch.where(a > 1e-4, (rgb_p / a.clamp_min(1e-4)).clamp(0, 1), bg)
            arr = torch.cat([straight, a], dim=-1)
        else:
            arr = rgb_p + bg * (1 - a)
        img = (arr.numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
        stem = f"r_{i:03d}"
        Image.fromarray(img, mode="RGBA" if alpha else "RGB").save(out_dir / name / f"{stem}.png")
        frames.append({
            "file_path": f"./{name}/{stem}",
            "time": t,
            "transform_matrix": c2w[i].tolist(),
        })
    doc = {"camera_angle_x": math.radians(FOV_DEG), "frames": frames}
    (out_dir / f"transforms_{name}.json").write_text(json.dumps(doc, indent=2))


def make_dnerf_capture(
    out_dir: Union[str, Path],
    *,
    n_train: int = 100,
    n_test: int = 20,
    n_val: int = 10,
    size: int = 128,
    seed: int = 0,
    background: BackgroundSpec = "white",
    alpha: bool = True,
    orbiter_turns: float = 0.0,
) -> Path:
    """Write a D-NeRF-format capture of the :func:`scene_at` scene into ``out_dir``; returns it.

    Writes ``transforms_{train,test,val}.json`` (OpenGL camera-to-world ``transform_matrix``,
    ``camera_angle_x``, ``time``) and ``{train,test,val}/r_###.png`` at ``size`` x ``size``.

    Args:
        out_dir: folder to write (created; existing files of the same names are overwritten).
        n_train: train views; view i is at time ``i / (n_train - 1)`` (monocular, like D-NeRF).
        n_test: test views at independent random cameras and uniformly random times.
        n_val: validation views, drawn like the test views (0 writes no val split).
        size: image width and height in pixels.
        seed: seeds every random camera and time, so the capture is reproducible.
        background: colour of fully transparent pixels (alpha is stored, so loaders composite
            over their own background), or, with ``alpha=False``, the colour composited under the scene.
        alpha: write RGBA PNGs whose alpha is the rendered opacity (True) or RGB composited over
            ``background`` (False).
        orbiter_turns: the orbiter's spin over the clip, in turns (see :func:`object_poses`).
    """
    if n_train < 2 or n_test < 1 or n_val < 0 or size < 8:
        raise ValueError(f"make_dnerf_capture: need n_train >= 2, n_test >= 1, n_val >= 0, size >= 8; got "
                         f"{n_train}, {n_test}, {n_val}, {size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bg = parse_background(background, "white")
    gen = torch.Generator().manual_seed(seed)
    train_cams = _random_cameras(n_train, gen, size)
    train_t = torch.arange(n_train, dtype=torch.float64) / (n_train - 1)
    test_cams = _random_cameras(n_test, gen, size)
    test_t = torch.rand(n_test, generator=gen, dtype=torch.float64)
    _write_split(out, "train", train_cams, train_t, bg, alpha, orbiter_turns)
    _write_split(out, "test", test_cams, test_t, bg, alpha, orbiter_turns)
    if n_val:
        val_cams = _random_cameras(n_val, gen, size)
        val_t = torch.rand(n_val, generator=gen, dtype=torch.float64)
        _write_split(out, "val", val_cams, val_t, bg, alpha, orbiter_turns)
    elif (out / "transforms_val.json").exists():
        (out / "transforms_val.json").unlink()  # a stale val split from an earlier call would be read
    return out


@torch.no_grad()
def motion_errors(scene, times=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), orbiter_turns: float = 0.0) -> dict:
    """How well a fitted scene follows each object's true rigid motion (degrees, scene units).

    The fitted Gaussians of an object are those whose fitted position at t = 0 lies inside the
    object's true extent then; their motion from 0 to t is reduced to one rigid motion (Kabsch)
    and compared with the truth: the angle of ``R_fit R_true^-1`` and the distance between the
    fitted Gaussians' centroid and where the true motion takes their t = 0 centroid (not the
    object's origin: a fit with no Gaussians on an unseen underside has its centroid off the
    origin without any motion error), averaged over ``times``. A spin the fit missed shows here even where
    the silhouette (and so much of the PSNR) is right. ``rotation_deg_by_time`` and
    ``centre_error_by_time`` give the same per time: where along the clip a fit lost track.
    ``orbiter_turns``: the spin the capture was made with (:func:`make_dnerf_capture`).
    """
    at0 = scene.at(0.0).means.cpu()
    out = {}
    extents = (0.33, 0.25, 0.46)  # orbiter and bobber radii, the cube's half diagonal (0.433), + a margin
    for k, name in enumerate(OBJECT_NAMES):
        R0, T0 = object_poses(0.0)[k]
        sel = (at0 - T0).norm(dim=-1) < extents[k]
        if int(sel.sum()) < 3:
            out[name] = {"gaussians": int(sel.sum()), "rotation_deg": None, "centre_error": None}
            continue
        c0 = at0[sel].mean(0)
        a = at0[sel] - c0
        rot_err, ctr_err = [], []
        for t in times:
            m = scene.at(float(t)).means.cpu()[sel]
            b = m - m.mean(0)
            U, _, Vh = torch.linalg.svd(b.T @ a)
            D = torch.diag(torch.tensor([1.0, 1.0, float(torch.sign(torch.det(U @ Vh)))]))
            R_fit = U @ D @ Vh
            R_t, T_t = object_poses(float(t), orbiter_turns)[k]
            R_true = R_t @ R0.T
            cos = ((R_fit @ R_true.T).trace() - 1) / 2
            rot_err.append(math.degrees(math.acos(max(-1.0, min(1.0, float(cos))))))
            ctr_err.append(float((m.mean(0) - (R_true @ (c0 - T0) + T_t)).norm()))
        out[name] = {"gaussians": int(sel.sum()), "rotation_deg": round(sum(rot_err) / len(rot_err), 2),
                     "centre_error": round(sum(ctr_err) / len(ctr_err), 4),
                     "rotation_deg_by_time": {float(t): round(e, 2) for t, e in zip(times, rot_err)},
                     "centre_error_by_time": {float(t): round(e, 4) for t, e in zip(times, ctr_err)}}
    return out


def main(argv=None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m scene4d.data.synthetic OUT_DIR", file=sys.stderr)
        raise SystemExit(2)
    path = make_dnerf_capture(args[0])
    print(f"wrote a D-NeRF capture to {path}")


if __name__ == "__main__":
    main()
