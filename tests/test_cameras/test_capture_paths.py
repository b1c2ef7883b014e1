"""Paths built from a capture's input cameras: classification, spiral, arc, stabilised trajectory,
the region the inputs saw. Procedural camera sets with known answers."""

import math

import pytest
import torch

from cameras import (
    Cameras,
    capture_rig,
    input_arc,
    input_spiral,
    intrinsics_from_fov,
    llff_focus_depth,
    look_at,
    orbit,
    seen_region,
    stabilized,
    tracking_spiral,
)
from cameras.capture_paths import FORWARD_FACING, FULL_360, _so3_exp, _so3_log, arc_range

F64 = torch.float64
W, H = 64, 48
K64 = intrinsics_from_fov(math.radians(50), W, H, dtype=F64)
ZUP = torch.tensor([0.0, 0.0, 1.0], dtype=F64)


def forward_cameras(n: int = 30, *, depth: float = 3.0, seed: int = 0, jitter: float = 0.0, rot_jitter_deg: float = 0.0):
    """A phone-clip-like set: a sideways walk x in [-0.5, 0.5] with a little bob, looking along +y
    at a subject ``depth`` ahead (panning with it), z up. Returns (cameras, true centres, true w2c)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, n, dtype=F64)
    eye = torch.stack([-0.5 + t, 0.05 * torch.sin(2 * math.pi * t), 0.04 * torch.cos(2 * math.pi * t)], -1)
    target = torch.tensor([0.0, depth, 0.0], dtype=F64).expand(n, 3)
    w2c_true = look_at(eye, target, ZUP.expand(n, 3))
    eye_j = eye + jitter * torch.randn(n, 3, generator=g, dtype=F64)
    w2c = look_at(eye_j, target, ZUP.expand(n, 3))
    if rot_jitter_deg:
        w = torch.deg2rad(torch.tensor(rot_jitter_deg, dtype=F64)) * torch.randn(n, 3, generator=g, dtype=F64)
        R = _so3_exp(w) @ w2c[:, :3, :3]
        w2c = w2c.clone()
        w2c[:, :3, :3] = R
        w2c[:, :3, 3] = -(R @ eye_j[..., None])[..., 0]
    return Cameras(K64.expand(n, 3, 3).clone(), w2c, W, H, times=t), eye, w2c_true


def ring(n: int = 12, elevation_deg: float = 25.0, radius: float = 4.0):
    az = torch.arange(n, dtype=F64) * 2 * math.pi / n
    el = math.radians(elevation_deg)
    eye = radius * torch.stack([math.cos(el) * torch.cos(az), math.cos(el) * torch.sin(az),
                                torch.full_like(az, math.sin(el))], -1)
    w2c = look_at(eye, torch.zeros(n, 3, dtype=F64), ZUP.expand(n, 3))
    return Cameras(K64.expand(n, 3, 3).clone(), w2c, W, H, times=torch.linspace(0, 1, n, dtype=F64))


def centre_pixel_error(cams: Cameras, X: torch.Tensor) -> float:
    Xh = torch.cat([X.to(cams.dtype), torch.ones(1, dtype=cams.dtype)])
    Xc = (cams.world_to_camera @ Xh)[:, :3]
    uv = (cams.K @ Xc[..., None])[..., 0]
    uv = uv[:, :2] / uv[:, 2:]
    return float((uv - cams.K[:, :2, 2]).norm(dim=-1).max())


# --------------------------------------------------------------------------- classification
def test_forward_facing_set_is_classified_and_summarised():
    cams, eye, _ = forward_cameras()
    rig = capture_rig(cams, focus_depth=3.0)
    assert rig.kind == FORWARD_FACING and "< 180" in rig.reason
    assert torch.allclose(rig.up, ZUP)
    assert torch.allclose(rig.center, eye.mean(0), atol=1e-12)
    assert torch.allclose(rig.forward, torch.tensor([0.0, 1.0, 0.0], dtype=F64), atol=1e-3)
    assert torch.allclose(rig.focus, rig.center + 3.0 * rig.forward)
    # the walk spans 1 unit sideways: the inputs see the subject over ~2 atan(0.5 / 3) = 19 degrees
    assert 15 < rig.az_length < 22
    assert rig.look_off.max() < 1.0  # they all look at the subject, 3 ahead
    assert "forward-facing" in rig.describe()


def test_focus_depth_defaults_to_where_the_optical_axes_meet():
    cams, _, _ = forward_cameras(depth=2.5)
    rig = capture_rig(cams)
    assert rig.focus_depth == pytest.approx(2.5, abs=0.02)


def test_parallel_forward_cameras_need_a_focus_depth():
    n = 5
    eye = torch.stack([torch.linspace(-1, 1, n, dtype=F64), torch.zeros(n, dtype=F64), torch.zeros(n, dtype=F64)], -1)
    w2c = look_at(eye, eye + torch.tensor([0.0, 1.0, 0.0], dtype=F64), ZUP.expand(n, 3))
    cams = Cameras(K64.expand(n, 3, 3).clone(), w2c, W, H)
    with pytest.raises(ValueError, match="pass focus_depth"):
        capture_rig(cams)
    assert capture_rig(cams, focus_depth=2.0).focus_depth == pytest.approx(2.0)


def test_ring_is_360_and_looks_at_its_centre():
    rig = capture_rig(ring())
    assert rig.kind == FULL_360 and ">= 180" in rig.reason
    assert rig.focus.norm() < 1e-9 and torch.allclose(rig.up, ZUP)
    assert rig.az_length > 300
    cam = rig.mean_camera(dtype=F64)
    assert centre_pixel_error(cam, rig.focus) < 1e-6
    assert float(cam.centers[0].norm()) == pytest.approx(4.0)


def test_dnerf_like_hemisphere_is_360_with_an_exact_up():
    """Random cameras on the upper hemisphere (D-NeRF's layout, the demo's capture): the mean camera
    up is a few degrees off +z, and is snapped to it, so orbits keep their old up."""
    from scene4d.data.synthetic import _random_cameras

    cams = _random_cameras(100, torch.Generator().manual_seed(0), 32)
    up = -cams.world_to_camera[:, 1, :3].mean(0)
    assert 0.01 < math.degrees(math.acos(float(up[2] / up.norm()))) < 15
    rig = capture_rig(cams)
    assert rig.kind == FULL_360 and torch.equal(rig.up, ZUP)
    assert rig.focus.norm() < 1e-6


def test_top_down_scan_is_360_by_camera_positions():
    n = 10
    az = torch.arange(n, dtype=F64) * 2 * math.pi / n
    eye = torch.stack([0.2 * torch.cos(az), 0.2 * torch.sin(az), torch.full_like(az, 3.0)], -1)
    w2c = look_at(eye, torch.zeros(n, 3, dtype=F64), torch.tensor([0.0, 1.0, 0.0], dtype=F64).expand(n, 3))
    rig = capture_rig(Cameras(K64.expand(n, 3, 3).clone(), w2c, W, H), up=ZUP)
    assert rig.kind == FULL_360 and "camera positions" in rig.reason


def test_capture_rig_rejects_bad_input():
    with pytest.raises(ValueError, match="expected Cameras"):
        capture_rig("cams")
    cams, _, _ = forward_cameras()
    with pytest.raises(ValueError, match="focus_depth must be a positive"):
        capture_rig(cams, focus_depth=-1.0)
    with pytest.raises(ValueError, match="up must be"):
        capture_rig(cams, focus_depth=1.0, up=(0.0, 0.0, 0.0))


def test_llff_focus_depth():
    assert llff_focus_depth(2.0, 2.0) == pytest.approx(2.0)
    # 1 / (0.25 / 1 + 0.75 / 4) = 1 / 0.4375
    assert llff_focus_depth(1.0, 4.0) == pytest.approx(1 / 0.4375)
    for near, far in ((0.0, 1.0), (2.0, 1.0), (float("nan"), 1.0)):
        with pytest.raises(ValueError, match="0 < near <= far"):
            llff_focus_depth(near, far)


# --------------------------------------------------------------------------- spiral
def test_spiral_circles_the_mean_camera_within_the_spread_looking_at_the_focus():
    cams, _, _ = forward_cameras()
    rig = capture_rig(cams, focus_depth=3.0)
    sp = input_spiral(rig, 40, dtype=F64)
    assert len(sp) == 40 and sp.times is not None and sp.times[0] == 0 and sp.times[-1] == 1
    assert (sp.width, sp.height) == (W, H) and torch.allclose(sp.K, K64.expand(40, 3, 3))
    assert centre_pixel_error(sp, rig.focus) < 1e-6
    local = (sp.centers - rig.center) @ rig.average_w2c[:3, :3].T
    mid, half = rig.spread()
    lo, hi = torch.quantile(rig.offsets, 0.1, 0), torch.quantile(rig.offsets, 0.9, 0)
    assert torch.allclose(local.max(0).values, hi, atol=0.02 * float(half.max()))
    assert torch.allclose(local.min(0).values, lo, atol=0.02 * float(half.max()))
    assert seen_region(rig, sp).n_outside == 0


def test_extrapolate_scales_the_spread():
    cams, _, _ = forward_cameras()
    rig = capture_rig(cams, focus_depth=3.0)
    mid, half = rig.spread()
    for X in (0.5, 2.0, 3.0):
        local = (input_spiral(rig, 80, extrapolate=X, dtype=F64).centers - rig.center) @ rig.average_w2c[:3, :3].T
        width = local.max(0).values - local.min(0).values
        assert torch.allclose(width[:2], 2 * X * half[:2], rtol=0.02), X
        assert torch.allclose((local.max(0).values + local.min(0).values)[:2] / 2, mid[:2], atol=0.02 * float(half[0]))
    far = input_spiral(rig, 40, extrapolate=3.0)
    region = seen_region(rig, far)
    assert region.n_outside > 0 and "leave the region the input cameras saw" in region.summary()
    with pytest.raises(ValueError, match="extrapolate must be a positive"):
        input_spiral(rig, 10, extrapolate=0.0)


def test_tracking_spiral_circles_the_camera_of_each_moment():
    """Frame i (time t_i) circles where the stabilised input camera was at t_i, within radius x the
    spread, looking at what that camera looked at; radius 0 is the stabilised trajectory itself; a
    frozen time circles one moment's camera."""
    cams, eye, _ = forward_cameras(40)
    rig = capture_rig(cams, focus_depth=3.0)
    _, half = rig.spread()
    tr = tracking_spiral(rig, 60, dtype=F64)
    assert len(tr) == 60 and torch.allclose(tr.times, torch.linspace(0, 1, 60, dtype=F64))
    truth_at = lambda t: torch.stack([-0.5 + t, 0.05 * torch.sin(2 * math.pi * t),  # noqa: E731
                                      0.04 * torch.cos(2 * math.pi * t)], -1)
    off = tr.centers - truth_at(tr.times)
    # the steady walk is its own stabilised trajectory: offsets stay within the spiral's half-widths
    # (in the camera's frame, which here is the average pose's up to the pan)
    assert float(off.norm(dim=-1).max()) <= float((0.5 * half).norm()) * 1.05
    assert float(off[:, 0].abs().max()) > 0.4 * float(half[0])  # it does circle, not sit on the path
    # the sideways walk spans 1.0: the mean-camera spiral shows t = 0 from up to ~0.9 away, this one
    # from at most half the spread
    far = (input_spiral(rig, 60, dtype=F64).centers - truth_at(tr.times)).norm(dim=-1).max()
    assert float(far) > 2 * float(off.norm(dim=-1).max())
    # it looks where the input camera of that moment looked: 3 ahead, at the subject
    assert centre_pixel_error(tr, torch.tensor([0.0, 3.0, 0.0], dtype=F64)) < 0.1 * W
    zero = tracking_spiral(rig, 40, radius=0.0, dtype=F64)  # 40 frames at the 40 inputs' times
    steady = stabilized(rig, dtype=F64)
    assert torch.allclose(zero.centers, steady.centers, atol=1e-9)
    assert torch.allclose(zero.world_to_camera, steady.world_to_camera, atol=1e-6)
    frozen = tracking_spiral(rig, 30, time="freeze:0.25", dtype=F64)
    assert bool((frozen.times == 0.25).all())
    assert float((frozen.centers - truth_at(torch.tensor(0.25, dtype=F64))).norm(dim=-1).max()) <= \
        float((0.5 * half).norm()) * 1.05
    assert seen_region(rig, tr).n_outside == 0
    # a circle too wide for the ends of the clip is shrunk there, not sent where no input was
    wide = tracking_spiral(rig, 60, radius=3.0, dtype=F64)
    assert seen_region(rig, wide).n_outside == 0
    shrunk = (wide.centers - tracking_spiral(rig, 60, radius=0.0, dtype=F64).centers).norm(dim=-1)
    assert float(shrunk.max()) > 3 * float(shrunk.min())  # full circles in the middle, smaller at the ends
    assert seen_region(rig, tracking_spiral(rig, 60, radius=3.0, extrapolate=1.5, dtype=F64)).n_outside > 0
    with pytest.raises(ValueError, match="radius must be a number >= 0"):
        tracking_spiral(rig, 10, radius=-1.0)


# --------------------------------------------------------------------------- arc
def test_arc_sweeps_the_captured_angles_a_bit_beyond_with_frozen_time():
    cams, _, _ = forward_cameras()
    rig = capture_rig(cams, focus_depth=3.0)
    arc = input_arc(rig, 25, dtype=F64)
    assert torch.equal(arc.times, torch.full((25,), 0.5, dtype=F64))
    assert centre_pixel_error(arc, rig.focus) < 1e-6
    az, el, dist, _ = rig.about_focus(arc)
    assert float(az.max() - az.min()) == pytest.approx(1.15 * rig.az_length, rel=1e-6)
    assert torch.allclose(dist, rig.dist.median().expand(25))
    assert torch.allclose(el, rig.el.median().expand(25), atol=1e-9)
    # the middle of the sweep is the middle of what the inputs covered
    assert float(az.min() + az.max()) / 2 == pytest.approx(rig.az_start + rig.az_length / 2, abs=1e-6)
    assert seen_region(rig, arc).n_outside == 0
    assert seen_region(rig, input_arc(rig, 25, extrapolate=2.0)).n_outside > 0
    assert arc_range(rig, 2.0)[1] == pytest.approx(2.3 * rig.az_length)
    assert torch.equal(input_arc(rig, 5, time="play").times, torch.linspace(0, 1, 5))


def test_arc_of_a_360_capture_is_a_full_turn():
    rig = capture_rig(ring())
    arc = input_arc(rig, 12, dtype=F64)
    az, _, dist, _ = rig.about_focus(arc)
    steps = torch.diff(torch.sort(az % 360).values)
    assert torch.allclose(steps, torch.full_like(steps, 30.0), atol=1e-6)
    assert torch.allclose(dist, torch.full_like(dist, 4.0))


# --------------------------------------------------------------------------- stabilised
def test_so3_log_inverts_exp():
    w = torch.tensor([[0.1, -0.2, 0.3], [1e-10, 0.0, 0.0], [0.0, 2.5, 0.4]], dtype=F64)
    assert torch.allclose(_so3_log(_so3_exp(w)), w, atol=1e-9)


def test_smooth_keeps_a_steady_trajectory_exactly():
    """A linear walk with a steady pan is what a stabiliser must leave alone, ends included."""
    n = 30
    t = torch.linspace(0, 1, n, dtype=F64)
    eye = torch.stack([t, 0.5 * t, torch.zeros_like(t)], -1)
    yaw = torch.deg2rad(-20 + 40 * t)
    fwd = torch.stack([torch.sin(yaw), torch.cos(yaw), torch.zeros_like(t)], -1)
    w2c = look_at(eye, eye + fwd, ZUP.expand(n, 3))
    cams = Cameras(K64.expand(n, 3, 3).clone(), w2c, W, H, times=t)
    sm = stabilized(cams, dtype=F64)
    assert torch.allclose(sm.centers, eye, atol=1e-9)
    # a constant angular velocity is linear in the rotation vector: kept to second order
    assert (sm.world_to_camera[:, :3, :3] - w2c[:, :3, :3]).abs().max() < 2e-3
    assert torch.equal(sm.times, t)


def test_smooth_of_a_jittered_trajectory_is_closer_to_the_truth():
    cams, eye, w2c_true = forward_cameras(n=60, jitter=0.02, rot_jitter_deg=1.5, seed=3)
    sm = stabilized(capture_rig(cams, focus_depth=3.0), dtype=F64)

    def rot_err(w2c):
        return _so3_log(w2c[:, :3, :3] @ w2c_true[:, :3, :3].transpose(1, 2)).norm(dim=-1).mean()

    pos_in = (cams.centers - eye).norm(dim=-1).mean()
    pos_sm = (sm.centers - eye).norm(dim=-1).mean()
    assert pos_sm < 0.5 * pos_in, (float(pos_sm), float(pos_in))
    assert rot_err(sm.world_to_camera) < 0.5 * rot_err(cams.world_to_camera)
    assert torch.equal(sm.times, cams.times) and torch.equal(sm.K, cams.K)
    # the clip's timing: one camera per input frame; resampled on request
    assert len(stabilized(cams, n_frames=11)) == 11
    with pytest.raises(ValueError, match="sigma must be a positive"):
        stabilized(cams, sigma=0)


# --------------------------------------------------------------------------- the region seen
def test_orbit_around_a_forward_facing_capture_leaves_the_region_seen():
    cams, _, _ = forward_cameras()
    rig = capture_rig(cams, focus_depth=3.0)
    ob = orbit(rig.focus, 3.0, 20.0, 24, K=K64, width=W, height=H)
    region = seen_region(rig, ob)
    assert region.n_outside >= 20
    assert "azimuth beyond" in region.summary("the orbit")
    assert seen_region(rig, cams).n_outside == 0  # the inputs are inside by definition
    assert seen_region(rig, cams).summary() == ""


def test_360_region_bounds_elevation_not_azimuth():
    rig = capture_rig(ring(elevation_deg=25.0))
    assert seen_region(rig, orbit((0, 0, 0), 4.0, 25.0, 30, K=K64, width=W, height=H)).n_outside == 0
    low = seen_region(rig, orbit((0, 0, 0), 4.0, -30.0, 30, K=K64, width=W, height=H))
    assert low.n_outside == 30 and "elevation" in low.summary()
    # nearer is a zoom into what was seen; farther leaves the reconstructed region
    assert seen_region(rig, orbit((0, 0, 0), 2.5, 25.0, 8, K=K64, width=W, height=H)).n_outside == 0
    assert seen_region(rig, orbit((0, 0, 0), 6.0, 25.0, 8, K=K64, width=W, height=H)).n_outside == 8
