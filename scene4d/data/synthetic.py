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
from typing import Callable, Optional, Sequence, Union

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
    g, labels = _canonical()
    return _posed(g, labels, object_poses(float(t), orbiter_turns))


def _posed(g: Gaussians, labels: Tensor, poses: Sequence[tuple[Tensor, Tensor]]) -> Gaussians:
    """The canonical objects ``g`` (object ``labels[i]`` for Gaussian i) moved rigidly by their poses."""
    means = torch.empty_like(g.means)
    quats = torch.empty_like(g.quats)
    for i, (R, T) in enumerate(poses):
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
    scene_fn: Callable[[float], Gaussians], camera_angle_x: float = math.radians(FOV_DEG),
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
        out = rasterize(scene_fn(t), cams32[i], background=0.0, backend="torch")
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
    doc = {"camera_angle_x": camera_angle_x, "frames": frames}
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
    return _write_capture(out_dir, lambda t: scene_at(t, orbiter_turns), n_train=n_train, n_test=n_test, n_val=n_val,
                          size=size, seed=seed, background=background, alpha=alpha)


def _write_capture(out_dir, scene_fn: Callable[[float], Gaussians], *, n_train: int, n_test: int, n_val: int,
                   size: int, seed: int, background: BackgroundSpec, alpha: bool) -> Path:
    """The D-NeRF-format capture of ``scene_fn(t)``: monocular train views at evenly spaced times,
    test/val views at random cameras and times (every camera and time drawn from ``seed``)."""
    if n_train < 2 or n_test < 1 or n_val < 0 or size < 8:
        raise ValueError(f"need n_train >= 2, n_test >= 1, n_val >= 0, size >= 8; got "
                         f"{n_train}, {n_test}, {n_val}, {size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bg = parse_background(background, "white")
    gen = torch.Generator().manual_seed(seed)
    train_cams = _random_cameras(n_train, gen, size)
    train_t = torch.arange(n_train, dtype=torch.float64) / (n_train - 1)
    test_cams = _random_cameras(n_test, gen, size)
    test_t = torch.rand(n_test, generator=gen, dtype=torch.float64)
    _write_split(out, "train", train_cams, train_t, bg, alpha, scene_fn)
    _write_split(out, "test", test_cams, test_t, bg, alpha, scene_fn)
    if n_val:
        val_cams = _random_cameras(n_val, gen, size)
        val_t = torch.rand(n_val, generator=gen, dtype=torch.float64)
        _write_split(out, "val", val_cams, val_t, bg, alpha, scene_fn)
    elif (out / "transforms_val.json").exists():
        (out / "transforms_val.json").unlink()  # a stale val split from an earlier call would be read
    return out


class _DemoTruth:
    """The :func:`scene_at` scene's objects as :func:`motion_errors` reads a scene's truth."""

    names = OBJECT_NAMES
    extents = (0.33, 0.25, 0.46)  # orbiter and bobber radii, the cube's half diagonal (0.433), + a margin

    def __init__(self, orbiter_turns: float = 0.0):
        self.orbiter_turns = orbiter_turns

    def poses(self, t: float) -> list[tuple[Tensor, Tensor]]:
        return object_poses(t, self.orbiter_turns)


@torch.no_grad()
def motion_errors(scene, times=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), orbiter_turns: float = 0.0,
                  truth=None) -> dict:
    """How well a fitted scene follows each object's true rigid motion (degrees, scene units).

    The fitted Gaussians of an object are those whose fitted position at t = 0 lies inside the
    object's true extent then; their motion from 0 to t is reduced to one rigid motion (Kabsch)
    and compared with the truth: the angle of ``R_fit R_true^-1`` and the distance between the
    fitted Gaussians' centroid and where the true motion takes their t = 0 centroid (not the
    object's origin: a fit with no Gaussians on an unseen underside has its centroid off the
    origin without any motion error), averaged over ``times``. A spin the fit missed shows here even where
    the silhouette (and so much of the PSNR) is right. ``rotation_deg_by_time`` and
    ``centre_error_by_time`` give the same per time: where along the clip a fit lost track.
    ``orbiter_turns``: the spin the demo capture was made with (:func:`make_dnerf_capture`);
    ``truth``: another procedural scene (a :class:`SpinningScene`) instead of the demo's.
    """
    truth = _DemoTruth(orbiter_turns) if truth is None else truth
    at0 = scene.at(0.0).means.cpu()
    out = {}
    poses0 = truth.poses(0.0)
    for k, name in enumerate(truth.names):
        R0, T0 = poses0[k]
        sel = (at0 - T0).norm(dim=-1) < truth.extents[k]
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
            R_t, T_t = truth.poses(float(t))[k]
            R_true = R_t @ R0.T
            cos = ((R_fit @ R_true.T).trace() - 1) / 2
            rot_err.append(math.degrees(math.acos(max(-1.0, min(1.0, float(cos))))))
            ctr_err.append(float((m.mean(0) - (R_true @ (c0 - T0) + T_t)).norm()))
        out[name] = {"gaussians": int(sel.sum()), "rotation_deg": round(sum(rot_err) / len(rot_err), 2),
                     "centre_error": round(sum(ctr_err) / len(ctr_err), 4),
                     "rotation_deg_by_time": {float(t): round(e, 2) for t, e in zip(times, rot_err)},
                     "centre_error_by_time": {float(t): round(e, 4) for t, e in zip(times, ctr_err)}}
    return out


# --------------------------------------------------------------------------- spinning captures
def _bounding_radius(o: dict) -> float:
    """Radius of the ball around a :class:`SpinningScene` object's centre that holds it at any turn."""
    return o["size"] if o["shape"] == "sphere" else o["size"] * math.sqrt(3) / 2


HUES = {"red": (0.9, 0.2, 0.15), "orange": (1.0, 0.55, 0.1), "yellow": (1.0, 0.85, 0.3),
        "green": (0.2, 0.75, 0.3), "blue": (0.15, 0.35, 0.95), "purple": (0.6, 0.25, 0.8),
        "white": (0.95, 0.95, 0.95), "dark": (0.12, 0.12, 0.15)}


class SpinningScene:
    """Textured spheres that drift and spin about their own axes, and a turning box: the case a
    monocular fit finds hardest, a rotation only the texture shows (a sphere's outline never changes).

    Drawn from ``seed``: ``n_spheres`` spheres (radius in ``radius``, 0.2-0.3 by default; a two-tone
    latitude/longitude checker of ``cells`` cells, 4-7 by default, in two of :data:`HUES`), each spinning ``0.2 .. max_turns`` turns over the
    clip about its own random axis while its centre drifts 0.2-0.45 along a random direction (with a
    small vertical sway); a two-tone checkered box of side 0.45 below them turning 0.25 .. max_turns
    turns about a random near-vertical axis. Paths never bring two objects within 0.05 of each other
    and everything stays within :data:`SCENE_RADIUS`. Gaussian ``i`` is the same material point at every
    t. ``names``, ``poses(t)`` and ``extents`` are what :func:`motion_errors` reads.
    """

    def __init__(self, seed: int = 0, n_spheres: int = 3, max_turns: float = 0.5,
                 radius: tuple[float, float] = (0.2, 0.3), cells: tuple[int, int] = (4, 7)):
        if n_spheres < 1 or not 0.2 <= max_turns or not 0.05 <= radius[0] <= radius[1] <= 0.45 or not 1 <= cells[0] <= cells[1]:
            raise ValueError(f"SpinningScene: need n_spheres >= 1, max_turns >= 0.2, 0.05 <= radius <= 0.45 and "
                             f"cells >= 1; got {n_spheres}, {max_turns}, {radius}, {cells}")
        self.params = {"seed": seed, "n_spheres": n_spheres, "max_turns": max_turns, "radius": list(radius),
                       "cells": list(cells)}
        g = torch.Generator().manual_seed(10_000 + seed)
        u = lambda lo=0.0, hi=1.0: lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))  # noqa: E731
        hue_names = list(HUES)
        for _ in range(1000):
            objs = []
            phase = u(0, 2 * math.pi)
            for i in range(n_spheres):
                r = u(*radius)
                a = phase + 2 * math.pi * (i + u(-0.15, 0.15)) / n_spheres
                start = (u(0.5, 0.75) * math.cos(a), u(0.5, 0.75) * math.sin(a), u(-0.05, 0.45))
                d = u(0, 2 * math.pi)
                drift = u(0.2, 0.45)
                c1, c2 = (hue_names[int(j)] for j in torch.randperm(len(hue_names), generator=g)[:2])
                axis = torch.randn(3, generator=g)
                turns = u(0.2, max_turns) * (1 if u() < 0.5 else -1)
                objs.append({"name": f"sphere{i}", "shape": "sphere", "size": r, "colors": (c1, c2),
                             "cells": float(int(u(cells[0], cells[1] + 1))), "start": start,
                             "drift": (drift * math.cos(d), drift * math.sin(d), u(-0.1, 0.1)), "sway": u(0.0, 0.1),
                             "axis": tuple((axis / axis.norm()).tolist()), "turns": turns})
            tilt = torch.randn(3, generator=g) * 0.25 + torch.tensor([0.0, 0.0, 1.0])
            c1, c2 = (hue_names[int(j)] for j in torch.randperm(len(hue_names), generator=g)[:2])
            objs.append({"name": "box", "shape": "cube", "size": 0.45, "colors": (c1, c2), "cells": 4.0,
                         "start": (u(-0.1, 0.1), u(-0.1, 0.1), -0.6), "drift": (0.0, 0.0, 0.0), "sway": 0.0,
                         "axis": tuple((tilt / tilt.norm()).tolist()),
                         "turns": u(0.25, max_turns) * (1 if u() < 0.5 else -1)})
            self.objects = objs
            if self._fits():
                break
        else:  # pragma: no cover - 1000 draws always find a layout
            raise RuntimeError("SpinningScene: no layout found")
        self.names = tuple(o["name"] for o in objs)
        self.extents = tuple(_bounding_radius(o) + 0.03 for o in objs)
        self._canonical: Optional[tuple[Gaussians, Tensor]] = None

    def _centre(self, o: dict, t: float) -> Tensor:
        s, d = torch.tensor(o["start"]), torch.tensor(o["drift"])
        return s + d * t + torch.tensor([0.0, 0.0, o["sway"] * math.sin(2 * math.pi * t)])

    def _fits(self) -> bool:
        rad = [_bounding_radius(o) for o in self.objects]
        for t in torch.linspace(0, 1, 21).tolist():
            cs = [self._centre(o, t) for o in self.objects]
            if any(float(c.norm()) + r > SCENE_RADIUS - 0.05 for c, r in zip(cs, rad)):
                return False
            for i in range(len(cs)):
                for j in range(i + 1, len(cs)):
                    if float((cs[i] - cs[j]).norm()) < rad[i] + rad[j] + 0.05:
                        return False
        return True

    def canonical(self) -> tuple[Gaussians, Tensor]:
        """The objects in their local frames (each centred at its origin) and (N,) object labels."""
        if self._canonical is None:
            parts = []
            for o in self.objects:
                c1, c2 = HUES[o["colors"][0]], HUES[o["colors"][1]]
                parts.append(_striped_sphere(o["size"], c1, c2, o["cells"]) if o["shape"] == "sphere"
                             else _checkered_cube(o["size"], c1, c2))
            labels = torch.cat([torch.full((len(p),), i, dtype=torch.long) for i, p in enumerate(parts)])
            self._canonical = (Gaussians.cat(parts), labels)
        return self._canonical

    def poses(self, t: float) -> list[tuple[Tensor, Tensor]]:
        """Rigid pose ``(R, T)`` of each object at time t (a local point x is at ``R @ x + T``)."""
        t = float(t)
        import roma

        return [(roma.rotvec_to_rotmat(torch.tensor(o["axis"]) * (2 * math.pi * o["turns"] * t)), self._centre(o, t))
                for o in self.objects]

    def at(self, t: float) -> Gaussians:
        """The ground-truth Gaussians (float32, SH degree 0) at time t."""
        return _posed(*self.canonical(), self.poses(t))

    def describe(self) -> list[str]:
        """One line per object: shape, colours, spin and drift (what the capture's README states)."""
        out = []
        for o in self.objects:
            d = float(torch.tensor(o["drift"]).norm())
            out.append(f"{o['name']}: {o['shape']} {o['size']:.2f}, {o['colors'][0]}/{o['colors'][1]} checker, "
                       f"spins {o['turns']:+.2f} turns about ({', '.join(f'{a:+.2f}' for a in o['axis'])}), "
                       f"drifts {d:.2f}")
        return out


def make_spinning_capture(
    out_dir: Union[str, Path], *, seed: int = 0, n_spheres: int = 3, max_turns: float = 0.5,
    radius: tuple[float, float] = (0.2, 0.3), cells: tuple[int, int] = (4, 7), n_train: int = 100,
    n_test: int = 20, n_val: int = 0, size: int = 128, background: BackgroundSpec = "white", alpha: bool = True,
) -> Path:
    """Write a D-NeRF-format capture of :class:`SpinningScene` ``(seed, n_spheres, max_turns, radius,
    cells)``: monocular train views (view i at time ``i / (n_train - 1)``, its own random camera), test
    views at other random cameras and times; the objects and the cameras both come from ``seed``.
    Also writes ``scene.txt``: ``SpinningScene {parameters as JSON}`` (what :func:`spinning_scene_of`
    reads back), then a line per object. Returns ``out_dir``."""
    truth = SpinningScene(seed, n_spheres, max_turns, radius, cells)
    out = _write_capture(out_dir, truth.at, n_train=n_train, n_test=n_test, n_val=n_val, size=size, seed=seed,
                         background=background, alpha=alpha)
    (out / "scene.txt").write_text(f"SpinningScene {json.dumps(truth.params)}\n" + "\n".join(truth.describe()) + "\n")
    return out


def spinning_scene_of(capture_dir: Union[str, Path]) -> Optional[SpinningScene]:
    """The :class:`SpinningScene` a capture folder was made from (its ``scene.txt``), else None."""
    p = Path(capture_dir) / "scene.txt"
    first = p.read_text().split("\n", 1)[0] if p.is_file() else ""
    if not first.startswith("SpinningScene "):
        return None
    kw = json.loads(first[len("SpinningScene "):])
    return SpinningScene(kw["seed"], kw["n_spheres"], kw["max_turns"], tuple(kw["radius"]), tuple(kw["cells"]))


def main(argv=None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m scene4d.data.synthetic OUT_DIR", file=sys.stderr)
        raise SystemExit(2)
    path = make_dnerf_capture(args[0])
    print(f"wrote a D-NeRF capture to {path}")


if __name__ == "__main__":
    main()
