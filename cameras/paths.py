"""Camera paths for rendering videos: orbits, spirals, dolly zooms and keyframe splines.

Every path returns one :class:`~cameras.camera.Cameras` of N frames (N = ``n_frames``) that share
one image size, and always carries ``times`` (N,) in [0, 1] from a time schedule, so a 4D scene
knows which moment each frame shows:

* ``"play"``      time runs 0 -> 1 over the frames;
* ``"freeze:T"``  every frame shows time T (a 3D "bullet time" orbit of one instant);
* ``"bullet:T"``  time plays 0 -> T over the first third, stays at T for the middle third while
  the camera keeps moving, then plays T -> 1 over the last third.

Geometry is computed in float64 (so long paths do not drift) and cast to the output dtype at the end.
World "up" is a parameter everywhere (default +z, Blender/COLMAP-style worlds); it only fixes the
camera roll, through :func:`~cameras.camera.look_at`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from .camera import CameraError, Cameras, look_at
from .conventions import quat_wxyz_to_rotmat, rotmat_to_quat_wxyz

__all__ = [
    "TimeSchedule",
    "parse_time_schedule",
    "schedule_times",
    "orbit",
    "spiral",
    "dolly_zoom",
    "interpolate_keyframes",
]

Vec3 = Union[Sequence[float], Tensor]
TimeSpec = Union[str, "TimeSchedule", float]

_F64 = torch.float64


# =========================================================================== time schedules
_SCHEDULE_HELP = "expected 'play', 'freeze:T' or 'bullet:T' with T a number in [0, 1]"


@dataclass(frozen=True)
class TimeSchedule:
    """Which scene time each frame of a path shows.

    Attributes:
        kind: ``"play"``, ``"freeze"`` or ``"bullet"``.
        t: the frozen time T for ``freeze`` and ``bullet`` (ignored by ``play``), in [0, 1].
    """

    kind: str
    t: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("play", "freeze", "bullet"):
            raise ValueError(f"TimeSchedule: unknown kind {self.kind!r}; {_SCHEDULE_HELP}")
        t = float(self.t)
        if not math.isfinite(t) or not 0.0 <= t <= 1.0:
            raise ValueError(f"TimeSchedule: T = {self.t!r} is outside [0, 1]; {_SCHEDULE_HELP}")
        object.__setattr__(self, "t", t)

    def __str__(self) -> str:
        return "play" if self.kind == "play" else f"{self.kind}:{self.t:g}"

    def times(self, n_frames: int, *, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
        """(N,) times of the N frames."""
        n = _check_n_frames(n_frames, "TimeSchedule.times")
        if self.kind == "freeze":
            return torch.full((n,), self.t, dtype=dtype, device=device)
        if n == 1:
            # A single frame has no "over the frames"; show the start for play, T for bullet.
            return torch.full((1,), 0.0 if self.kind == "play" else self.t, dtype=dtype, device=device)
        u = torch.arange(n, dtype=_F64) / (n - 1)  # path progress in [0, 1]
        if self.kind == "play":
            out = u
        else:
            # Piecewise linear in progress: continuous, starts at 0, ends at 1, flat at T in the
            # middle third (frames whose progress lies in [1/3, 2/3]).
            T = self.t
            out = torch.where(
                u <= 1 / 3,
                T * (3 * u),  # 3u first: exactly T at u = 1/3
                torch.where(u <= 2 / 3, torch.full_like(u, T), T + (1 - T) * (3 * u - 2)),
            )
            out = out.clamp(0.0, 1.0)
        return out.to(dtype=dtype, device=device)


def parse_time_schedule(spec: str) -> TimeSchedule:
    """Parse ``"play"``, ``"freeze:T"`` or ``"bullet:T"`` (T in [0, 1]); ValueError otherwise."""
    if isinstance(spec, TimeSchedule):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"time schedule must be a string, got {type(spec).__name__}; {_SCHEDULE_HELP}")
    text = spec.strip().lower()
    kind, sep, value = text.partition(":")
    kind, value = kind.strip(), value.strip()
    if kind == "play":
        if sep:
            raise ValueError(f"bad time schedule {spec!r}: 'play' takes no value; {_SCHEDULE_HELP}")
        return TimeSchedule("play")
    if kind in ("freeze", "bullet"):
        if not sep or not value:
            raise ValueError(f"bad time schedule {spec!r}: '{kind}' needs a time, e.g. '{kind}:0.5'")
        try:
            t = float(value)
        except ValueError:
            raise ValueError(f"bad time schedule {spec!r}: {value!r} is not a number; {_SCHEDULE_HELP}") from None
        if not math.isfinite(t) or not 0.0 <= t <= 1.0:
            raise ValueError(f"bad time schedule {spec!r}: time {value} is outside [0, 1]")
        return TimeSchedule(kind, t)
    raise ValueError(f"bad time schedule {spec!r}: unknown kind {kind!r}; {_SCHEDULE_HELP}")


def schedule_times(
    spec_or_schedule: TimeSpec, n_frames: int, *, dtype: torch.dtype = torch.float32, device=None
) -> Tensor:
    """(N,) frame times for a schedule given as a spec string, a :class:`TimeSchedule`, or a
    plain number T (shorthand for ``"freeze:T"``)."""
    spec = spec_or_schedule
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        schedule = TimeSchedule("freeze", float(spec))
    else:
        schedule = parse_time_schedule(spec)
    return schedule.times(n_frames, dtype=dtype, device=device)


# =========================================================================== validation helpers
def _check_n_frames(n_frames: int, fn: str) -> int:
    if isinstance(n_frames, bool) or not isinstance(n_frames, int):
        try:
            ok = float(n_frames) == int(n_frames)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{fn}: n_frames must be an integer >= 1, got {n_frames!r}")
    n = int(n_frames)
    if n < 1:
        raise ValueError(f"{fn}: n_frames must be >= 1, got {n}")
    return n


def _positive(x: float, name: str, fn: str) -> float:
    v = float(x)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{fn}: {name} must be a positive number, got {x!r}")
    return v


def _finite(x: float, name: str, fn: str) -> float:
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"{fn}: {name} must be finite, got {x!r}")
    return v


def _vec3(x: Vec3, name: str, fn: str) -> Tensor:
    """(3,) float64 copy of a point / direction."""
    v = torch.as_tensor(x.detach() if isinstance(x, Tensor) else x, dtype=_F64).cpu()
    if v.shape != (3,):
        raise ValueError(f"{fn}: {name} must have 3 components, got shape {tuple(v.shape)}")
    if not torch.isfinite(v).all():
        raise ValueError(f"{fn}: {name} has non-finite values {v.tolist()}")
    return v


def _unit(x: Vec3, name: str, fn: str) -> Tensor:
    v = _vec3(x, name, fn)
    n = float(v.norm())
    if n < 1e-12:
        raise ValueError(f"{fn}: {name} must be a non-zero vector")
    return v / n


def _up_basis(up: Tensor):
    """Orthonormal (e1, e2) spanning the plane perpendicular to unit ``up``, with e1 x e2 = up.

    e1 comes from the world axis least aligned with up, so up = +z gives e1 = +x, e2 = +y and
    azimuth 0 is the +x direction.
    """
    ref = torch.zeros(3, dtype=_F64)
    ref[int(up.abs().argmin())] = 1.0
    e1 = ref - (ref @ up) * up
    e1 = e1 / e1.norm()
    e2 = torch.linalg.cross(up, e1)
    return e1, e2


def _out_dtype(K, dtype: Optional[torch.dtype]) -> torch.dtype:
    if dtype is not None:
        return dtype
    if isinstance(K, Tensor) and K.is_floating_point():
        return K.dtype
    return torch.float32


def _out_device(K, device):
    if device is not None:
        return device
    return K.device if isinstance(K, Tensor) else None


def _frames_K(K, n: int, fn: str) -> Tensor:
    """(N, 3, 3) float64 intrinsics from one (3, 3) K or per-frame (N, 3, 3)."""
    Kt = torch.as_tensor(K.detach() if isinstance(K, Tensor) else K, dtype=_F64).cpu()
    if Kt.shape == (3, 3):
        Kt = Kt.expand(n, 3, 3)
    if Kt.shape != (n, 3, 3):
        raise ValueError(f"{fn}: K must have shape (3, 3) or ({n}, 3, 3), got {tuple(Kt.shape)}")
    if not torch.isfinite(Kt).all() or (Kt[:, 0, 0] <= 0).any() or (Kt[:, 1, 1] <= 0).any():
        raise ValueError(f"{fn}: K must be finite with positive focal lengths")
    return Kt.clone()


def _image_size(width: int, height: int, fn: str):
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or int(v) != v or int(v) <= 0:
            raise ValueError(f"{fn}: {name} must be a positive integer, got {v!r}")
    return int(width), int(height)


def _azimuth_steps(n: int, degrees: float) -> Tensor:
    """(N,) azimuth offsets in degrees. A whole number of turns leaves out the end point (it
    equals the start, and a looping video would show it twice); a partial arc includes it."""
    i = torch.arange(n, dtype=_F64)
    full_turns = degrees != 0 and math.isclose(degrees / 360.0, round(degrees / 360.0), abs_tol=1e-9)
    if full_turns or n == 1:
        return degrees * i / n
    return degrees * i / (n - 1)


def _build(
    eyes: Tensor, targets: Tensor, up: Tensor, K: Tensor, width: int, height: int,
    times: Tensor, dtype: torch.dtype, device, fn: str,
) -> Cameras:
    """Cameras at ``eyes`` (N, 3) looking at ``targets`` (N, 3), all float64 until the final cast."""
    try:
        w2c = look_at(eyes, targets, up.expand_as(eyes))
    except CameraError as e:
        raise ValueError(f"{fn}: {e}") from None
    if ((eyes - targets).norm(dim=-1) < 1e-12).any():
        raise ValueError(f"{fn}: a camera sits exactly on its look-at target")
    return Cameras(
        K=K.to(dtype=dtype, device=device),
        world_to_camera=w2c.to(dtype=dtype, device=device),
        width=width,
        height=height,
        times=times.to(dtype=dtype, device=device),
    )


# =========================================================================== analytic paths
def orbit(
    center: Vec3,
    radius: float,
    elevation_deg: float,
    n_frames: int,
    *,
    K: Tensor,
    width: int,
    height: int,
    up: Vec3 = (0.0, 0.0, 1.0),
    start_azimuth_deg: float = 0.0,
    degrees: float = 360.0,
    time: TimeSpec = "play",
    dtype: Optional[torch.dtype] = None,
    device=None,
) -> Cameras:
    """N cameras on a circle around ``center``, all looking at it.

    Camera i sits at distance ``radius`` from ``center``, ``elevation_deg`` above the plane
    perpendicular to ``up`` (negative: below), at azimuth ``start_azimuth_deg + step * i`` measured
    counter-clockwise about ``up`` from the world axis least aligned with up (+x for up = +z).
    A whole number of turns (``degrees`` = +-360, 720, ...) spaces frames by degrees / N so the
    video loops without a repeated frame; a partial arc ends exactly at ``degrees``.

    Args:
        center: (3,) look-at target and circle centre.
        K: (3, 3) or (N, 3, 3) pixel intrinsics for ``width`` x ``height``.
        time: time schedule (see :func:`schedule_times`).
        dtype, device: of the output; default K's floating dtype (else float32) and K's device.

    Returns:
        Cameras with N frames and ``times`` (N,).
    """
    fn = "orbit"
    n = _check_n_frames(n_frames, fn)
    c = _vec3(center, "center", fn)
    r = _positive(radius, "radius", fn)
    el = _finite(elevation_deg, "elevation_deg", fn)
    if not -90.0 < el < 90.0:
        # At +-90 degrees the view direction is parallel to up and the roll is undefined.
        raise ValueError(f"{fn}: elevation_deg must be strictly between -90 and 90, got {elevation_deg!r}")
    u = _unit(up, "up", fn)
    width, height = _image_size(width, height, fn)
    Kn = _frames_K(K, n, fn)
    out_dtype, device = _out_dtype(K, dtype), _out_device(K, device)

    az = torch.deg2rad(_finite(start_azimuth_deg, "start_azimuth_deg", fn) + _azimuth_steps(n, _finite(degrees, "degrees", fn)))
    e1, e2 = _up_basis(u)
    el_r = math.radians(el)
    horiz = torch.cos(az)[:, None] * e1 + torch.sin(az)[:, None] * e2
    eyes = c + r * (math.cos(el_r) * horiz + math.sin(el_r) * u)
    times = schedule_times(time, n, dtype=_F64)
    return _build(eyes, c.expand(n, 3), u, Kn, width, height, times, out_dtype, device, fn)


def spiral(
    center: Vec3,
    radius: float,
    n_frames: int,
    *,
    K: Tensor,
    width: int,
    height: int,
    rotations: float = 2.0,
    z_amplitude: Optional[float] = None,
    radius_amplitude: float = 0.0,
    elevation_deg: float = 0.0,
    target: Optional[Vec3] = None,
    up: Vec3 = (0.0, 0.0, 1.0),
    start_azimuth_deg: float = 0.0,
    time: TimeSpec = "play",
    dtype: Optional[torch.dtype] = None,
    device=None,
) -> Cameras:
    """LLFF-style spiral: an orbit whose height (and optionally radius) swings once over the path.

    With progress ``s`` in [0, 1) and ``w = sin(2 pi s)``, camera i sits at azimuth
    ``start + 360 * rotations * s`` around ``center``, horizontal distance
    ``radius * cos(elevation) * (1 + radius_amplitude * w)`` and height
    ``radius * sin(elevation) + z_amplitude * w`` along ``up``; it looks at ``target``
    (default ``center``). An integer ``rotations`` makes a seamless loop (end point left out).

    Args:
        z_amplitude: height swing in world units, >= 0; default ``0.25 * radius``.
        radius_amplitude: relative radius swing in [0, 1).
        K: (3, 3) or (N, 3, 3) pixel intrinsics.

    Returns:
        Cameras with N frames and ``times`` (N,).
    """
    fn = "spiral"
    n = _check_n_frames(n_frames, fn)
    c = _vec3(center, "center", fn)
    r = _positive(radius, "radius", fn)
    rot = _finite(rotations, "rotations", fn)
    if rot == 0:
        raise ValueError(f"{fn}: rotations must be non-zero (use orbit(..., degrees=0) for a still camera)")
    za = 0.25 * r if z_amplitude is None else _finite(z_amplitude, "z_amplitude", fn)
    if za < 0:
        raise ValueError(f"{fn}: z_amplitude must be >= 0, got {z_amplitude!r}")
    ra = _finite(radius_amplitude, "radius_amplitude", fn)
    if not 0.0 <= ra < 1.0:
        raise ValueError(f"{fn}: radius_amplitude must be in [0, 1), got {radius_amplitude!r}")
    el = _finite(elevation_deg, "elevation_deg", fn)
    if not -90.0 < el < 90.0:
        raise ValueError(f"{fn}: elevation_deg must be strictly between -90 and 90, got {elevation_deg!r}")
    tgt = c if target is None else _vec3(target, "target", fn)
    u = _unit(up, "up", fn)
    width, height = _image_size(width, height, fn)
    Kn = _frames_K(K, n, fn)
    out_dtype, device = _out_dtype(K, dtype), _out_device(K, device)

    az_deg = _azimuth_steps(n, 360.0 * rot)
    s = az_deg / (360.0 * rot)  # progress, same spacing rule as the azimuth
    az = torch.deg2rad(_finite(start_azimuth_deg, "start_azimuth_deg", fn) + az_deg)
    w = torch.sin(2 * math.pi * s)
    el_r = math.radians(el)
    horiz_r = r * math.cos(el_r) * (1 + ra * w)
    h = r * math.sin(el_r) + za * w
    e1, e2 = _up_basis(u)
    eyes = c + horiz_r[:, None] * (torch.cos(az)[:, None] * e1 + torch.sin(az)[:, None] * e2) + h[:, None] * u
    times = schedule_times(time, n, dtype=_F64)
    return _build(eyes, tgt.expand(n, 3), u, Kn, width, height, times, out_dtype, device, fn)


def dolly_zoom(
    center: Vec3,
    start_distance: float,
    end_distance: float,
    n_frames: int,
    *,
    direction: Vec3,
    fov_start_deg: float,
    width: int,
    height: int,
    up: Vec3 = (0.0, 0.0, 1.0),
    time: TimeSpec = "play",
    dtype: torch.dtype = torch.float32,
    device=None,
) -> Cameras:
    """Vertigo shot: the camera dollies along a line while zooming so the target plane keeps its size.

    Camera i sits at ``center + d_i * direction`` (``direction``: unit vector from the target
    towards the camera; d_i linear from ``start_distance`` to ``end_distance``) looking at
    ``center``. Its focal length is ``f_i = f_0 * d_i / d_0`` with ``f_0`` from ``fov_start_deg``
    (vertical), so anything in the plane through ``center`` facing the camera projects to the same
    pixels in every frame while the background's perspective stretches or flattens.
    Square pixels, centred principal point.

    Returns:
        Cameras with N frames and ``times`` (N,).
    """
    fn = "dolly_zoom"
    n = _check_n_frames(n_frames, fn)
    c = _vec3(center, "center", fn)
    d0 = _positive(start_distance, "start_distance", fn)
    d1 = _positive(end_distance, "end_distance", fn)
    fov = _finite(fov_start_deg, "fov_start_deg", fn)
    if not 0.0 < fov < 180.0:
        raise ValueError(f"{fn}: fov_start_deg must be in (0, 180), got {fov_start_deg!r}")
    d_hat = _unit(direction, "direction", fn)
    u = _unit(up, "up", fn)
    if float(torch.linalg.cross(d_hat, u).norm()) < 1e-6:
        raise ValueError(f"{fn}: direction is parallel to up, so the camera roll is undefined; pick another up")
    width, height = _image_size(width, height, fn)

    d = torch.linspace(d0, d1, n, dtype=_F64) if n > 1 else torch.tensor([d0], dtype=_F64)
    f0 = 0.5 * height / math.tan(math.radians(fov) / 2)
    f = f0 * d / d0  # image size of the target plane ~ f / d: held constant
    K = torch.zeros(n, 3, 3, dtype=_F64)
    K[:, 0, 0] = f
    K[:, 1, 1] = f
    K[:, 0, 2] = width / 2.0
    K[:, 1, 2] = height / 2.0
    K[:, 2, 2] = 1.0
    eyes = c + d[:, None] * d_hat
    times = schedule_times(time, n, dtype=_F64)
    return _build(eyes, c.expand(n, 3), u, K, width, height, times, dtype, device, fn)


# =========================================================================== keyframes
_SPLINE_ALPHA = {"uniform": 0.0, "centripetal": 0.5, "chordal": 1.0}


def _catmull_rom(P: Tensor, u: Tensor, alpha: float) -> Tensor:
    """Catmull-Rom points between P[:, 1] and P[:, 2] (Barry-Goldman pyramid).

    Args:
        P: (N, 4, 3) the four control points of each frame's segment.
        u: (N,) local parameter in [0, 1]; u = 0 gives P[:, 1], u = 1 gives P[:, 2].
        alpha: knot exponent (0 uniform, 0.5 centripetal, 1 chordal).
    """
    dist = (P[:, 1:] - P[:, :-1]).norm(dim=-1)  # (N, 3)
    dt = dist.pow(alpha)  # 0 ** 0 == 1, so uniform never degenerates
    # Coincident control points give zero knot intervals (0/0 below); a floor relative to the
    # path's scale keeps the weights bounded while leaving the curve unchanged to ~1e-12.
    floor = 1e-6 * float(dt.max()) if float(dt.max()) > 0 else 1.0
    dt = dt.clamp_min(floor)
    t0 = torch.zeros_like(u)
    t1 = t0 + dt[:, 0]
    t2 = t1 + dt[:, 1]
    t3 = t2 + dt[:, 2]
    t = t1 + u * (t2 - t1)

    def lerp(a: Tensor, b: Tensor, ta: Tensor, tb: Tensor) -> Tensor:
        wa = ((tb - t) / (tb - ta))[:, None]
        wb = ((t - ta) / (tb - ta))[:, None]
        return wa * a + wb * b

    A1 = lerp(P[:, 0], P[:, 1], t0, t1)
    A2 = lerp(P[:, 1], P[:, 2], t1, t2)
    A3 = lerp(P[:, 2], P[:, 3], t2, t3)
    B1 = lerp(A1, A2, t0, t2)
    B2 = lerp(A2, A3, t1, t3)
    return lerp(B1, B2, t1, t2)


def _slerp(q0: Tensor, q1: Tensor, u: Tensor) -> Tensor:
    """Per-row shortest-path slerp of unit quaternions (N, 4) by (N,) fractions."""
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)  # q and -q are one rotation: take the short way round
    dot = dot.abs()
    # sin(omega) as the norm of q1's part orthogonal to q0: accurate for small angles (unlike acos).
    rej = q1 - dot * q0
    sin_o = rej.norm(dim=-1, keepdim=True)
    near = sin_o < 1e-9
    sin_safe = torch.where(near, torch.ones_like(sin_o), sin_o)
    omega = torch.atan2(sin_safe, dot)
    uu = u[:, None]
    a = torch.where(near, 1 - uu, torch.sin((1 - uu) * omega) / sin_safe)
    b = torch.where(near, uu, torch.sin(uu * omega) / sin_safe)
    q = a * q0 + b * q1
    return q / q.norm(dim=-1, keepdim=True)


def interpolate_keyframes(
    keyframes: Cameras,
    n_frames: int,
    *,
    closed: bool = False,
    time: Optional[TimeSpec] = None,
    spline: str = "centripetal",
) -> Cameras:
    """A smooth N-frame path through M keyframe cameras.

    Keyframe k sits at path parameter k. Frames sample the parameter evenly: ``s_i = (M-1) i/(N-1)``
    for an open path (first and last frames are the first and last keyframes), ``s_i = M i/N``
    for a closed loop (the segment M-1 -> 0 is added; the end point is left out so the video
    loops). Whenever ``s_i`` is an integer k the frame is exactly keyframe k, e.g. every keyframe is
    hit when ``N - 1`` is a multiple of ``M - 1`` (open) or ``N`` of ``M`` (closed).

    * camera centres: Catmull-Rom spline (``spline``: ``"centripetal"`` (default; no cusps or
      self-intersections), ``"uniform"`` or ``"chordal"``); open ends use mirrored phantom points;
    * rotations: shortest-path quaternion slerp between consecutive keyframes;
    * intrinsics (fx, fy, cx, cy): linear between consecutive keyframes;
    * times: linear between consecutive keyframe times when the keyframes carry times and
      ``time`` is None; otherwise the schedule ``time`` (default ``"play"``).

    Args:
        keyframes: Cameras with M >= 2 keyframes.
        n_frames: N >= 1.

    Returns:
        Cameras with N frames, the keyframes' image size and dtype, and ``times`` (N,).
    """
    fn = "interpolate_keyframes"
    if not isinstance(keyframes, Cameras):
        raise ValueError(f"{fn}: keyframes must be a Cameras, got {type(keyframes).__name__}")
    M = len(keyframes)
    if M < 2:
        raise ValueError(
            f"a camera path needs at least 2 keyframes, got {M} (a single camera is a still shot: "
            "add another keyframe, or use the Cameras directly)"
        )
    n = _check_n_frames(n_frames, fn)
    if spline not in _SPLINE_ALPHA:
        raise ValueError(f"{fn}: spline must be one of {sorted(_SPLINE_ALPHA)}, got {spline!r}")
    alpha = _SPLINE_ALPHA[spline]

    w2c = keyframes.world_to_camera.detach().to(_F64).cpu()
    K = keyframes.K.detach().to(_F64).cpu()
    C = keyframes.centers.detach().to(_F64).cpu()  # (M, 3)
    q = rotmat_to_quat_wxyz(w2c[:, :3, :3])  # (M, 4)

    # Path parameter per frame; integer numerators keep keyframe hits exact in float64.
    i = torch.arange(n, dtype=_F64)
    if closed:
        s = i * M / n
    else:
        s = i * (M - 1) / (n - 1) if n > 1 else torch.zeros(1, dtype=_F64)
    k = s.floor().long()
    if not closed:
        k = k.clamp(max=M - 2)  # the last frame (s = M-1) is the end of the last segment
    u = s - k.to(_F64)
    k0 = k % M
    k1 = (k + 1) % M

    # Control points: index j of `ext` is keyframe j-1; ends get phantoms.
    if closed:
        ext = C[torch.arange(-1, M + 2) % M]
    else:
        ext = torch.cat([2 * C[:1] - C[1:2], C, 2 * C[-1:] - C[-2:-1]])
    P = torch.stack([ext[k + j] for j in range(4)], dim=1)  # (N, 4, 3)
    centers = _catmull_rom(P, u, alpha)

    R = quat_wxyz_to_rotmat(_slerp(q[k0], q[k1], u))  # (N, 3, 3)
    out = torch.zeros(n, 4, 4, dtype=_F64)
    out[:, :3, :3] = R
    out[:, :3, 3] = -(R @ centers[..., None])[..., 0]
    out[:, 3, 3] = 1.0
    Kout = (1 - u)[:, None, None] * K[k0] + u[:, None, None] * K[k1]

    if time is None and keyframes.times is not None:
        kt = keyframes.times.detach().to(_F64).cpu()
        times = (1 - u) * kt[k0] + u * kt[k1]
    else:
        times = schedule_times("play" if time is None else time, n, dtype=_F64)

    dtype, device = keyframes.dtype, keyframes.device
    return Cameras(
        K=Kout.to(dtype=dtype, device=device),
        world_to_camera=out.to(dtype=dtype, device=device),
        width=keyframes.width,
        height=keyframes.height,
        times=times.to(dtype=dtype, device=device),
    )
