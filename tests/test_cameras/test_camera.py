"""Cameras: validation, centres, look_at orientation, resizing."""

import math

import pytest
import torch

from cameras import CameraError, Cameras, intrinsics_from_fov, look_at, rigid_inverse

F64 = torch.float64


def project(cams: Cameras, X: torch.Tensor):
    """Pixels (C, 2) and OpenCV depths (C,) of one world point X (3,) in every camera."""
    Xh = torch.cat([X.to(cams.dtype), torch.ones(1, dtype=cams.dtype)])
    Xc = (cams.world_to_camera @ Xh)[:, :3]
    uv = (cams.K @ Xc[..., None])[..., 0]
    return uv[:, :2] / uv[:, 2:], Xc[:, 2]


def make(n=2, dtype=F64, **kw) -> Cameras:
    K = intrinsics_from_fov(math.radians(60), 64, 48, dtype=dtype).expand(n, 3, 3).clone()
    w2c = torch.eye(4, dtype=dtype).expand(n, 4, 4).clone()
    return Cameras(K=K, world_to_camera=w2c, width=64, height=48, **kw)


# ----------------------------------------------------------------------------- validation
def test_valid_and_unbatched_inputs_get_a_batch_dim():
    K = intrinsics_from_fov(math.radians(60), 64, 48)
    cams = Cameras(K=K, world_to_camera=torch.eye(4), width=64, height=48)
    assert cams.K.shape == (1, 3, 3) and cams.world_to_camera.shape == (1, 4, 4)
    assert len(cams) == 1


def test_scaled_rotation_is_rejected():
    cams = make()
    w2c = cams.world_to_camera.clone()
    w2c[1, :3, :3] *= 2.0
    with pytest.raises(CameraError, match=r"world_to_camera\[1\] is not a rigid transform"):
        Cameras(K=cams.K, world_to_camera=w2c, width=64, height=48)


def test_reflection_is_rejected():
    w2c = torch.eye(4, dtype=F64).expand(1, 4, 4).clone()
    w2c[0, 2, 2] = -1.0  # det = -1: an OpenGL/OpenCV mix-up, not a rotation
    with pytest.raises(CameraError, match="det = -1.0000"):
        Cameras(K=make(1).K, world_to_camera=w2c, width=64, height=48)


@pytest.mark.parametrize("field", ["K", "world_to_camera"])
def test_nan_is_rejected(field):
    cams = make()
    K, w2c = cams.K.clone(), cams.world_to_camera.clone()
    (K if field == "K" else w2c)[1, 0, 2] = float("nan")
    with pytest.raises(CameraError, match=r"non-finite values in camera\(s\) \[1\]"):
        Cameras(K=K, world_to_camera=w2c, width=64, height=48)


def test_wrong_shapes_are_rejected():
    cams = make()
    with pytest.raises(CameraError, match=r"K must have shape \(C, 3, 3\), got \(2, 2, 2\)"):
        Cameras(K=cams.K[:, :2, :2], world_to_camera=cams.world_to_camera, width=64, height=48)
    with pytest.raises(CameraError, match=r"world_to_camera must have shape \(C, 4, 4\), got \(2, 3, 4\)"):
        Cameras(K=cams.K, world_to_camera=cams.world_to_camera[:, :3], width=64, height=48)
    with pytest.raises(CameraError, match="K has 1 cameras but world_to_camera has 2"):
        Cameras(K=cams.K[:1], world_to_camera=cams.world_to_camera, width=64, height=48)
    with pytest.raises(CameraError, match="3 times for 2 cameras"):
        Cameras(K=cams.K, world_to_camera=cams.world_to_camera, width=64, height=48, times=[0.0, 0.5, 1.0])


def test_bad_focal_size_and_last_row_are_rejected():
    cams = make()
    K = cams.K.clone()
    K[0, 1, 1] = -5.0
    with pytest.raises(CameraError, match="focal lengths must be positive"):
        Cameras(K=K, world_to_camera=cams.world_to_camera, width=64, height=48)
    with pytest.raises(CameraError, match="image size must be positive"):
        Cameras(K=cams.K, world_to_camera=cams.world_to_camera, width=0, height=48)
    w2c = cams.world_to_camera.clone()
    w2c[0, 3, 0] = 0.5
    with pytest.raises(CameraError, match=r"last row of world_to_camera must be \[0, 0, 0, 1\]"):
        Cameras(K=cams.K, world_to_camera=w2c, width=64, height=48)


# ----------------------------------------------------------------------------- geometry
def test_centers_and_camera_to_world():
    w2c = torch.eye(4, dtype=F64)[None].clone()
    w2c[0, :3, 3] = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    cams = Cameras(K=make(1).K, world_to_camera=w2c, width=64, height=48)
    torch.testing.assert_close(cams.centers, torch.tensor([[-1.0, -2.0, -3.0]], dtype=F64))
    eye = torch.tensor([[0.5, -4.0, 1.5], [3.0, 1.0, -2.0]], dtype=F64)
    cams = Cameras(K=make(2).K, world_to_camera=look_at(eye, torch.zeros(3, dtype=F64), torch.tensor([0, 0, 1.0], dtype=F64)), width=64, height=48)
    torch.testing.assert_close(cams.centers, eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(cams.camera_to_world @ cams.world_to_camera, torch.eye(4, dtype=F64).expand(2, 4, 4), atol=1e-12, rtol=0)
    torch.testing.assert_close(rigid_inverse(cams.world_to_camera), torch.linalg.inv(cams.world_to_camera), atol=1e-12, rtol=0)


def test_fov_y_matches_intrinsics_from_fov():
    cams = make(1)
    assert cams.fov_y.item() == pytest.approx(math.radians(60), abs=1e-12)
    assert cams.K[0, 1, 1].item() == pytest.approx(24 / math.tan(math.radians(30)))
    assert cams.K[0, 0, 2].item() == 32.0 and cams.K[0, 1, 2].item() == 24.0


def test_look_at_centres_target_and_keeps_world_up_up():
    eye = torch.tensor([0.0, -5.0, 1.0], dtype=F64)
    target = torch.tensor([0.2, 0.3, 0.4], dtype=F64)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    cams = Cameras(K=make(1).K, world_to_camera=look_at(eye, target, up), width=64, height=48)
    uv, depth = project(cams, target)
    torch.testing.assert_close(uv[0], torch.tensor([32.0, 24.0], dtype=F64), atol=1e-9, rtol=0)
    assert depth.item() == pytest.approx(float((target - eye).norm()))
    # A point above the target (world up) lands higher in the image: smaller pixel y.
    uv_up, _ = project(cams, target + 0.3 * up)
    assert uv_up[0, 1].item() < 24.0 - 1.0
    assert uv_up[0, 0].item() == pytest.approx(32.0, abs=1e-9)
    # Looking along +y with +z up, world +x is to the right (larger pixel x).
    uv_x, _ = project(cams, target + torch.tensor([0.3, 0.0, 0.0], dtype=F64))
    assert uv_x[0, 0].item() > 32.0 + 1.0


def test_look_at_parallel_up_raises():
    with pytest.raises(CameraError, match="parallel to the up vector"):
        look_at(torch.tensor([0.0, 0.0, 5.0]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))


def test_resized_scales_intrinsics_and_keeps_relative_pixel_positions():
    eye = torch.tensor([1.0, -4.0, 2.0], dtype=F64)
    cams = Cameras(K=make(1).K, world_to_camera=look_at(eye, torch.zeros(3, dtype=F64), torch.tensor([0, 0, 1.0], dtype=F64)), width=64, height=48)
    small = cams.resized(32, 12)
    assert (small.width, small.height) == (32, 12)
    torch.testing.assert_close(small.K[0, 0], cams.K[0, 0] * 0.5)
    torch.testing.assert_close(small.K[0, 1], cams.K[0, 1] * 0.25)
    X = torch.tensor([0.3, 0.1, -0.2], dtype=F64)
    uv, _ = project(cams, X)
    uv_s, _ = project(small, X)
    torch.testing.assert_close(uv_s[0], uv[0] * torch.tensor([0.5, 0.25], dtype=F64))


def test_indexing_cat_and_times():
    cams = make(3, times=[0.0, 0.5, 1.0])
    assert cams[1].times.tolist() == [0.5]
    assert len(cams[0:2]) == 2
    both = Cameras.cat([cams, cams[2]])
    assert both.times.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert cams.with_times(0.25).times.tolist() == [0.25, 0.25, 0.25]
    with pytest.raises(CameraError, match="all or none"):
        Cameras.cat([cams, make(1)])
