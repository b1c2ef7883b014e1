"""Axis conventions: OpenGL/Blender, nerfstudio, COLMAP, quaternions, intrinsics."""

import math

import pytest
import roma
import torch

from cameras import (
    Cameras,
    K_to_fov,
    colmap_qvec_tvec_to_opencv_w2c,
    intrinsics_from_fov,
    intrinsics_to_K,
    nerfstudio_c2w_to_opencv_w2c,
    opencv_w2c_to_colmap_qvec_tvec,
    opencv_w2c_to_nerfstudio_c2w,
    opencv_w2c_to_opengl_c2w,
    opengl_c2w_to_opencv_w2c,
    quat_wxyz_to_rotmat,
    rotmat_to_quat_wxyz,
)

F64 = torch.float64


def random_rigid(*batch, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*batch, 4, generator=g, dtype=F64)
    T = torch.zeros(*batch, 4, 4, dtype=F64)
    T[..., :3, :3] = quat_wxyz_to_rotmat(q)
    T[..., :3, 3] = 3 * torch.randn(*batch, 3, generator=g, dtype=F64)
    T[..., 3, 3] = 1
    return T


def rot_z(deg: float) -> torch.Tensor:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=F64)


# ----------------------------------------------------------------------------- OpenGL
def test_opengl_round_trips_batched():
    T = random_rigid(2, 3)
    torch.testing.assert_close(opengl_c2w_to_opencv_w2c(opencv_w2c_to_opengl_c2w(T)), T, atol=1e-12, rtol=0)
    torch.testing.assert_close(opencv_w2c_to_opengl_c2w(opengl_c2w_to_opencv_w2c(T)), T, atol=1e-12, rtol=0)
    assert opengl_c2w_to_opencv_w2c(T).shape == (2, 3, 4, 4)


def test_blender_identity_camera_looks_down_negative_z():
    c2w = torch.eye(4, dtype=F64)
    w2c = opengl_c2w_to_opencv_w2c(c2w)
    torch.testing.assert_close(w2c, torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=F64)))
    K = intrinsics_from_fov(math.radians(50), 80, 60, dtype=F64)
    cams = Cameras(K=K, world_to_camera=w2c, width=80, height=60)

    def pix(X):
        Xc = (cams.world_to_camera[0] @ torch.tensor([*X, 1.0], dtype=F64))[:3]
        uv = K @ Xc
        return uv[:2] / uv[2], Xc[2].item()

    uv, depth = pix((0.0, 0.0, -2.0))
    torch.testing.assert_close(uv, torch.tensor([40.0, 30.0], dtype=F64))
    assert depth == pytest.approx(2.0)
    uv_up, _ = pix((0.0, 0.5, -2.0))  # Blender camera +y is up in the image
    assert uv_up[1].item() == pytest.approx(30.0 - 0.25 * K[1, 1].item())
    uv_right, _ = pix((0.5, 0.0, -2.0))
    assert uv_right[0].item() == pytest.approx(40.0 + 0.25 * K[0, 0].item())


def test_opengl_camera_centre_is_kept():
    c2w = random_rigid(4, seed=3)
    w2c = opengl_c2w_to_opencv_w2c(c2w)
    cams = Cameras(K=intrinsics_from_fov(1.0, 8, 8, dtype=F64).expand(4, 3, 3), world_to_camera=w2c, width=8, height=8)
    torch.testing.assert_close(cams.centers, c2w[:, :3, 3], atol=1e-12, rtol=0)
    # OpenCV forward (+z) is OpenGL backward (-z): third axis negated.
    torch.testing.assert_close(cams.camera_to_world[:, :3, 2], -c2w[:, :3, 2], atol=1e-12, rtol=0)


def test_inputs_not_mutated_and_gradients_flow():
    t = torch.tensor([1.0, 2.0, 3.0], dtype=F64, requires_grad=True)
    c2w = torch.cat([torch.cat([torch.eye(3, dtype=F64), t[:, None]], 1), torch.tensor([[0, 0, 0, 1.0]], dtype=F64)])
    before = c2w.detach().clone()
    w2c = opengl_c2w_to_opencv_w2c(c2w)
    # w2c translation = -diag(1, -1, -1) t
    torch.testing.assert_close(w2c[:3, 3].detach(), torch.tensor([-1.0, 2.0, 3.0], dtype=F64))
    w2c[:3, 3].sum().backward()
    torch.testing.assert_close(t.grad, torch.tensor([-1.0, 1.0, 1.0], dtype=F64))
    torch.testing.assert_close(c2w.detach(), before)


def test_nerfstudio_aliases_accept_3x4():
    c2w = random_rigid(5, seed=1)
    w2c4 = nerfstudio_c2w_to_opencv_w2c(c2w)
    w2c3 = nerfstudio_c2w_to_opencv_w2c(c2w[:, :3, :])
    torch.testing.assert_close(w2c3, w2c4)
    torch.testing.assert_close(w2c4, opengl_c2w_to_opencv_w2c(c2w))
    torch.testing.assert_close(opencv_w2c_to_nerfstudio_c2w(w2c4), c2w, atol=1e-12, rtol=0)
    assert w2c3.shape == (5, 4, 4)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"expected shape \(\.\.\., 3, 4\) or \(\.\.\., 4, 4\), got \(3, 3\)"):
        opengl_c2w_to_opencv_w2c(torch.eye(3))
    with pytest.raises(ValueError, match="qvec"):
        colmap_qvec_tvec_to_opencv_w2c(torch.ones(3), torch.zeros(3))


# ----------------------------------------------------------------------------- quaternions
def test_quaternion_known_values_and_order():
    s = math.sqrt(0.5)
    R = quat_wxyz_to_rotmat(torch.tensor([s, 0.0, 0.0, s], dtype=F64))  # 90 deg about z
    torch.testing.assert_close(R, rot_z(90), atol=1e-12, rtol=0)
    # Non-unit input is normalised (raw Gaussian rotation parameters).
    torch.testing.assert_close(quat_wxyz_to_rotmat(torch.tensor([2 * s, 0, 0, 2 * s], dtype=F64)), rot_z(90), atol=1e-12, rtol=0)
    q = rotmat_to_quat_wxyz(rot_z(90))
    torch.testing.assert_close(q, torch.tensor([s, 0.0, 0.0, s], dtype=F64), atol=1e-12, rtol=0)
    # 180 degrees about x: w = 0, the fragile case for naive trace formulas.
    q180 = rotmat_to_quat_wxyz(torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=F64)))
    torch.testing.assert_close(q180.abs(), torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=F64), atol=1e-12, rtol=0)


def test_quaternion_round_trip_and_sign():
    R = roma.random_rotmat(64, dtype=F64, generator=torch.Generator().manual_seed(0))
    q = rotmat_to_quat_wxyz(R)
    assert (q[:, 0] >= 0).all()
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(64, dtype=F64))
    torch.testing.assert_close(quat_wxyz_to_rotmat(q), R, atol=1e-12, rtol=0)
    torch.testing.assert_close(quat_wxyz_to_rotmat(-q), R, atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------- COLMAP
def test_colmap_known_example():
    s = math.sqrt(0.5)
    qvec = torch.tensor([s, 0.0, 0.0, s], dtype=F64)
    tvec = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    w2c = colmap_qvec_tvec_to_opencv_w2c(qvec, tvec)
    # x_cam = R x_world + t
    Xc = w2c @ torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=F64)
    torch.testing.assert_close(Xc, torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=F64), atol=1e-12, rtol=0)
    # -q is the same pose, and the inverse returns the canonical qw >= 0 form.
    torch.testing.assert_close(colmap_qvec_tvec_to_opencv_w2c(-qvec, tvec), w2c)
    q2, t2 = opencv_w2c_to_colmap_qvec_tvec(w2c)
    torch.testing.assert_close(q2, qvec, atol=1e-12, rtol=0)
    torch.testing.assert_close(t2, tvec)
    q3, _ = opencv_w2c_to_colmap_qvec_tvec(colmap_qvec_tvec_to_opencv_w2c(-qvec, tvec))
    assert q3[0].item() > 0


def test_colmap_round_trip_batched():
    T = random_rigid(3, 7, seed=2)
    q, t = opencv_w2c_to_colmap_qvec_tvec(T)
    assert q.shape == (3, 7, 4) and t.shape == (3, 7, 3)
    assert (q[..., 0] >= 0).all()
    torch.testing.assert_close(colmap_qvec_tvec_to_opencv_w2c(q, t), T, atol=1e-12, rtol=0)
    # one qvec broadcast over several translations
    w = colmap_qvec_tvec_to_opencv_w2c(q[0, 0], t[0])
    torch.testing.assert_close(w[:, :3, :3], T[0, 0, :3, :3].expand(7, 3, 3), atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------- intrinsics
def test_intrinsics_to_K_and_fov():
    K = intrinsics_to_K(100.0, 120.0, 31.5, 24.0)
    torch.testing.assert_close(K, torch.tensor([[100.0, 0, 31.5], [0, 120.0, 24.0], [0, 0, 1.0]]))
    Kb = intrinsics_to_K(torch.tensor([100.0, 200.0], dtype=F64), 120.0, 32.0, 24.0)
    assert Kb.shape == (2, 3, 3) and Kb.dtype == F64
    assert Kb[1, 0, 0].item() == 200.0 and Kb[1, 1, 1].item() == 120.0
    K2 = intrinsics_from_fov(math.radians(40), 64, 48, fov_x=math.radians(70), dtype=F64)
    fx, fy = K_to_fov(K2, 64, 48)
    assert fx.item() == pytest.approx(math.radians(70), abs=1e-12)
    assert fy.item() == pytest.approx(math.radians(40), abs=1e-12)
