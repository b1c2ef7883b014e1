"""Camera paths built from a capture's own input cameras (forward-facing clips and 360 captures).

A phone clip sees its scene from one side over a small range of angles. A path placed around the
scene's bounding volume (an orbit) looks at it from where no input camera was (behind it, under
it) and shows holes and blur. As LLFF, nerfstudio and the forward-facing NeRF tools do, the paths
here are derived from the input cameras and stay in the region they saw:

* :func:`capture_rig` summarises the inputs (:class:`CaptureRig`): the average pose (mean centre,
  mean viewing direction, mean up; LLFF's ``poses_avg``), the world up, whether the capture is
  forward-facing or 360 degrees (and why), the focus point, the spread of the input centres, and
  the angles and distances the inputs see the focus point from;
* :func:`input_spiral`: LLFF's spiral around the mean input camera, within the input spread;
* :func:`tracking_spiral`: a spiral around the stabilised input trajectory at each frame's time, so
  every moment is shown from near where the camera saw it (a monocular clip's sharpest views);
* :func:`input_arc`: a bullet-time sweep around the focus point over the captured range of angles
  and a bit beyond;
* :func:`stabilized`: the input trajectory itself, positions and rotations low-passed, same timing;
* :func:`seen_region`: which frames of any path leave the region the input cameras saw.

Coordinates about the focus point ``f`` (used by the arc and the region test): a camera centre
``c`` has distance ``|c - f|``, elevation above the plane perpendicular to ``up`` and azimuth about
``up`` measured from the direction of the mean input camera (360 captures: from the world axis
least aligned with up), in degrees.

Pure geometry in float64 (cast to the output dtype at the end); OpenCV world-to-camera like the
rest of :mod:`cameras`. Nothing here renders: the depth that places the focus of a forward-facing
capture is measured by the caller (see :func:`llff_focus_depth`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .camera import Cameras, look_at
from .paths import TimeSpec, _check_n_frames, _up_basis, interpolate_keyframes, schedule_times

__all__ = [
    "CaptureRig",
    "SeenRegion",
    "capture_rig",
    "llff_focus_depth",
    "input_spiral",
    "tracking_spiral",
    "input_arc",
    "stabilized",
    "seen_region",
    "FORWARD_FACING",
    "FULL_360",
]

_F64 = torch.float64

FORWARD_FACING = "forward-facing"
FULL_360 = "360"

SNAP_UP_DEG = 15.0
"""The mean camera up is replaced by the nearest world axis when within this angle: captures made
upright in their world frame (D-NeRF/Blender, scene4d's own camera step) keep their exact up."""
SPAN_360_DEG = 180.0
"""A capture whose viewing directions cover at least this much azimuth is a 360 capture."""
ARC_BEYOND = 0.15
"""The arc sweeps the captured azimuth range widened by this fraction (half on each side)."""


# =========================================================================== small geometry
def _unit(v: Tensor) -> Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-300)


def _deg(x) -> Tensor:
    return torch.rad2deg(torch.as_tensor(x, dtype=_F64))


def _wrap180(a: Tensor) -> Tensor:
    """Angles in degrees wrapped to (-180, 180]."""
    return -((-a + 180.0) % 360.0 - 180.0)


def _skew(w: Tensor) -> Tensor:
    O = torch.zeros(w.shape[:-1] + (3, 3), dtype=w.dtype)
    O[..., 0, 1], O[..., 0, 2] = -w[..., 2], w[..., 1]
    O[..., 1, 0], O[..., 1, 2] = w[..., 2], -w[..., 0]
    O[..., 2, 0], O[..., 2, 1] = -w[..., 1], w[..., 0]
    return O


def _so3_exp(w: Tensor) -> Tensor:
    """(..., 3) rotation vectors -> (..., 3, 3) rotations (Rodrigues)."""
    th = w.norm(dim=-1, keepdim=True)[..., None]  # (..., 1, 1)
    small = th < 1e-8
    ths = torch.where(small, torch.ones_like(th), th)
    A = torch.where(small, 1 - th**2 / 6, torch.sin(ths) / ths)
    B = torch.where(small, 0.5 - th**2 / 24, (1 - torch.cos(ths)) / ths**2)
    O = _skew(w)
    return torch.eye(3, dtype=w.dtype) + A * O + B * (O @ O)


def _so3_log(R: Tensor) -> Tensor:
    """(..., 3, 3) rotations -> (..., 3) rotation vectors, angle in [0, pi). Accurate away from pi
    (the smoothing windows it serves hold rotations a few degrees apart)."""
    s = 0.5 * torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    c = 0.5 * (R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1)
    sn = s.norm(dim=-1)
    th = torch.atan2(sn, c)
    scale = torch.where(sn < 1e-12, torch.ones_like(sn), th / sn.clamp_min(1e-300))
    return s * scale[..., None]


def _azimuths(v: Tensor, e1: Tensor, e2: Tensor) -> Tensor:
    """(N,) azimuth in degrees of vectors (N, 3) in the plane spanned by e1, e2."""
    return _deg(torch.atan2(v @ e2, v @ e1))


def _covered_interval(az: Tensor):
    """(start, length) in degrees of the smallest arc holding every azimuth: the complement of the
    largest circular gap between them."""
    if az.numel() == 0:
        return 0.0, 0.0
    a = torch.sort(az % 360.0).values
    if a.numel() == 1:
        return float(a[0]), 0.0
    gaps = torch.cat([a[1:] - a[:-1], (a[:1] + 360.0) - a[-1:]])
    k = int(gaps.argmax())
    start = float(a[(k + 1) % a.numel()])
    return _wrap_scalar(start), float(360.0 - gaps[k])


def _wrap_scalar(a: float) -> float:
    return float(_wrap180(torch.tensor(a, dtype=_F64)))


def _converging_point(centers: Tensor, forwards: Tensor):
    """Least-squares point closest to every optical axis, or None when the axes are (nearly)
    parallel: it minimises sum_i |(I - d_i d_i^T)(x - o_i)|^2."""
    P = torch.eye(3, dtype=_F64) - forwards[:, :, None] * forwards[:, None, :]
    A = P.sum(0)
    # smallest eigenvalue / C ~ the mean squared sine of the angles between axes: 1e-3 is ~2 degrees
    if float(torch.linalg.eigvalsh(A)[0]) / centers.shape[0] <= 1e-3:
        return None
    return torch.linalg.solve(A, (P @ centers[:, :, None]).sum(0)[:, 0])


def _snap_up(up: Tensor, deg: float = SNAP_UP_DEG) -> Tensor:
    k = int(up.abs().argmax())
    axis = torch.zeros(3, dtype=_F64)
    axis[k] = 1.0 if float(up[k]) > 0 else -1.0
    if float((up @ axis).clamp(-1, 1).acos()) <= math.radians(deg):
        return axis
    return up


# =========================================================================== the rig
@dataclass(frozen=True)
class CaptureRig:
    """What a capture's input cameras say about where a path may go (float64, CPU).

    Attributes:
        inputs: the C input cameras in time order (their ``times`` when they carry them).
        kind: :data:`FORWARD_FACING` or :data:`FULL_360`.
        reason: one line saying why the capture was classified so.
        view_span_deg: azimuth (about ``up``) covered by the input viewing directions.
        up: (3,) world up: the mean camera up (OpenCV -y), snapped to a world axis within
            :data:`SNAP_UP_DEG`; orbits, arcs and dollies keep it vertical.
        center: (3,) mean input camera centre.
        average_w2c: (4, 4) the average pose: at ``center``, looking along the mean viewing
            direction, rolled by the (unsnapped) mean camera up (LLFF's ``poses_avg``).
        focus: (3,) the point paths look at: ``focus_depth`` ahead of the average pose for a
            forward-facing capture, the point closest to every optical axis for a 360 one.
        focus_depth: distance from the average pose to ``focus`` along its viewing direction
            (360 captures: median distance of the inputs to ``focus``).
        offsets: (C, 3) input centres in the average pose's frame (x right, y down, z forward).
        K: (3, 3) mean input intrinsics at ``width`` x ``height``.
        az, el, dist: (C,) the input centres about ``focus``: azimuth and elevation (degrees),
            distance.
        look_off: (C,) angle in degrees between each input's optical axis and its direction to
            ``focus``.
        az_start, az_length: the arc of azimuths the inputs cover (degrees; see the module doc).
        e1, e2: (3,) the horizontal basis azimuths are measured in (e1 x e2 = up).
    """

    inputs: Cameras
    kind: str
    reason: str
    view_span_deg: float
    up: Tensor
    center: Tensor
    average_w2c: Tensor
    focus: Tensor
    focus_depth: float
    offsets: Tensor
    K: Tensor
    width: int
    height: int
    az: Tensor
    el: Tensor
    dist: Tensor
    look_off: Tensor
    az_start: float
    az_length: float
    e1: Tensor
    e2: Tensor

    @property
    def forward(self) -> Tensor:
        """(3,) viewing direction of the average pose."""
        return self.average_w2c[2, :3]

    @property
    def average_up(self) -> Tensor:
        """(3,) up of the average pose (its -y axis)."""
        return -self.average_w2c[1, :3]

    def spread(self, extrapolate: float = 1.0) -> tuple[Tensor, Tensor]:
        """(mid (3,), half (3,)): the 10th-90th percentile box of the input centres along the
        average pose's x, y, z as its middle and half-widths, half-widths scaled by ``extrapolate``."""
        if self.offsets.shape[0] == 1:
            return self.offsets[0].clone(), torch.zeros(3, dtype=_F64)
        lo = torch.quantile(self.offsets, 0.1, dim=0)
        hi = torch.quantile(self.offsets, 0.9, dim=0)
        return (lo + hi) / 2, (hi - lo) / 2 * float(extrapolate)

    def mean_camera(self, dtype: torch.dtype = torch.float32) -> Cameras:
        """One camera: where a path editor starts. Forward-facing: the average pose; 360: at the
        middle of the covered azimuths, the median elevation and distance, looking at ``focus``."""
        if self.kind == FORWARD_FACING:
            w2c = self.average_w2c
        else:
            eye = _eye_about(self, torch.tensor([self.az_start + self.az_length / 2], dtype=_F64),
                             float(self.el.median()), float(self.dist.median()))
            w2c = look_at(eye, self.focus.expand_as(eye), self.up.expand_as(eye))[0]
        t = None if self.inputs.times is None else torch.tensor([0.5], dtype=dtype)
        return Cameras(self.K[None].to(dtype), w2c[None].to(dtype), self.width, self.height, times=t)

    def about_focus(self, cams: Cameras):
        """(az, el, dist, look_off) of ``cams`` (N each) about :attr:`focus`, as for the inputs."""
        w2c = cams.world_to_camera.detach().to(device="cpu", dtype=_F64)
        R = w2c[:, :3, :3]
        c = -(R.transpose(1, 2) @ w2c[:, :3, 3:])[..., 0]
        return _polar(self, c, R[:, 2, :])

    def describe(self) -> str:
        """One line: the kind, the input count and the numbers paths are built from."""
        fd = f"focus {self.focus_depth:.3g} ahead" if self.kind == FORWARD_FACING else "focus where the optical axes meet"
        return (f"{len(self.inputs)} input cameras, {self.kind} ({self.reason}); {fd}; they see it over "
                f"{self.az_length:.0f} deg of azimuth, elevation {float(self.el.min()):.0f}..{float(self.el.max()):.0f} deg, "
                f"distance {float(self.dist.min()):.3g}..{float(self.dist.max()):.3g}")


def _polar(rig: CaptureRig, centers: Tensor, forwards: Tensor):
    v = centers - rig.focus
    dist = v.norm(dim=-1)
    vu = _unit(v)
    el = _deg(torch.asin((vu @ rig.up).clamp(-1, 1)))
    az = _wrap180(_azimuths(v, rig.e1, rig.e2))
    look = _deg(torch.acos((_unit(forwards) * -vu).sum(-1).clamp(-1, 1)))
    return az, el, dist, look


def _eye_about(rig: CaptureRig, az_deg: Tensor, el_deg: float, dist: float) -> Tensor:
    az = torch.deg2rad(az_deg)
    el = math.radians(el_deg)
    horiz = torch.cos(az)[:, None] * rig.e1 + torch.sin(az)[:, None] * rig.e2
    return rig.focus + dist * (math.cos(el) * horiz + math.sin(el) * rig.up)


def llff_focus_depth(near: float, far: float, dt: float = 0.75) -> float:
    """The focus depth of a forward-facing spiral from the scene's depth range, by LLFF's rule
    (``render_path_spiral`` in its ``load_llff_data``): the depth whose inverse is
    ``(1 - dt) / near + dt / far``, a weighted mean of inverse depths (``dt = 0.75``), so the
    focus lies inside the scene, towards its far side.

    LLFF first pads its bounds to ``0.9 near`` and ``5 far`` (they are the ray bounds of its NDC
    space); on a scene of little depth that puts the focus at 2.3 times the scene's distance,
    behind the subject, so the padding is left out here.

    ``near``, ``far``: the scene's near and far depths along the mean view (0 < near <= far)."""
    near, far, dt = float(near), float(far), float(dt)
    if not (math.isfinite(near) and math.isfinite(far)) or near <= 0 or far < near:
        raise ValueError(f"llff_focus_depth: need 0 < near <= far, got near={near!r}, far={far!r}")
    if not 0.0 <= dt <= 1.0:
        raise ValueError(f"llff_focus_depth: dt must be in [0, 1], got {dt!r}")
    return 1.0 / ((1.0 - dt) / near + dt / far)


def _sorted_inputs(cameras: Cameras) -> Cameras:
    cams = cameras.to(device="cpu", dtype=_F64)
    if cams.times is None or len(cams) < 2:
        return cams
    order = torch.argsort(cams.times, stable=True)
    return cams[order]


def capture_rig(
    cameras: Cameras,
    *,
    focus_depth: Optional[float] = None,
    up: Optional[Tensor] = None,
) -> CaptureRig:
    """Summarise a capture's input cameras for building paths from them.

    Classification: the input viewing directions are projected on the plane perpendicular to
    ``up``; if their azimuths cover at least :data:`SPAN_360_DEG` the capture looks at its scene
    from all round (a 360 capture: D-NeRF, object scans), else it is forward-facing (a phone
    clip). Cameras looking within 10 degrees of straight up or down do not count; when most do
    (a top-down scan), the azimuths of the camera centres about the point the optical axes meet
    decide instead.

    Args:
        cameras: C >= 1 input cameras (train and test views together), any order; sorted by time.
        focus_depth: depth of the focus point ahead of the average pose for a forward-facing
            capture (see :func:`llff_focus_depth`); None uses where the optical axes meet, if they
            do in front of the cameras (ValueError otherwise). Ignored for 360 captures.
        up: (3,) world up; default the mean camera up snapped to a world axis within 15 degrees.

    Returns:
        the :class:`CaptureRig`.
    """
    fn = "capture_rig"
    if not isinstance(cameras, Cameras):
        raise ValueError(f"{fn}: expected Cameras, got {type(cameras).__name__}")
    cams = _sorted_inputs(cameras)
    C = len(cams)
    w2c = cams.world_to_camera
    R = w2c[:, :3, :3]
    centers = -(R.transpose(1, 2) @ w2c[:, :3, 3:])[..., 0]
    fwd = _unit(R[:, 2, :])
    cam_up = -R[:, 1, :]
    mean_up = cam_up.mean(0)
    if float(mean_up.norm()) < 1e-6:
        raise ValueError(f"{fn}: the input cameras' up vectors cancel out (cameras upside down against each "
                         "other); give the world up explicitly")
    mean_up = _unit(mean_up)
    if up is None:
        u = _snap_up(mean_up)
    else:
        u = torch.as_tensor(up, dtype=_F64).reshape(3)
        if not torch.isfinite(u).all() or float(u.norm()) < 1e-12:
            raise ValueError(f"{fn}: up must be a finite non-zero 3-vector, got {u.tolist()}")
        u = _unit(u)

    # ---- classification by the azimuths the inputs look along
    e1, e2 = _up_basis(u)
    horiz = fwd - (fwd @ u)[:, None] * u
    usable = horiz.norm(dim=-1) >= math.sin(math.radians(10.0))
    meet = _converging_point(centers, fwd) if C >= 2 else None
    if int(usable.sum()) >= max(1, (C + 1) // 2):
        _, span = _covered_interval(_azimuths(horiz[usable], e1, e2))
        what = "viewing directions"
    elif meet is not None:
        _, span = _covered_interval(_azimuths(centers - meet, e1, e2))
        what = "camera positions about the point they look at"
    else:
        span, what = 0.0, "viewing directions (mostly straight up or down)"
    kind = FULL_360 if span >= SPAN_360_DEG else FORWARD_FACING
    cmp = ">=" if kind == FULL_360 else "<"
    reason = f"the {what} cover {span:.0f} deg of azimuth, {cmp} {SPAN_360_DEG:.0f}"

    # ---- average pose (LLFF poses_avg: mean centre, mean forward, mean up)
    center = centers.mean(0)
    mf = fwd.sum(0)
    forward = _unit(mf) if float(mf.norm()) > 1e-6 * C else fwd[0]
    roll_up = mean_up if float(torch.linalg.cross(forward, mean_up).norm()) > 1e-6 else u
    if float(torch.linalg.cross(forward, roll_up).norm()) < 1e-6:
        roll_up = _up_basis(forward)[0]  # looking straight along up: any roll will do
    avg = look_at(center, center + forward, roll_up)

    # ---- focus point
    if kind == FULL_360:
        if meet is None:
            meet = center + forward * float((centers - center).norm(dim=-1).median().clamp_min(1e-6))
        focus = meet
    else:
        if focus_depth is None:
            if meet is None or float((meet - center) @ forward) <= 0:
                raise ValueError(f"{fn}: the optical axes of this forward-facing capture do not meet in front of "
                                 "it; pass focus_depth (e.g. llff_focus_depth(near, far) from the scene's depth)")
            focus_depth = float((meet - center) @ forward)
        fd = float(focus_depth)
        if not math.isfinite(fd) or fd <= 0:
            raise ValueError(f"{fn}: focus_depth must be a positive number, got {focus_depth!r}")
        focus = center + fd * forward

    # ---- coordinates about the focus point
    if kind == FORWARD_FACING:
        h = (center - focus) - ((center - focus) @ u) * u
        if float(h.norm()) > 1e-9:
            e1 = _unit(h)
            e2 = torch.linalg.cross(u, e1)
    K = cams.K.mean(0)
    offsets = (centers - center) @ avg[:3, :3].T
    rig = CaptureRig(
        inputs=cams, kind=kind, reason=reason, view_span_deg=span, up=u, center=center, average_w2c=avg,
        focus=focus, focus_depth=0.0, offsets=offsets, K=K, width=cams.width, height=cams.height,
        az=torch.zeros(C, dtype=_F64), el=torch.zeros(C, dtype=_F64), dist=torch.zeros(C, dtype=_F64),
        look_off=torch.zeros(C, dtype=_F64), az_start=0.0, az_length=0.0, e1=e1, e2=e2,
    )
    az, el, dist, look = _polar(rig, centers, fwd)
    az_start, az_length = _covered_interval(az)
    depth = float((focus - center) @ forward) if kind == FORWARD_FACING else float(dist.median())
    return _replace(rig, az=az, el=el, dist=dist, look_off=look, az_start=az_start, az_length=az_length,
                    focus_depth=depth)


def _replace(rig: CaptureRig, **kw) -> CaptureRig:
    from dataclasses import replace

    return replace(rig, **kw)


# =========================================================================== paths
def _intrinsics(rig: CaptureRig, n: int, K: Optional[Tensor], width: Optional[int], height: Optional[int]):
    if K is None:
        K = rig.K
        w, h = rig.width, rig.height
        if width is not None or height is not None:
            w, h = int(width or rig.width), int(height or rig.height)
            K = K.clone()
            K[0] *= w / rig.width
            K[1] *= h / rig.height
    else:
        K = torch.as_tensor(K, dtype=_F64)
        if width is None or height is None:
            raise ValueError("a K given to a path needs its width and height")
        w, h = int(width), int(height)
    K = K.to(_F64)
    if K.shape == (3, 3):
        K = K.expand(n, 3, 3)
    return K.clone(), w, h


def _extrapolate(x: float, fn: str) -> float:
    v = float(x)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{fn}: extrapolate must be a positive number, got {x!r}")
    return v


def _finish(w2c: Tensor, K: Tensor, w: int, h: int, times: Tensor, dtype: torch.dtype) -> Cameras:
    return Cameras(K=K.to(dtype), world_to_camera=w2c.to(dtype), width=w, height=h, times=times.to(dtype))


def input_spiral(
    rig: CaptureRig,
    n_frames: int,
    *,
    rotations: float = 2.0,
    z_rate: float = 0.5,
    extrapolate: float = 1.0,
    time: TimeSpec = "play",
    K: Optional[Tensor] = None,
    width: Optional[int] = None,
    height: Optional[int] = None,
    dtype: torch.dtype = torch.float32,
) -> Cameras:
    """LLFF's forward-facing spiral (``render_path_spiral``) around the mean input camera.

    With ``theta = 2 pi rotations i / N`` (the end point left out, so a whole number of rotations
    loops), camera i sits at ``mid + (cos theta hx, sin theta hy, sin(z_rate theta) hz)`` in the
    average pose's frame (x right, y down, z forward), where ``mid`` and ``h`` are the middle and
    half-widths of the 10th-90th percentile box of the input centres (:meth:`CaptureRig.spread`;
    LLFF takes the 90th percentile of ``|offset|`` about the mean, which for a lopsided trajectory
    puts half the spiral where no camera was) times ``extrapolate``. Every camera looks at the
    focus point, rolled by the average pose's up.

    Args:
        rig: from :func:`capture_rig`.
        K, width, height: intrinsics; default the inputs' mean K at their size (``width``/``height``
            alone rescale it).
        time: time schedule (see :func:`cameras.schedule_times`).

    Returns:
        Cameras with N frames and ``times`` (N,).
    """
    fn = "input_spiral"
    n = _check_n_frames(n_frames, fn)
    X = _extrapolate(extrapolate, fn)
    rot = float(rotations)
    if not math.isfinite(rot) or rot == 0:
        raise ValueError(f"{fn}: rotations must be a non-zero number, got {rotations!r}")
    mid, half = rig.spread(X)
    theta = 2 * math.pi * rot * torch.arange(n, dtype=_F64) / n
    local = mid + torch.stack([torch.cos(theta) * half[0], torch.sin(theta) * half[1],
                               torch.sin(float(z_rate) * theta) * half[2]], -1)
    eyes = rig.center + local @ rig.average_w2c[:3, :3]  # rows of R are the pose's axes in the world
    w2c = look_at(eyes, rig.focus.expand_as(eyes), rig.average_up.expand_as(eyes))
    Kn, w, h = _intrinsics(rig, n, K, width, height)
    return _finish(w2c, Kn, w, h, schedule_times(time, n, dtype=_F64), dtype)


TRACKING_RADIUS = 0.5
"""The tracking spiral's half-widths as a fraction of the input spread's."""


def _trajectory_at(smooth: Cameras, times: Tensor) -> tuple[Tensor, Tensor]:
    """(centres (N, 3), camera-to-world rotations (N, 3, 3)) of the time-ordered trajectory
    ``smooth`` at ``times``: linear between the two inputs around each time (rotations along the
    geodesic), held before the first and after the last."""
    w2c = smooth.world_to_camera.to(_F64)
    Rc2w = w2c[:, :3, :3].transpose(1, 2)
    c = -(Rc2w @ w2c[:, :3, 3:])[..., 0]
    if len(smooth) == 1:
        return c.expand(len(times), 3).clone(), Rc2w.expand(len(times), 3, 3).clone()
    ts = smooth.times.reshape(-1).to(_F64)
    hi = torch.searchsorted(ts.contiguous(), times.contiguous()).clamp(1, len(ts) - 1)
    lo = hi - 1
    gap = (ts[hi] - ts[lo]).clamp_min(1e-12)
    a = ((times - ts[lo]) / gap).clamp(0.0, 1.0)
    centres = c[lo] * (1 - a[:, None]) + c[hi] * a[:, None]
    rel = _so3_log(Rc2w[lo].transpose(1, 2) @ Rc2w[hi])  # (N, 3)
    R = Rc2w[lo] @ _so3_exp(rel * a[:, None])
    return centres, R


def tracking_spiral(
    rig: CaptureRig,
    n_frames: int,
    *,
    radius: float = TRACKING_RADIUS,
    rotations: float = 2.0,
    z_rate: float = 0.5,
    extrapolate: float = 1.0,
    time: TimeSpec = "play",
    sigma: float = 0.05,
    K: Optional[Tensor] = None,
    width: Optional[int] = None,
    height: Optional[int] = None,
    dtype: torch.dtype = torch.float32,
) -> Cameras:
    """A spiral around the stabilised input trajectory (:func:`stabilized`) at each frame's time.

    A monocular clip shows each moment from one place, and a scene fitted to it is sharpest near
    where the camera was at that moment: :func:`input_spiral` circles the *mean* input camera, so
    it shows the start of a sideways clip from its far end (3-5 dB below the held-out frames on a
    clip with known geometry). Here frame i, at time ``t_i``, circles the stabilised camera of time
    ``t_i``: at ``p(t_i) + R(t_i) (cos theta hx, sin theta hy, sin(z_rate theta) hz)`` with
    ``theta = 2 pi rotations i / N`` and ``h`` the input spread's half-widths (:meth:`CaptureRig.spread`)
    times ``radius`` and ``extrapolate``, looking at the point the stabilised camera looks at
    ``focus_depth`` ahead, rolled by its up. With a frozen time it circles the camera of that moment.
    Where a frame would leave the region the inputs saw (:func:`seen_region`; near the ends of a
    clip) its circle is shrunk, down to the trajectory itself, unless ``extrapolate`` > 1.

    Args:
        rig: from :func:`capture_rig` (its inputs carry times; without, they play evenly).
        radius: the spiral's size as a fraction of the input spread (0.5 by default).
        sigma: the stabilisation kernel (see :func:`stabilized`).
        K, width, height, time, rotations, z_rate, extrapolate: as :func:`input_spiral`.
    """
    fn = "tracking_spiral"
    n = _check_n_frames(n_frames, fn)
    X = _extrapolate(extrapolate, fn)
    r = float(radius)
    if not math.isfinite(r) or r < 0:
        raise ValueError(f"{fn}: radius must be a number >= 0, got {radius!r}")
    rot = float(rotations)
    if not math.isfinite(rot) or rot == 0:
        raise ValueError(f"{fn}: rotations must be a non-zero number, got {rotations!r}")
    times = schedule_times(time, n, dtype=_F64)
    smooth = stabilized(rig, sigma=sigma, dtype=_F64)
    centres, R = _trajectory_at(smooth, times)
    _, half = rig.spread(X)
    half = half * r
    theta = 2 * math.pi * rot * torch.arange(n, dtype=_F64) / n
    local = torch.stack([torch.cos(theta) * half[0], torch.sin(theta) * half[1],
                         torch.sin(float(z_rate) * theta) * half[2]], -1)
    offsets = (R @ local[..., None])[..., 0]
    targets = centres + R[:, :, 2] * rig.focus_depth
    Kn, w, h = _intrinsics(rig, n, K, width, height)

    def cams_with(scale: Tensor) -> Cameras:
        eyes = centres + offsets * scale[:, None]
        return _finish(look_at(eyes, targets, -R[:, :, 1]), Kn, w, h, times, _F64)

    scale = torch.ones(n, dtype=_F64)
    cams = cams_with(scale)
    if X <= 1.0:
        # near the ends of the clip a full circle would leave the region the inputs saw: shrink it
        # there (the stabilised trajectory itself is inside); extrapolate > 1 asks to go beyond
        for f in (0.75, 0.5, 0.25, 0.0):
            out = ~seen_region(rig, cams).inside
            if not bool(out.any()):
                break
            scale = torch.where(out, torch.full_like(scale, f), scale)
            cams = cams_with(scale)
    return cams.to(dtype=dtype)


def arc_range(rig: CaptureRig, extrapolate: float = 1.0, beyond: float = ARC_BEYOND) -> tuple[float, float]:
    """(start, sweep) in degrees of :func:`input_arc`: the covered azimuths widened by ``beyond``
    (half on each side) and scaled by ``extrapolate`` about their middle, at most a full turn."""
    X = _extrapolate(extrapolate, "arc_range")
    sweep = min(360.0, rig.az_length * (1.0 + float(beyond)) * X)
    return rig.az_start + rig.az_length / 2 - sweep / 2, sweep


def input_arc(
    rig: CaptureRig,
    n_frames: int,
    *,
    extrapolate: float = 1.0,
    beyond: float = ARC_BEYOND,
    time: TimeSpec = "freeze:0.5",
    K: Optional[Tensor] = None,
    width: Optional[int] = None,
    height: Optional[int] = None,
    dtype: torch.dtype = torch.float32,
) -> Cameras:
    """Bullet time: a sweep about ``rig.up`` around the focus point across the azimuths the input
    cameras saw it from, a bit beyond (``beyond``: 15 % wider, half on each side), at their
    median elevation and distance, every camera looking at the focus point. ``extrapolate``
    scales the sweep; a sweep of 360 degrees or more is a full turn (end point left out).

    Args:
        time: default ``"freeze:0.5"``, the scene stopped at its middle while the camera moves.

    Returns:
        Cameras with N frames and ``times`` (N,).
    """
    fn = "input_arc"
    n = _check_n_frames(n_frames, fn)
    start, sweep = arc_range(rig, extrapolate, beyond)
    i = torch.arange(n, dtype=_F64)
    if sweep >= 360.0 - 1e-9:
        az = start + 360.0 * i / n
    else:
        az = start + sweep * (i / (n - 1) if n > 1 else torch.full_like(i, 0.5))
    eyes = _eye_about(rig, az, float(rig.el.median()), float(rig.dist.median()))
    w2c = look_at(eyes, rig.focus.expand_as(eyes), rig.up.expand_as(eyes))
    Kn, w, h = _intrinsics(rig, n, K, width, height)
    return _finish(w2c, Kn, w, h, schedule_times(time, n, dtype=_F64), dtype)


def stabilized(
    rig_or_cameras,
    *,
    sigma: float = 0.05,
    n_frames: Optional[int] = None,
    time: Optional[TimeSpec] = None,
    dtype: torch.dtype = torch.float32,
) -> Cameras:
    """The input trajectory, stabilised: camera centres and rotations low-passed, same timing.

    Each input frame i (in time order) gets a local linear fit of the trajectory around it with
    Gaussian weights ``exp(-(s_j - s_i)^2 / 2 sigma^2)``, ``s`` = frame index / (C - 1) (a fraction
    of the clip), evaluated at ``s_i``: centres directly, rotations as rotation vectors
    ``log(R_i^T R_j)`` relative to frame i. A linear fit, unlike a plain moving average, follows a
    steady walk or pan to the ends of the clip instead of pulling them inwards. Hand shake (a
    few cycles per clip and faster) is removed, the intended motion kept. Intrinsics and times
    stay the inputs'.

    Args:
        rig_or_cameras: a :class:`CaptureRig` or the input Cameras (sorted by time here).
        sigma: the kernel's width as a fraction of the clip (0.05: 4 frames of an 80-frame clip).
        n_frames: resample the stabilised trajectory to this many frames (keyframe spline, times
            interpolated); None keeps one camera per input frame.
        time: a schedule to replace the input times (None keeps them).

    Returns:
        Cameras (C, or ``n_frames``) with ``times``.
    """
    fn = "stabilized"
    cams = rig_or_cameras.inputs if isinstance(rig_or_cameras, CaptureRig) else _sorted_inputs(rig_or_cameras)
    sig = float(sigma)
    if not math.isfinite(sig) or sig <= 0:
        raise ValueError(f"{fn}: sigma must be a positive number, got {sigma!r}")
    C = len(cams)
    w2c = cams.world_to_camera
    R = w2c[:, :3, :3]  # world -> camera; camera-to-world rotation is R^T
    c = -(R.transpose(1, 2) @ w2c[:, :3, 3:])[..., 0]
    s = torch.arange(C, dtype=_F64) / max(C - 1, 1)
    out = torch.zeros(C, 4, 4, dtype=_F64)
    out[:, 3, 3] = 1.0
    Rc2w = R.transpose(1, 2)
    for i in range(C):
        d = s - s[i]
        w = torch.exp(-0.5 * (d / sig) ** 2)
        keep = w > 1e-6
        d, w = d[keep], w[keep]
        # weighted least squares of y(d) = a + b d; the intercept a is the value at frame i
        S0, S1, S2 = w.sum(), (w * d).sum(), (w * d * d).sum()
        den = S0 * S2 - S1 * S1

        def intercept(y: Tensor) -> Tensor:
            T0 = (w[:, None] * y).sum(0)
            if float(den) <= 1e-12 * float(S0 * S2 + 1e-300):  # one frame in the window
                return T0 / S0
            T1 = (w[:, None] * d[:, None] * y).sum(0)
            return (S2 * T0 - S1 * T1) / den

        ci = intercept(c[keep])
        rel = _so3_log(Rc2w[i].T @ Rc2w[keep])  # (k, 3) rotations relative to frame i, in its frame
        Ri = Rc2w[i] @ _so3_exp(intercept(rel))
        out[i, :3, :3] = Ri.T
        out[i, :3, 3] = -Ri.T @ ci
    times = cams.times if cams.times is not None else schedule_times("play", C, dtype=_F64)
    res = Cameras(K=cams.K.clone(), world_to_camera=out, width=cams.width, height=cams.height, times=times)
    if n_frames is not None and int(n_frames) != C and C >= 2:
        res = interpolate_keyframes(res, _check_n_frames(n_frames, fn))
    if time is not None:
        res = res.with_times(schedule_times(time, len(res), dtype=_F64))
    return res.to(dtype=dtype)


# =========================================================================== the region seen
@dataclass(frozen=True)
class SeenRegion:
    """Which frames of a path stay in the region the input cameras saw.

    A frame is inside when, about the rig's focus point, its azimuth lies in the covered arc
    (widened by 10 % of its length + 2 degrees on each side), its elevation in the inputs' range
    (widened by 10 % + 3 degrees), its distance between half the nearest input's and the farthest
    input's (+ 10 % of their range + 5 % of the median; nearer is a zoom on what was seen,
    farther shows where nothing was reconstructed), and its optical axis at most 10 degrees
    further from the focus point than any input's.

    Attributes:
        inside: (N,) bool.
        az_beyond, el_beyond: (N,) degrees outside the widened ranges (0 inside).
        dist_out: (N,) how far the distance is outside its allowed range, as a fraction of the
            nearest bound (0 inside).
        look_beyond: (N,) degrees.
        az_length: the azimuth range the inputs cover (degrees), for the message.
    """

    inside: Tensor
    az_beyond: Tensor
    el_beyond: Tensor
    dist_out: Tensor
    look_beyond: Tensor
    az_length: float

    @property
    def n_outside(self) -> int:
        return int((~self.inside).sum())

    def summary(self, what: str = "the path") -> str:
        """One line for a warning, or "" when every frame is inside."""
        n_out, n = self.n_outside, int(self.inside.numel())
        if n_out == 0:
            return ""
        parts = []
        if (self.az_beyond > 0).any():
            parts.append(f"up to {float(self.az_beyond.max()):.0f} deg of azimuth beyond the {self.az_length:.0f} deg "
                         "the inputs see the focus point from")
        if (self.el_beyond > 0).any():
            parts.append(f"up to {float(self.el_beyond.max()):.0f} deg above or below their elevations")
        if (self.dist_out > 0).any():
            parts.append(f"up to {float(self.dist_out.max()):.0%} farther or nearer than their distances allow")
        if (self.look_beyond > 0).any():
            parts.append(f"looking up to {float(self.look_beyond.max()):.0f} deg further off the focus point")
        return (f"{n_out} of {n} frames of {what} leave the region the input cameras saw ({'; '.join(parts)}): "
                "expect holes and blur there")


def seen_region(rig: CaptureRig, path: Cameras) -> SeenRegion:
    """Test every frame of ``path`` against the region the input cameras saw (see :class:`SeenRegion`)."""
    az, el, dist, look = rig.about_focus(path)
    m_az = 0.1 * rig.az_length + 2.0
    if rig.az_length + 2 * m_az >= 360.0:
        az_b = torch.zeros_like(az)
    else:
        rel = (az - (rig.az_start - m_az)) % 360.0
        span = rig.az_length + 2 * m_az
        az_b = torch.where(rel <= span, torch.zeros_like(rel), torch.minimum(rel - span, 360.0 - rel))
    el_lo, el_hi = float(rig.el.min()), float(rig.el.max())
    m_el = 0.1 * (el_hi - el_lo) + 3.0
    el_b = torch.clamp(el - (el_hi + m_el), min=0) + torch.clamp((el_lo - m_el) - el, min=0)
    d_lo, d_hi, d_med = float(rig.dist.min()), float(rig.dist.max()), float(rig.dist.median())
    d_max = d_hi + 0.1 * (d_hi - d_lo) + 0.05 * d_med
    d_min = 0.5 * d_lo
    dist_out = torch.clamp(dist / d_max - 1, min=0) + torch.clamp(1 - dist / max(d_min, 1e-300), min=0)
    look_b = torch.clamp(look - (float(rig.look_off.max()) + 10.0), min=0)
    inside = (az_b <= 0) & (el_b <= 0) & (dist_out <= 0) & (look_b <= 0)
    return SeenRegion(inside, az_b, el_b, dist_out, look_b, rig.az_length)
