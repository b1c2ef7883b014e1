"""A handheld-style video of a textured room with moving objects, and its true camera poses.

For tests, benchmarks and demos of the camera-pose step (:mod:`scene4d.sfm`) and of reconstructing
a 4D scene from a video. Rendering is analytic ray casting in numpy (exact, no rasterizer):

* the room is a box, x in [-2.5, 2.5], y in [-1.5, 1.5] (y up), z in [-3, 3.5], each wall with its
  own multi-scale procedural texture (value noise at several scales plus soft and hard-edged
  colour blobs): detail SIFT can find at any scale, smooth enough to fit photometrically;
* static furniture: textured boxes on the floor and two pillars, so the scene has depth;
* moving objects are two textured spinning spheres and a textured tumbling cube that drift
  across the view in front of the camera; their size is calibrated so that on average they cover
  ``dynamic_fraction`` of the image (0 leaves them out);
* the camera walks forward and sideways through the room (about 1.3 units of path) while panning
  slowly, with handheld jitter: smooth wobble plus per-frame noise in position and rotation.
  ``camera_motion="static"`` keeps the camera in one place (only tiny rotation jitter) and
  ``"pan"`` turns it 40 degrees on the spot: both without parallax.

Each frame is rendered at ``supersample`` times the size and area-averaged (anti-aliased), and the
clip is encoded as a high-quality H.264 mp4 by :func:`make_handheld_clip`; frame ``i`` has
timestamp ``i / fps`` and scene time ``i / (n_frames - 1)``.

``python -m scene4d.data.handheld OUT.mp4`` writes a clip with the defaults.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

ROOM_LO = np.array([-2.5, -1.5, -3.0])
ROOM_HI = np.array([2.5, 1.5, 3.5])
FOV_X_DEG = 60.0
TEXELS_PER_UNIT = 150.0
_LIGHT = np.array([0.3, 0.8, -0.5]) / np.linalg.norm([0.3, 0.8, -0.5])


@dataclass
class HandheldTruth:
    """Ground truth of a generated clip.

    Attributes:
        world_to_camera: (N, 4, 4) float64 OpenCV world-to-camera of every frame.
        K: (3, 3) float64 pixel intrinsics (pinhole, no distortion) at ``width`` x ``height``.
        times: (N,) scene time of each frame, ``i / (N - 1)``.
        width, height: image size.
        fps: frame rate the clip is encoded at.
        dynamic_coverage: (N,) fraction of each frame's pixels showing a moving object.
        path_length: length of the camera-centre polyline (scene units).
        dynamic_masks: (N, H, W) bool, True where a pixel shows a moving object (majority of
            its supersamples).
        path: the video file (None when only rendered).
    """

    world_to_camera: np.ndarray
    K: np.ndarray
    times: np.ndarray
    width: int
    height: int
    fps: float
    dynamic_coverage: np.ndarray
    path_length: float
    dynamic_masks: Optional[np.ndarray] = None
    path: Optional[Path] = None

    @property
    def centers(self) -> np.ndarray:
        """(N, 3) camera centres in world coordinates."""
        R = self.world_to_camera[:, :3, :3]
        t = self.world_to_camera[:, :3, 3]
        return -np.einsum("nji,nj->ni", R, t)


# --------------------------------------------------------------------------- textures
def _upsample(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bicubic upsampling of a small (h0, w0) float array to (h, w)."""
    from PIL import Image

    return np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize((w, h), Image.BICUBIC), dtype=np.float32)


def _texture(rng: np.random.Generator, h: int, w: int, n_blobs: int) -> np.ndarray:
    """(h, w, 3) float32 in [0, 1]: a base colour, value noise at several scales, colour blobs."""
    base = rng.uniform(0.25, 0.75, 3)
    img = np.broadcast_to(base, (h, w, 3)).astype(np.float32).copy()
    aspect = w / h
    for cells, amp in ((3, 0.25), (7, 0.2), (16, 0.16), (36, 0.12), (80, 0.08)):
        ch, cw = cells, max(2, int(round(cells * aspect)))
        lum = rng.uniform(-1, 1, (ch + 1, cw + 1))
        for c in range(3):
            tint = rng.uniform(-1, 1, (ch + 1, cw + 1))
            img[..., c] += amp * _upsample(0.7 * lum + 0.5 * tint, h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(n_blobs):
        r = float(np.exp(rng.uniform(np.log(2.5), np.log(min(h, w) / 6))))
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        y0, y1 = int(max(0, cy - 3 * r)), int(min(h, cy + 3 * r + 1))
        x0, x1 = int(max(0, cx - 3 * r)), int(min(w, cx + 3 * r + 1))
        if y1 <= y0 or x1 <= x0:
            continue
        d = np.hypot(yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx)
        if rng.random() < 0.5:
            a = np.exp(-0.5 * (d / (0.6 * r)) ** 2)  # soft blob
        else:
            a = np.clip(r - d + 0.5, 0.0, 1.0)  # disc with an anti-aliased edge
        col = rng.uniform(0.0, 1.0, 3).astype(np.float32)
        a = (a * rng.uniform(0.5, 0.95))[..., None]
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + col * a
    return np.clip(img, 0.0, 1.0)


def _sample(tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear lookup of (h, w, 3) ``tex`` at u, v in [0, 1] (u along width, v along height)."""
    h, w = tex.shape[:2]
    x = np.clip(u * w - 0.5, 0.0, w - 1.001)
    y = np.clip(v * h - 0.5, 0.0, h - 1.001)
    x0 = x.astype(np.int64)
    y0 = y.astype(np.int64)
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    top = tex[y0, x0] * (1 - fx) + tex[y0, x0 + 1] * fx
    bot = tex[y0 + 1, x0] * (1 - fx) + tex[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bot * fy


# --------------------------------------------------------------------------- geometry
def _rot(axis: int, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R = np.eye(3)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


def _w2c_from_yaw_pitch_roll(center: np.ndarray, yaw: float, pitch: float, roll: float) -> np.ndarray:
    """OpenCV world-to-camera of a camera at ``center`` looking along yaw/pitch (world y up), rolled."""
    f = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
    up = np.array([0.0, 1.0, 0.0])
    x = np.cross(f, up)
    x /= np.linalg.norm(x)
    y = np.cross(f, x)
    R = _rot(2, roll) @ np.stack([x, y, f])
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ center
    return T


def _smooth_noise(rng: np.random.Generator, n: int, amp: float, dims: int = 3) -> np.ndarray:
    """(n, dims) smooth wobble: a few random sinusoids per dimension, peak ~ amp."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    out = np.zeros((n, dims))
    for k, w in enumerate((1.3, 2.9, 5.7)):
        phase = rng.uniform(0, 2 * np.pi, dims)
        out += amp / (k + 1.5) * np.sin(2 * np.pi * w * t + phase)
    return out


def _camera_path(n: int, rng: np.random.Generator, motion: str) -> np.ndarray:
    """(n, 4, 4) world-to-camera along a jittery handheld walk (or a still camera)."""
    t = np.linspace(0.0, 1.0, n)
    if motion == "handheld":
        c = np.stack([-0.4 + 0.8 * t + 0.15 * np.sin(2 * np.pi * t),
                      0.06 * np.sin(3 * np.pi * t),
                      -1.2 + 1.0 * t], -1)
        c = c + _smooth_noise(rng, n, 0.03) + rng.normal(0, 0.004, (n, 3))
        yaw = np.radians(-12.0 + 24.0 * t)
        pitch = np.radians(-4.0 + 3.0 * np.sin(np.pi * t))
        rot_jitter = np.radians(_smooth_noise(rng, n, 2.5) + rng.normal(0, 0.3, (n, 3)))
    elif motion == "pan":
        c = np.tile(np.array([0.0, 0.0, -0.6]), (n, 1))
        yaw = np.radians(-20.0 + 40.0 * t)
        pitch = np.radians(-4.0) * np.ones(n)
        rot_jitter = np.radians(_smooth_noise(rng, n, 1.0) + rng.normal(0, 0.1, (n, 3)))
    elif motion == "static":
        c = np.tile(np.array([0.0, 0.0, -0.6]), (n, 1))
        yaw = np.zeros(n)
        pitch = np.radians(-4.0) * np.ones(n)
        rot_jitter = np.radians(rng.normal(0, 0.05, (n, 3)))
    else:
        raise ValueError(f"camera_motion={motion!r}: use 'handheld', 'pan' or 'static'")
    return np.stack([
        _w2c_from_yaw_pitch_roll(c[i], yaw[i] + rot_jitter[i, 0], pitch[i] + rot_jitter[i, 1], rot_jitter[i, 2])
        for i in range(n)
    ])


@dataclass
class _Object:
    kind: str  # "sphere" | "box"
    size: np.ndarray  # (3,) half extents of a box / (r, r, r) of a sphere, at scale 1
    tex: np.ndarray
    moving: bool = True
    depth: float = 0.0  # distance ahead of the walker
    lateral: tuple = (0.0, 0.0, 0.0)  # (amplitude, frequency, phase) of the side-to-side drift
    vertical: float = 0.0
    spin: tuple = (np.array([0.0, 1.0, 0.0]), 0.0)  # (axis (3,), turns over the clip)
    center: Optional[np.ndarray] = None  # fixed centre of a static object


# static furniture (centre, half extents): boxes on the floor and a pillar, clear of the camera path
FURNITURE = (
    ((-1.6, -1.0, 1.5), (0.4, 0.5, 0.4)),
    ((1.5, -1.1, 2.4), (0.5, 0.4, 0.5)),
    ((0.9, 0.0, 3.0), (0.2, 1.5, 0.2)),
    ((-0.7, -1.25, 2.6), (0.5, 0.25, 0.3)),
    ((2.0, -0.8, -0.5), (0.3, 0.7, 0.4)),
    ((-2.0, -0.3, 0.6), (0.25, 1.2, 0.25)),
)


class _Scene:
    """The room, its furniture and its moving objects; ``render`` casts rays for one camera at one time."""

    def __init__(self, rng: np.random.Generator, with_objects: bool):
        self.walls = []
        for axis in range(3):
            a, b = [(2, 1), (0, 2), (0, 1)][axis]  # texture (u, v) axes of the walls normal to `axis`
            ext_u = ROOM_HI[a] - ROOM_LO[a]
            ext_v = ROOM_HI[b] - ROOM_LO[b]
            for _side in range(2):
                h, w = int(ext_v * TEXELS_PER_UNIT), int(ext_u * TEXELS_PER_UNIT)
                self.walls.append((a, b, _texture(rng, h, w, n_blobs=int(ext_u * ext_v * 14))))
        self.objects = []
        for centre, half in FURNITURE:
            tex = _texture(rng, 256, 384, n_blobs=90)
            self.objects.append(_Object("box", np.array(half), tex, moving=False, center=np.array(centre)))
        if with_objects:
            specs = [("sphere", 0.32, 1.7, (0.55, 0.8, 0.0), 0.15),
                     ("sphere", 0.24, 2.3, (0.7, 1.1, 2.0), -0.3),
                     ("box", 0.22, 2.0, (0.6, 0.6, 4.0), 0.35)]
            for kind, size, depth, lat, vert in specs:
                axis = rng.normal(size=3)
                tex = _texture(rng, 256, 512, n_blobs=120) if kind == "sphere" else _texture(rng, 256, 384, n_blobs=90)
                self.objects.append(_Object(kind, np.full(3, size), tex, True, depth, lat, vert,
                                            (axis / np.linalg.norm(axis), rng.uniform(0.4, 0.9))))
        self.scale = 1.0  # size factor of the moving objects

    def object_pose(self, obj: _Object, t: float, walk_c: np.ndarray, walk_yaw: float):
        """(centre, local->world rotation, half extents) of an object at time t."""
        if not obj.moving:
            return obj.center, np.eye(3), obj.size
        amp, freq, ph = obj.lateral
        side = amp * math.sin(2 * math.pi * freq * t + ph)
        fwd = np.array([math.sin(walk_yaw), 0.0, math.cos(walk_yaw)])
        right = np.array([-math.cos(walk_yaw), 0.0, math.sin(walk_yaw)])
        c = walk_c + obj.depth * fwd + side * right + np.array([0.0, obj.vertical + 0.1 * math.sin(3 * t + ph), 0.0])
        axis, turns = obj.spin
        ang = 2 * math.pi * turns * t
        K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        R = np.eye(3) + math.sin(ang) * K + (1 - math.cos(ang)) * K @ K  # local -> world
        return c, R, obj.size * self.scale

    def render(self, w2c: np.ndarray, K: np.ndarray, width: int, height: int, t: float,
               walk: tuple, mask_only: bool = False):
        R = w2c[:3, :3]
        o = -R.T @ w2c[:3, 3]
        jj, ii = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        d_cam = np.stack([(jj - K[0, 2]) / K[0, 0], (ii - K[1, 2]) / K[1, 1], np.ones_like(jj)], -1).reshape(-1, 3)
        d = d_cam @ R  # rows: R^T d_cam
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        n = d.shape[0]
        best_t = np.full(n, np.inf)
        hit_obj = np.full(n, -1)
        objects = [ob for ob in self.objects if ob.moving or not mask_only]
        poses = [self.object_pose(ob, t, *walk) for ob in objects]
        hits = []
        for k, (ob, (c, Ro, s)) in enumerate(zip(objects, poses)):
            # rays that meet the object's bounding sphere (cheap culling)
            oc = o - c
            b = d @ oc
            r = s[0] if ob.kind == "sphere" else float(np.linalg.norm(s))
            disc = b * b - (oc @ oc - r * r)
            idx = np.flatnonzero((disc > 0) & (np.sqrt(np.maximum(disc, 0.0)) - b > 1e-6))
            th = np.full(n, np.inf)
            face = None
            if ob.kind == "sphere":
                tt = -b[idx] - np.sqrt(disc[idx])
                th[idx] = np.where(tt > 1e-6, tt, np.inf)
            else:
                face = np.zeros(n, dtype=np.int64)
                ol = Ro.T @ oc
                dl = d[idx] @ Ro
                dl = np.where(np.abs(dl) < 1e-12, 1e-12, dl)
                t1 = (-s - ol) / dl
                t2 = (s - ol) / dl
                tn = np.minimum(t1, t2)
                tmin = tn.max(axis=-1)
                tmax = np.maximum(t1, t2).min(axis=-1)
                face[idx] = tn.argmax(axis=-1)
                th[idx] = np.where((tmax >= tmin) & (tmin > 1e-6), tmin, np.inf)
            closer = th < best_t
            best_t = np.where(closer, th, best_t)
            hit_obj = np.where(closer, k, hit_obj)
            hits.append(face)
        moving = np.array([ob.moving for ob in objects] + [False])
        dyn = moving[hit_obj]  # index -1 (walls) picks the trailing False
        if mask_only:
            return None, dyn.reshape(height, width)
        rgb = np.zeros((n, 3), dtype=np.float32)
        # walls: the exit point of the ray from the room
        with np.errstate(divide="ignore"):
            tw = np.where(d > 0, (ROOM_HI - o) / d, (ROOM_LO - o) / d)
        tw = np.where(np.isfinite(tw) & (tw > 0), tw, np.inf)
        axis = np.argmin(tw, axis=-1)
        twall = tw[np.arange(n), axis]
        p = o + twall[:, None] * d
        wall = hit_obj < 0
        for ax in range(3):
            for side in range(2):
                sel = wall & (axis == ax) & ((d[:, ax] > 0) == bool(side))
                if not sel.any():
                    continue
                a, b, tex = self.walls[2 * ax + side]
                u = (p[sel, a] - ROOM_LO[a]) / (ROOM_HI[a] - ROOM_LO[a])
                v = (p[sel, b] - ROOM_LO[b]) / (ROOM_HI[b] - ROOM_LO[b])
                rgb[sel] = _sample(tex, u, v)
        for k, (ob, (c, Ro, s)) in enumerate(zip(objects, poses)):
            sel = hit_obj == k
            if not sel.any():
                continue
            q = (o + best_t[sel, None] * d[sel] - c) @ Ro / s  # local coordinates in [-1, 1]
            if ob.kind == "sphere":
                q = q / np.linalg.norm(q, axis=-1, keepdims=True)
                u = np.arctan2(q[:, 1], q[:, 0]) / (2 * np.pi) + 0.5
                v = np.arcsin(np.clip(q[:, 2], -1, 1)) / np.pi + 0.5
                col = _sample(ob.tex, u, v)
                shade = 0.7 + 0.3 * np.clip((q @ Ro.T) @ _LIGHT, 0, 1)  # a fixed light (Lambertian)
            else:
                fa = hits[k][sel]
                others = np.array([[1, 2], [2, 0], [0, 1]])[fa]
                uu = (np.take_along_axis(q, others[:, :1], 1)[:, 0] + 1) / 2
                vv = (np.take_along_axis(q, others[:, 1:], 1)[:, 0] + 1) / 2
                sign = (np.take_along_axis(q, fa[:, None], 1)[:, 0] > 0).astype(np.int64)
                face = 2 * fa + sign
                u = (face % 3 + np.clip(uu, 0, 1)) / 3
                v = (face // 3 + np.clip(vv, 0, 1)) / 2
                col = _sample(ob.tex, u, v)
                shade = 0.75 + 0.05 * face  # a fixed brightness per face
            rgb[sel] = col * np.asarray(shade, dtype=np.float32).reshape(-1, 1)
        return rgb.reshape(height, width, 3), dyn.reshape(height, width)


def _walker(w2c: np.ndarray):
    """Smooth centre and yaw the moving objects keep ahead of (the camera path without jitter)."""
    n = len(w2c)
    R = w2c[:, :3, :3]
    c = -np.einsum("nji,nj->ni", R, w2c[:, :3, 3])
    t = np.linspace(0, 1, n)
    fwd = R[:, 2, :]
    # low-order polynomial fits remove the jitter
    deg = min(3, n - 1)
    cs = np.stack([np.polyval(np.polyfit(t, c[:, k], deg), t) for k in range(3)], -1)
    yaw = np.unwrap(np.arctan2(fwd[:, 0], fwd[:, 2]))
    yaws = np.polyval(np.polyfit(t, yaw, min(2, n - 1)), t)
    return cs, yaws


def _umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising |s R src + t - dst|^2 (Umeyama 1991)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(xd.T @ xs / len(src))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt)) or 1.0])
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / max((xs ** 2).sum(1).mean(), 1e-300))
    return s, R, mu_d - s * R @ mu_s


def _angles_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    cos = (np.einsum("nij,nij->n", Ra, Rb) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def pose_errors(world_to_camera: np.ndarray, truth_world_to_camera: np.ndarray) -> dict:
    """Accuracy of estimated cameras against the truth, up to a similarity transform.

    Two similarity alignments (estimate -> truth) are used, each reported:

    * ``centers``: Umeyama on the camera centres; ``rms_centers`` is the RMS centre error after it
      and ``rot_max_centers`` the largest rotation error under the same alignment. For an almost
      straight path the rotation about the path is weakly determined by centres alone, so
    * ``rotations``: the rotation is the chordal mean of the orientation offsets, then scale and
      translation fit the centres; ``rot_max`` / ``rot_mean`` and ``rms`` are measured after it.

    RMS errors are fractions of the true path length (sum of the centre steps).
    """
    we = np.asarray(world_to_camera, dtype=np.float64)
    wt = np.asarray(truth_world_to_camera, dtype=np.float64)
    Re, Rt = we[:, :3, :3], wt[:, :3, :3]
    ce = -np.einsum("nji,nj->ni", Re, we[:, :3, 3])
    ct = -np.einsum("nji,nj->ni", Rt, wt[:, :3, 3])
    length = float(np.linalg.norm(np.diff(ct, axis=0), axis=1).sum())
    s, R, t = _umeyama(ce, ct)
    rms_c = float(np.sqrt(((ce @ (s * R).T + t - ct) ** 2).sum(1).mean())) / length
    rot_c = _angles_deg(Re @ R.T, Rt)
    # camera-to-world rotations: Rt^T = G Re^T for the world rotation G
    U, _, Vt = np.linalg.svd(np.einsum("nji,njk->ik", Rt, Re))  # sum of Rt^T Re
    G = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt)) or 1.0]) @ Vt
    rot = _angles_deg(Re @ G.T, Rt)
    x = ce @ G.T
    xm, cm = x.mean(0), ct.mean(0)
    s2 = float(((x - xm) * (ct - cm)).sum() / max(((x - xm) ** 2).sum(), 1e-300))
    rms = float(np.sqrt((((x - xm) * s2 + cm - ct) ** 2).sum(1).mean())) / length
    return {"rms": rms, "rot_max": float(rot.max()), "rot_mean": float(rot.mean()),
            "rms_centers": rms_c, "rot_max_centers": float(rot_c.max()), "path_length": length}


def _world(size, n_frames: int, dynamic_fraction: float, seed: int, camera_motion: str):
    """(scene, world_to_camera (N, 4, 4), K (3, 3), times (N,), walker centres (N, 3), walker yaws
    (N,)) of the clip these arguments make: the same random draws in the same order every time."""
    width, height = int(size[0]), int(size[1])
    if n_frames < 2:
        raise ValueError(f"n_frames={n_frames}: need at least 2")
    if not 0.0 <= dynamic_fraction < 0.8:
        raise ValueError(f"dynamic_fraction={dynamic_fraction}: use a fraction in [0, 0.8)")
    rng = np.random.default_rng(seed)
    scene = _Scene(rng, with_objects=dynamic_fraction > 0)
    w2c = _camera_path(n_frames, rng, camera_motion)
    fx = 0.5 * width / math.tan(math.radians(FOV_X_DEG) / 2)
    K = np.array([[fx, 0.0, width / 2], [0.0, fx, height / 2], [0.0, 0.0, 1.0]])
    times = np.linspace(0.0, 1.0, n_frames)
    walk_c, walk_yaw = _walker(w2c)
    if dynamic_fraction > 0:
        # calibrate the objects' size so they cover dynamic_fraction of the frame on average
        probe = np.linspace(0, n_frames - 1, min(n_frames, 9)).round().astype(int)
        small = (80, 60)
        Ks = K.copy()
        Ks[:2] *= small[0] / width
        for _ in range(4):
            cov = np.mean([scene.render(w2c[i], Ks, *small, times[i], (walk_c[i], walk_yaw[i]), mask_only=True)[1].mean()
                           for i in probe])
            scene.scale *= float(np.clip(math.sqrt(dynamic_fraction / max(cov, 1e-4)), 0.5, 2.0))
    return scene, w2c, K, times, walk_c, walk_yaw


def handheld_truth_renderer(
    *,
    size: tuple[int, int] = (320, 240),
    n_frames: int = 36,
    dynamic_fraction: float = 0.1,
    seed: int = 0,
    camera_motion: str = "handheld",
    supersample: int = 2,
):
    """The ground truth of the clip :func:`make_handheld_clip` makes with these arguments, seen
    from any camera at any time: ``(render, world_to_camera)`` with ``render(world_to_camera
    (4, 4), K (3, 3), width, height, t) -> (H, W, 3) float32 image in [0, 1]`` (OpenCV axes, the
    clip's world frame, anti-aliased like the clip) and the clip's own (N, 4, 4) cameras. Between
    frames the moving objects' guide (the smoothed walk they keep ahead of) is interpolated
    linearly in time. For novel-view benchmarks (``bench/paths.py``)."""
    scene, w2c, K, times, walk_c, walk_yaw = _world(size, n_frames, dynamic_fraction, seed, camera_motion)
    ss = int(supersample)

    def render(world_to_camera, K_view, width: int, height: int, t: float) -> np.ndarray:
        t = float(np.clip(t, 0.0, 1.0))
        wc = np.stack([np.interp(t, times, walk_c[:, k]) for k in range(3)])
        wy = float(np.interp(t, times, walk_yaw))
        Kss = np.asarray(K_view, dtype=np.float64).copy()
        Kss[:2] *= ss
        rgb, _ = scene.render(np.asarray(world_to_camera, dtype=np.float64), Kss, width * ss, height * ss, t, (wc, wy))
        return rgb.reshape(height, ss, width, ss, 3).mean(axis=(1, 3)).clip(0, 1).astype(np.float32)

    return render, w2c


def render_handheld(
    *,
    size: tuple[int, int] = (320, 240),
    n_frames: int = 36,
    dynamic_fraction: float = 0.1,
    seed: int = 0,
    camera_motion: str = "handheld",
    fps: float = 30.0,
    supersample: int = 2,
) -> tuple[np.ndarray, HandheldTruth]:
    """Render the clip: ((N, H, W, 3) uint8 frames, ground truth). Arguments as :func:`make_handheld_clip`."""
    scene, w2c, K, times, walk_c, walk_yaw = _world(size, n_frames, dynamic_fraction, seed, camera_motion)
    width, height = int(size[0]), int(size[1])
    Kss = K.copy()
    Kss[:2] *= supersample
    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    coverage = np.empty(n_frames)
    masks = np.zeros((n_frames, height, width), dtype=bool)
    for i in range(n_frames):
        rgb, dyn = scene.render(w2c[i], Kss, width * supersample, height * supersample, times[i], (walk_c[i], walk_yaw[i]))
        rgb = rgb.reshape(height, supersample, width, supersample, 3).mean(axis=(1, 3))
        frames[i] = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
        masks[i] = dyn.reshape(height, supersample, width, supersample).mean(axis=(1, 3)) > 0.5
        coverage[i] = dyn.mean()
    centers = -np.einsum("nji,nj->ni", w2c[:, :3, :3], w2c[:, :3, 3])
    path_length = float(np.linalg.norm(np.diff(centers, axis=0), axis=-1).sum())
    truth = HandheldTruth(world_to_camera=w2c, K=K, times=times, width=width, height=height, fps=float(fps),
                          dynamic_coverage=coverage, path_length=path_length, dynamic_masks=masks)
    return frames, truth


def make_handheld_clip(
    path: Union[str, Path],
    *,
    size: tuple[int, int] = (320, 240),
    n_frames: int = 36,
    dynamic_fraction: float = 0.1,
    seed: int = 0,
    camera_motion: str = "handheld",
    fps: float = 30.0,
    supersample: int = 2,
    crf: int = 12,
) -> HandheldTruth:
    """Render a handheld-style clip of a textured room with moving objects and encode it as mp4.

    Args:
        path: the video file to write (atomically).
        size: (width, height) in pixels.
        n_frames: number of frames (frame i has timestamp i / fps and scene time i / (n - 1)).
        dynamic_fraction: mean fraction of each frame covered by moving objects (0: none).
        seed: picks the textures, the jitter and the objects' spin.
        camera_motion: ``"handheld"`` (a jittery walk), ``"static"`` (a still camera) or ``"pan"``
            (turning on the spot); the last two have no parallax.
        fps: frame rate of the video.
        supersample: anti-aliasing factor (rendered at this multiple of ``size``, area-averaged).
        crf: H.264 quality (lower is better; 12 is visually lossless).
    Returns:
        the ground truth, with ``path`` set.
    """
    import torch

    from scene4d.media import write_video

    # one thread: the frames' float sums otherwise follow the caller's thread count (the encoded
    # bytes can still differ between environments: tests that need one exact clip pin a file)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        frames, truth = render_handheld(size=size, n_frames=n_frames, dynamic_fraction=dynamic_fraction, seed=seed,
                                        camera_motion=camera_motion, fps=fps, supersample=supersample)
    finally:
        torch.set_num_threads(n)
    truth.path = write_video(path, frames, fps=fps, crf=crf)
    return truth


if __name__ == "__main__":  # pragma: no cover
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "handheld.mp4")
    tr = make_handheld_clip(out)
    print(f"wrote {out}: {len(tr.times)} frames {tr.width}x{tr.height}, path length {tr.path_length:.2f}, "
          f"moving objects cover {tr.dynamic_coverage.mean():.0%} of the frame")
