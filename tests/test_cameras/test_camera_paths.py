"""Camera paths: orbit, spiral, dolly zoom, keyframe interpolation, time schedules."""

import math

import pytest
import torch

from cameras import (
    Cameras,
    TimeSchedule,
    dolly_zoom,
    interpolate_keyframes,
    intrinsics_from_fov,
    intrinsics_to_K,
    look_at,
    orbit,
    parse_time_schedule,
    rotmat_to_quat_wxyz,
    schedule_times,
    spiral,
)

F64 = torch.float64
W, H = 64, 48
K64 = intrinsics_from_fov(math.radians(50), W, H, dtype=F64)
UP = torch.tensor([0.0, 0.0, 1.0], dtype=F64)


def project(cams: Cameras, X: torch.Tensor):
    """Pixels (C, 2) and depths (C,) of world point X (3,) in every camera."""
    Xh = torch.cat([X.to(cams.dtype), torch.ones(1, dtype=cams.dtype)])
    Xc = (cams.world_to_camera @ Xh)[:, :3]
    uv = (cams.K @ Xc[..., None])[..., 0]
    return uv[:, :2] / uv[:, 2:], Xc[:, 2]


def angle_deg(Ra: torch.Tensor, Rb: torch.Tensor) -> float:
    c = ((torch.trace(Ra.T @ Rb) - 1) / 2).clamp(-1, 1)
    return math.degrees(math.acos(float(c)))


def cams_at(eyes, targets, Ks=None, times=None) -> Cameras:
    eyes = torch.as_tensor(eyes, dtype=F64)
    targets = torch.as_tensor(targets, dtype=F64).expand_as(eyes)
    w2c = look_at(eyes, targets, UP.expand_as(eyes))
    Ks = K64.expand(len(eyes), 3, 3) if Ks is None else Ks
    return Cameras(K=Ks, world_to_camera=w2c, width=W, height=H, times=times)


# ----------------------------------------------------------------------------- schedules
def test_play_freeze_bullet_values():
    torch.testing.assert_close(schedule_times("play", 5, dtype=F64), torch.tensor([0, 0.25, 0.5, 0.75, 1.0], dtype=F64))
    assert schedule_times("freeze:0.3", 4, dtype=F64).tolist() == [0.3] * 4
    got = schedule_times("bullet:0.5", 10, dtype=F64)
    expect = [0, 1 / 6, 1 / 3, 0.5, 0.5, 0.5, 0.5, 2 / 3, 5 / 6, 1.0]
    torch.testing.assert_close(got, torch.tensor(expect, dtype=F64), atol=1e-12, rtol=0)


def test_bullet_freezes_middle_third():
    t = schedule_times("bullet:0.7", 31, dtype=F64)
    assert t[0].item() == 0.0 and t[-1].item() == 1.0
    assert t[10:21].tolist() == [0.7] * 11  # progress 10/30 .. 20/30
    assert (t[1:] - t[:-1] >= 0).all()
    assert t[5].item() == pytest.approx(0.35)


def test_schedule_objects_numbers_and_one_frame():
    s = parse_time_schedule(" Bullet:0.25 ")
    assert s == TimeSchedule("bullet", 0.25) and str(s) == "bullet:0.25"
    assert schedule_times(s, 1).tolist() == [0.25]
    assert schedule_times(0.4, 3, dtype=F64).tolist() == [0.4] * 3
    assert schedule_times("play", 1).tolist() == [0.0]
    assert schedule_times("play", 3).dtype == torch.float32


@pytest.mark.parametrize(
    "spec, msg",
    [
        ("freeze:abc", "'abc' is not a number"),
        ("freeze:1.5", r"outside \[0, 1\]"),
        ("bullet:-0.1", r"outside \[0, 1\]"),
        ("freeze", "needs a time"),
        ("play:0.2", "takes no value"),
        ("warp", "unknown kind 'warp'"),
        ("freeze:nan", r"outside \[0, 1\]"),
    ],
)
def test_bad_schedules(spec, msg):
    with pytest.raises(ValueError, match=msg):
        parse_time_schedule(spec)


# ----------------------------------------------------------------------------- orbit
def test_orbit_radius_elevation_and_target():
    center = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    cams = orbit(center, 3.0, 25.0, 12, K=K64, width=W, height=H, time="freeze:0.25")
    assert len(cams) == 12 and cams.dtype == F64
    off = cams.centers - center
    torch.testing.assert_close(off.norm(dim=-1), torch.full((12,), 3.0, dtype=F64))
    torch.testing.assert_close(torch.rad2deg(torch.asin(off[:, 2] / 3.0)), torch.full((12,), 25.0, dtype=F64))
    uv, depth = project(cams, center)
    torch.testing.assert_close(uv, torch.tensor([[W / 2, H / 2]], dtype=F64).expand(12, 2), atol=1e-9, rtol=0)
    torch.testing.assert_close(depth, torch.full((12,), 3.0, dtype=F64))
    assert cams.times.tolist() == [0.25] * 12
    # Azimuth 0 is +x for up = +z; a full turn leaves out the end point (frame 3 is at 90 deg).
    horiz = 3.0 * math.cos(math.radians(25))
    torch.testing.assert_close(off[0], torch.tensor([horiz, 0.0, 3.0 * math.sin(math.radians(25))], dtype=F64))
    torch.testing.assert_close(off[3, :2], torch.tensor([0.0, horiz], dtype=F64), atol=1e-12, rtol=0)
    # World up stays up in the image.
    uv_up, _ = project(cams, center + 0.2 * UP)
    assert (uv_up[:, 1] < H / 2 - 0.5).all()


def test_orbit_partial_arc_other_up_and_float32_default():
    cams = orbit((0, 0, 0), 2.0, 0.0, 3, K=K64.float(), width=W, height=H, degrees=90, start_azimuth_deg=0)
    assert cams.dtype == torch.float32
    torch.testing.assert_close(cams.centers[-1], torch.tensor([0.0, 2.0, 0.0]), atol=1e-6, rtol=0)
    assert cams.times.tolist() == [0.0, 0.5, 1.0]
    # y-down world (OpenCV-style): up = -y, elevation measured along -y.
    c2 = orbit((0, 0, 0), 2.0, 30.0, 5, K=K64, width=W, height=H, up=(0, -1, 0))
    torch.testing.assert_close(c2.centers[:, 1], torch.full((5,), -1.0, dtype=F64))


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(radius=0.0), "radius must be a positive number"),
        (dict(n_frames=0), "n_frames must be >= 1"),
        (dict(elevation_deg=90.0), "strictly between -90 and 90"),
        (dict(K=torch.eye(4)), r"K must have shape \(3, 3\)"),
        (dict(center=(0, 0)), "center must have 3 components"),
        (dict(up=(0, 0, 0)), "up must be a non-zero vector"),
        (dict(time="warp"), "bad time schedule"),
    ],
)
def test_orbit_validation(kw, msg):
    args = dict(center=(0, 0, 0), radius=1.0, elevation_deg=10.0, n_frames=4, K=K64, width=W, height=H)
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        orbit(**args)


# ----------------------------------------------------------------------------- spiral
def test_spiral_heights_radius_loop_and_target():
    target = torch.tensor([0.0, 0.0, 0.3], dtype=F64)
    cams = spiral((0, 0, 0), 2.0, 40, K=K64, width=W, height=H, rotations=2, z_amplitude=0.5, radius_amplitude=0.2, target=target)
    c = cams.centers
    s = torch.arange(40, dtype=F64) / 40
    torch.testing.assert_close(c[:, 2], 0.5 * torch.sin(2 * math.pi * s), atol=1e-12, rtol=0)
    torch.testing.assert_close(c[:, :2].norm(dim=-1), 2.0 * (1 + 0.2 * torch.sin(2 * math.pi * s)), atol=1e-12, rtol=0)
    # Two turns over 40 frames: frame 20 is back at azimuth 0.
    assert abs(math.atan2(c[20, 1].item(), c[20, 0].item())) < 1e-9
    assert math.degrees(math.atan2(c[5, 1].item(), c[5, 0].item())) == pytest.approx(90.0)
    uv, _ = project(cams, target)
    torch.testing.assert_close(uv, torch.tensor([[W / 2, H / 2]], dtype=F64).expand(40, 2), atol=1e-9, rtol=0)


def test_spiral_validation():
    with pytest.raises(ValueError, match="rotations must be non-zero"):
        spiral((0, 0, 0), 1.0, 10, K=K64, width=W, height=H, rotations=0)
    with pytest.raises(ValueError, match=r"radius_amplitude must be in \[0, 1\)"):
        spiral((0, 0, 0), 1.0, 10, K=K64, width=W, height=H, radius_amplitude=1.0)
    with pytest.raises(ValueError, match="z_amplitude must be >= 0"):
        spiral((0, 0, 0), 1.0, 10, K=K64, width=W, height=H, z_amplitude=-1.0)


# ----------------------------------------------------------------------------- dolly zoom
def test_dolly_zoom_keeps_target_plane_size():
    center = torch.tensor([0.5, 0.5, 1.0], dtype=F64)
    cams = dolly_zoom(center, 6.0, 1.5, 9, direction=(0, -1, 0), fov_start_deg=20, width=W, height=H, dtype=F64)
    torch.testing.assert_close((cams.centers - center).norm(dim=-1), torch.linspace(6.0, 1.5, 9, dtype=F64))
    f = cams.K[:, 0, 0]
    assert f[0].item() == pytest.approx(0.5 * H / math.tan(math.radians(10)))
    torch.testing.assert_close(f / f[0], torch.linspace(6.0, 1.5, 9, dtype=F64) / 6.0)
    # A point in the target plane (perpendicular to the view line) stays on the same pixel.
    uv, _ = project(cams, center + torch.tensor([0.4, 0.0, 0.3], dtype=F64))
    assert (uv[0] - torch.tensor([W / 2, H / 2], dtype=F64)).abs().min() > 1.0
    torch.testing.assert_close(uv, uv[:1].expand(9, 2), atol=1e-9, rtol=0)
    # A background point does move: the vertigo effect.
    uv_bg, _ = project(cams, center + torch.tensor([0.4, 3.0, 0.3], dtype=F64))
    assert (uv_bg[-1] - uv_bg[0]).abs().max() > 2.0


def test_dolly_zoom_validation():
    with pytest.raises(ValueError, match="end_distance must be a positive number"):
        dolly_zoom((0, 0, 0), 2.0, 0.0, 5, direction=(1, 0, 0), fov_start_deg=30, width=W, height=H)
    with pytest.raises(ValueError, match=r"fov_start_deg must be in \(0, 180\)"):
        dolly_zoom((0, 0, 0), 2.0, 1.0, 5, direction=(1, 0, 0), fov_start_deg=180, width=W, height=H)
    with pytest.raises(ValueError, match="direction is parallel to up"):
        dolly_zoom((0, 0, 0), 2.0, 1.0, 5, direction=(0, 0, 2), fov_start_deg=30, width=W, height=H)


# ----------------------------------------------------------------------------- keyframes
def keyframe_set() -> Cameras:
    eyes = [[4.0, 0.0, 1.0], [0.0, 3.0, 2.0], [-3.0, 0.5, 0.5], [0.0, -5.0, 1.5]]
    Ks = torch.stack([intrinsics_to_K(f, f * 1.1, 32.0 + d, 24.0 - d).to(F64) for f, d in [(40, 0), (60, 1), (50, 2), (80, -1)]])
    return cams_at(eyes, [0.0, 0.0, 0.0], Ks=Ks, times=[0.0, 0.2, 0.9, 1.0])


@pytest.mark.parametrize("spline", ["centripetal", "uniform"])
def test_interpolation_passes_through_keyframes(spline):
    kf = keyframe_set()
    path = interpolate_keyframes(kf, 3 * 3 + 1, spline=spline)
    assert len(path) == 10 and path.dtype == F64
    hit = path[0:10:3]
    torch.testing.assert_close(hit.world_to_camera, kf.world_to_camera, atol=1e-9, rtol=0)
    torch.testing.assert_close(hit.K, kf.K, atol=1e-9, rtol=0)
    torch.testing.assert_close(hit.times, kf.times, atol=1e-12, rtol=0)
    # Between keyframes intrinsics and times are linear.
    torch.testing.assert_close(path.K[1], (2 * kf.K[0] + kf.K[1]) / 3)
    assert path.times[4].item() == pytest.approx(0.2 + 0.7 / 3)
    # Every frame is a proper rotation, i.e. a unit quaternion.
    R = path.world_to_camera[:, :3, :3]
    torch.testing.assert_close(R.transpose(1, 2) @ R, torch.eye(3, dtype=F64).expand(10, 3, 3), atol=1e-12, rtol=0)
    torch.testing.assert_close(rotmat_to_quat_wxyz(R).norm(dim=-1), torch.ones(10, dtype=F64))


def test_collinear_equally_spaced_keys_give_uniform_linear_motion():
    eyes = [[0.0, -5.0, 0.0], [1.0, -5.0, 0.0], [2.0, -5.0, 0.0], [3.0, -5.0, 0.0]]
    kf = cams_at(eyes, [[0.0, 0.0, 0.0]])
    path = interpolate_keyframes(kf, 7)
    expect = torch.stack([torch.linspace(0, 3, 7, dtype=F64), torch.full((7,), -5.0, dtype=F64), torch.zeros(7, dtype=F64)], 1)
    torch.testing.assert_close(path.centers, expect, atol=1e-12, rtol=0)


def test_slerp_midpoint_of_90_degree_pair_and_shortest_path():
    # Same position, yaw differs by 90 degrees: the middle frame is 45 degrees from both.
    kf = cams_at([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    mid = interpolate_keyframes(kf, 3)
    R = mid.world_to_camera[:, :3, :3]
    assert angle_deg(R[0], R[1]) == pytest.approx(45.0)
    assert angle_deg(R[1], R[2]) == pytest.approx(45.0)
    torch.testing.assert_close(mid.centers, torch.zeros(3, 3, dtype=F64), atol=1e-12, rtol=0)
    s = math.sqrt(0.5)
    fwd = mid.camera_to_world[1, :3, 2]  # optical axis of the middle frame
    torch.testing.assert_close(fwd, torch.tensor([s, s, 0.0], dtype=F64), atol=1e-12, rtol=0)
    # Looking at azimuth 170 and -170 degrees: the short way passes through 180, not 0.
    a, b = math.radians(170), math.radians(-170)
    kf2 = cams_at([[0.0, 0.0, 0.0]] * 2, [[math.cos(a), math.sin(a), 0.0], [math.cos(b), math.sin(b), 0.0]])
    fwd2 = interpolate_keyframes(kf2, 3).camera_to_world[1, :3, 2]
    torch.testing.assert_close(fwd2, torch.tensor([-1.0, 0.0, 0.0], dtype=F64), atol=1e-12, rtol=0)


def test_closed_loop_and_time_override():
    kf = keyframe_set()
    path = interpolate_keyframes(kf, 16, closed=True, time="freeze:0.5")
    torch.testing.assert_close(path[0:16:4].world_to_camera, kf.world_to_camera, atol=1e-9, rtol=0)
    assert path.times.tolist() == [0.5] * 16
    # The closing segment 3 -> 0: its midpoint lies between the last and first keyframes' K.
    torch.testing.assert_close(path.K[14], (kf.K[3] + kf.K[0]) / 2)
    # Without keyframe times the default schedule plays 0 -> 1.
    kf_nt = Cameras(K=kf.K, world_to_camera=kf.world_to_camera, width=W, height=H)
    assert interpolate_keyframes(kf_nt, 5).times.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_coincident_keyframes_do_not_break_centripetal_spline():
    kf = cams_at([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], [[0.0, 0.0, 0.5]])
    path = interpolate_keyframes(kf, 9)
    torch.testing.assert_close(path.centers[:5], torch.tensor([[1.0, 0.0, 0.0]], dtype=F64).expand(5, 3), atol=1e-9, rtol=0)
    torch.testing.assert_close(path.centers[8], torch.tensor([0.0, 2.0, 0.0], dtype=F64), atol=1e-9, rtol=0)


def test_one_keyframe_is_an_error():
    kf = cams_at([[1.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="a camera path needs at least 2 keyframes, got 1"):
        interpolate_keyframes(kf, 10)
    with pytest.raises(ValueError, match="n_frames must be >= 1"):
        interpolate_keyframes(keyframe_set(), 0)
    with pytest.raises(ValueError, match="spline must be one of"):
        interpolate_keyframes(keyframe_set(), 5, spline="bezier")
