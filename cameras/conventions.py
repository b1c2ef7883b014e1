"""Every axis flip between scene4d's camera convention and the others, in one place.

Ours (see :mod:`cameras.camera`): ``world_to_camera`` (..., 4, 4) with **OpenCV** camera axes,
+x right, +y down, +z forward, and pixel intrinsics ``K`` (..., 3, 3).

Others handled here:

* **OpenGL / Blender** camera-to-world (NeRF synthetic, D-NeRF ``transforms.json``):
  camera axes +x right, +y up, +z backward (the camera looks along its -z).
* **nerfstudio** ``transforms.json`` and ``camera_path.json``: the same OpenGL camera-to-world,
  sometimes stored as a 3x4 matrix.
* **COLMAP** ``images.txt``: ``qvec = (qw, qx, qy, qz)`` and ``tvec`` of the world-to-camera
  transform, with the same OpenCV camera axes as ours (so no flip, only a representation change).

Quaternions are **wxyz** throughout scene4d (COLMAP's and the renderers' order); roma uses xyzw,
so the two helpers here are the only places that reorder them.

Every function is batched over leading dims, takes and returns torch tensors, is differentiable
and never modifies its inputs.
"""

from __future__ import annotations

from typing import Tuple, Union

import torch
from torch import Tensor

from .camera import rigid_inverse

__all__ = [
    "opengl_c2w_to_opencv_w2c",
    "opencv_w2c_to_opengl_c2w",
    "nerfstudio_c2w_to_opencv_w2c",
    "opencv_w2c_to_nerfstudio_c2w",
    "colmap_qvec_tvec_to_opencv_w2c",
    "opencv_w2c_to_colmap_qvec_tvec",
    "quat_wxyz_to_rotmat",
    "rotmat_to_quat_wxyz",
    "intrinsics_to_K",
    "K_to_fov",
]

Number = Union[float, int, Tensor]


def _to_homogeneous(T: Tensor, name: str) -> Tensor:
    """(..., 3, 4) or (..., 4, 4) -> (..., 4, 4) with last row [0, 0, 0, 1] (a new tensor for 3x4)."""
    if not isinstance(T, Tensor):
        raise TypeError(f"{name}: expected a torch tensor, got {type(T).__name__}")
    if T.dim() < 2 or T.shape[-1] != 4 or T.shape[-2] not in (3, 4):
        raise ValueError(f"{name}: expected shape (..., 3, 4) or (..., 4, 4), got {tuple(T.shape)}")
    if T.shape[-2] == 4:
        return T
    bottom = torch.zeros(T.shape[:-2] + (1, 4), dtype=T.dtype, device=T.device)
    bottom[..., 0, 3] = 1
    return torch.cat([T, bottom], dim=-2)


def _yz_flip(like: Tensor) -> Tensor:
    """diag(1, -1, -1, 1): turns OpenGL camera axes into OpenCV ones and back (its own inverse)."""
    return torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=like.dtype, device=like.device))


# --------------------------------------------------------------------------- OpenGL / Blender
def opengl_c2w_to_opencv_w2c(c2w: Tensor) -> Tensor:
    """OpenGL/Blender camera-to-world (..., 3|4, 4) -> OpenCV world-to-camera (..., 4, 4).

    The camera's y and z axes are negated (right-multiplying the camera-to-world by
    diag(1, -1, -1, 1) flips the columns that hold them), then the rigid transform is inverted.
    """
    c2w = _to_homogeneous(c2w, "opengl_c2w_to_opencv_w2c")
    return rigid_inverse(c2w @ _yz_flip(c2w))


def opencv_w2c_to_opengl_c2w(w2c: Tensor) -> Tensor:
    """OpenCV world-to-camera (..., 4, 4) -> OpenGL/Blender camera-to-world (..., 4, 4)."""
    w2c = _to_homogeneous(w2c, "opencv_w2c_to_opengl_c2w")
    return rigid_inverse(w2c) @ _yz_flip(w2c)


# --------------------------------------------------------------------------- nerfstudio
def nerfstudio_c2w_to_opencv_w2c(c2w: Tensor) -> Tensor:
    """nerfstudio camera-to-world (..., 3|4, 4) -> OpenCV world-to-camera (..., 4, 4).

    nerfstudio (``transforms.json`` ``transform_matrix`` and ``camera_path.json``
    ``camera_to_world``) uses the OpenGL camera convention, so this is exactly
    :func:`opengl_c2w_to_opencv_w2c`; the name only documents where the matrix came from.
    """
    return opengl_c2w_to_opencv_w2c(c2w)


def opencv_w2c_to_nerfstudio_c2w(w2c: Tensor) -> Tensor:
    """OpenCV world-to-camera (..., 4, 4) -> nerfstudio camera-to-world (..., 4, 4).

    Exactly :func:`opencv_w2c_to_opengl_c2w` (nerfstudio uses OpenGL camera axes).
    """
    return opencv_w2c_to_opengl_c2w(w2c)


# --------------------------------------------------------------------------- quaternions
def quat_wxyz_to_rotmat(q: Tensor) -> Tensor:
    """(..., 4) quaternions (w, x, y, z) -> (..., 3, 3) rotation matrices.

    The input is normalised first, so non-unit quaternions (e.g. raw Gaussian rotation
    parameters) give the rotation they represent rather than a scaled matrix.
    """
    if not isinstance(q, Tensor) or q.dim() < 1 or q.shape[-1] != 4:
        raise ValueError(f"quat_wxyz_to_rotmat: expected shape (..., 4), got {tuple(torch.as_tensor(q).shape)}")
    norm = q.norm(dim=-1, keepdim=True)
    if (norm.detach() < 1e-12).any():
        raise ValueError("quat_wxyz_to_rotmat: zero quaternion has no rotation")
    import roma  # imported on use: importing roma loads torch._dynamo (~2.5 s on every CLI call)

    q_xyzw = roma.quat_wxyz_to_xyzw(q / norm)
    return roma.unitquat_to_rotmat(q_xyzw)


def rotmat_to_quat_wxyz(R: Tensor) -> Tensor:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (w, x, y, z) with w >= 0.

    Uses roma's Markley/Shepperd method (picks the best-conditioned of four formulas, so it is
    accurate for 180 degree rotations too). ``q`` and ``-q`` are the same rotation; the sign is
    fixed so that w >= 0, which makes the output unique (up to w == 0 exactly).
    """
    if not isinstance(R, Tensor) or R.dim() < 2 or R.shape[-2:] != (3, 3):
        raise ValueError(f"rotmat_to_quat_wxyz: expected shape (..., 3, 3), got {tuple(torch.as_tensor(R).shape)}")
    import roma

    q = roma.quat_xyzw_to_wxyz(roma.rotmat_to_unitquat(R))
    sign = torch.where(q[..., :1] < 0, -torch.ones_like(q[..., :1]), torch.ones_like(q[..., :1]))
    return q * sign


# --------------------------------------------------------------------------- COLMAP
def colmap_qvec_tvec_to_opencv_w2c(qvec: Tensor, tvec: Tensor) -> Tensor:
    """COLMAP ``images.txt`` pose -> OpenCV world-to-camera (..., 4, 4).

    Args:
        qvec: (..., 4) world-to-camera rotation as (qw, qx, qy, qz); normalised here.
        tvec: (..., 3) world-to-camera translation.
    """
    qvec = torch.as_tensor(qvec)
    tvec = torch.as_tensor(tvec)
    if qvec.shape[-1:] != (4,) or tvec.shape[-1:] != (3,):
        raise ValueError(
            f"colmap_qvec_tvec_to_opencv_w2c: expected qvec (..., 4) and tvec (..., 3), got "
            f"{tuple(qvec.shape)} and {tuple(tvec.shape)}"
        )
    if not qvec.is_floating_point():
        qvec = qvec.to(torch.get_default_dtype())
    tvec = tvec.to(qvec.dtype)
    batch = torch.broadcast_shapes(qvec.shape[:-1], tvec.shape[:-1])
    R = quat_wxyz_to_rotmat(qvec.expand(batch + (4,)))
    top = torch.cat([R, tvec.expand(batch + (3,))[..., None]], dim=-1)
    bottom = torch.zeros(top.shape[:-2] + (1, 4), dtype=top.dtype, device=top.device)
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], dim=-2)


def opencv_w2c_to_colmap_qvec_tvec(w2c: Tensor) -> Tuple[Tensor, Tensor]:
    """OpenCV world-to-camera (..., 3|4, 4) -> COLMAP ``(qvec (..., 4) wxyz with qw >= 0, tvec (..., 3))``."""
    w2c = _to_homogeneous(w2c, "opencv_w2c_to_colmap_qvec_tvec")
    return rotmat_to_quat_wxyz(w2c[..., :3, :3]), w2c[..., :3, 3]


# --------------------------------------------------------------------------- intrinsics
def intrinsics_to_K(fx: Number, fy: Number, cx: Number, cy: Number) -> Tensor:
    """Pixel intrinsics ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``, shape (..., 3, 3).

    Scalars or tensors broadcast together; python numbers give the default float dtype.
    """
    ts = [v for v in (fx, fy, cx, cy) if isinstance(v, Tensor)]
    dtype = ts[0].dtype if ts and ts[0].is_floating_point() else torch.get_default_dtype()
    device = ts[0].device if ts else None
    fx, fy, cx, cy = torch.broadcast_tensors(
        *(torch.as_tensor(v, dtype=dtype, device=device) for v in (fx, fy, cx, cy))
    )
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    rows = [
        torch.stack([fx, zero, cx], dim=-1),
        torch.stack([zero, fy, cy], dim=-1),
        torch.stack([zero, zero, one], dim=-1),
    ]
    return torch.stack(rows, dim=-2)


def K_to_fov(K: Tensor, width: int, height: int) -> Tuple[Tensor, Tensor]:
    """(fov_x, fov_y) in radians, each (...,), of pixel intrinsics ``K`` (..., 3, 3).

    The field of view of the full image ``2 atan(size / (2 f))``; exact for a centred principal
    point (the convention of camera_path.json and NeRF transforms.json).
    """
    if not isinstance(K, Tensor) or K.dim() < 2 or K.shape[-2:] != (3, 3):
        raise ValueError(f"K_to_fov: expected K of shape (..., 3, 3), got {tuple(torch.as_tensor(K).shape)}")
    if width <= 0 or height <= 0:
        raise ValueError(f"K_to_fov: image size must be positive, got {width}x{height}")
    fov_x = 2 * torch.atan(0.5 * width / K[..., 0, 0])
    fov_y = 2 * torch.atan(0.5 * height / K[..., 1, 1])
    return fov_x, fov_y

