"""Batched pinhole cameras in one convention.

The one convention of scene4d (written here, once):

* ``world_to_camera`` (C, 4, 4) maps homogeneous world points to camera space with **OpenCV axes**:
  +x right, +y down, +z forward (into the scene).
* ``K`` (C, 3, 3) holds **pixel** intrinsics ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``; pixel ``(i, j)``
  (row i, column j) covers ``[j, j+1) x [i, i+1)`` so its centre is ``(j + 0.5, i + 0.5)``.
* ``width`` / ``height`` are shared by the batch (one image size per rasterize call).
* ``times`` (C,) optional, the scene time in [0, 1] each camera looks at.

Conversions to other conventions live in :mod:`cameras.conventions`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import torch
from torch import Tensor


class CameraError(ValueError):
    """Cameras that cannot be used as given (shape, non-rotation, non-finite values...)."""


@dataclass(frozen=True)
class Cameras:
    """C pinhole cameras sharing one image size.

    Attributes:
        K: (C, 3, 3) pixel intrinsics.
        world_to_camera: (C, 4, 4) rigid world->camera transforms, OpenCV axes.
        width: image width in pixels.
        height: image height in pixels.
        times: optional (C,) scene times in [0, 1].
    """

    K: Tensor
    world_to_camera: Tensor
    width: int
    height: int
    times: Optional[Tensor] = None

    def __post_init__(self) -> None:
        K, w2c = self.K, self.world_to_camera
        if not isinstance(K, Tensor) or not isinstance(w2c, Tensor):
            raise CameraError("Cameras.K and Cameras.world_to_camera must be torch tensors")
        if K.dim() == 2:
            object.__setattr__(self, "K", K := K[None])
        if w2c.dim() == 2:
            object.__setattr__(self, "world_to_camera", w2c := w2c[None])
        if K.shape[-2:] != (3, 3) or K.dim() != 3:
            raise CameraError(f"Cameras.K must have shape (C, 3, 3), got {tuple(K.shape)}")
        if w2c.shape[-2:] != (4, 4) or w2c.dim() != 3:
            raise CameraError(
                f"Cameras.world_to_camera must have shape (C, 4, 4), got {tuple(w2c.shape)}"
            )
        if K.shape[0] != w2c.shape[0]:
            raise CameraError(
                f"Cameras: K has {K.shape[0]} cameras but world_to_camera has {w2c.shape[0]}"
            )
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise CameraError(f"Cameras: image size must be positive, got {self.width}x{self.height}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        if self.times is not None:
            t = torch.as_tensor(self.times, dtype=w2c.dtype, device=w2c.device).reshape(-1)
            if t.shape[0] != w2c.shape[0]:
                raise CameraError(f"Cameras: {t.shape[0]} times for {w2c.shape[0]} cameras")
            object.__setattr__(self, "times", t)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self, atol: float = 1e-3) -> None:
        """Raise :class:`CameraError` unless every camera is finite, rigid and has positive focal."""
        with torch.no_grad():
            K = self.K.detach()
            w2c = self.world_to_camera.detach()
            bad = ~torch.isfinite(K).all(dim=(1, 2)) | ~torch.isfinite(w2c).all(dim=(1, 2))
            if bad.any():
                raise CameraError(f"Cameras: non-finite values in camera(s) {_idx(bad)}")
            if (K[:, 0, 0] <= 0).any() or (K[:, 1, 1] <= 0).any():
                raise CameraError(
                    f"Cameras: focal lengths must be positive (camera(s) "
                    f"{_idx((K[:, 0, 0] <= 0) | (K[:, 1, 1] <= 0))})"
                )
            R = w2c[:, :3, :3].double()
            eye = torch.eye(3, dtype=R.dtype, device=R.device)
            ortho_err = (R.transpose(1, 2) @ R - eye).abs().amax(dim=(1, 2))
            det = torch.linalg.det(R)
            bad = (ortho_err > atol) | ((det - 1).abs() > atol)
            if bad.any():
                i = int(torch.nonzero(bad)[0])
                raise CameraError(
                    f"Cameras: world_to_camera[{i}] is not a rigid transform (rotation part has "
                    f"|R^T R - I| = {float(ortho_err[i]):.3g}, det = {float(det[i]):.4f}); "
                    "pass a proper rotation (no scale, no reflection). If this is an OpenGL/Blender "
                    "camera-to-world matrix, convert it with "
                    "cameras.conventions.opengl_c2w_to_opencv_w2c()."
                )
            last = w2c[:, 3, :]
            expect = torch.tensor([0, 0, 0, 1], dtype=last.dtype, device=last.device)
            if ((last - expect).abs() > atol).any():
                raise CameraError("Cameras: last row of world_to_camera must be [0, 0, 0, 1]")

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return self.world_to_camera.shape[0]

    def __getitem__(self, idx) -> "Cameras":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1) if idx != -1 else slice(-1, None)
        K, w2c = self.K[idx], self.world_to_camera[idx]
        if K.ndim != 3 or w2c.ndim != 3 or K.shape[0] != w2c.shape[0]:
            raise CameraError(f"Cameras[{idx!r}]: an index must select cameras (got K {tuple(K.shape)}, "
                              f"world_to_camera {tuple(w2c.shape)})")
        # a selection of validated cameras is valid: no second check (a training step indexes its
        # cameras every step, and the check's determinants cost ~2 % of a CPU step)
        sub = object.__new__(Cameras)
        for name, v in (("K", K), ("world_to_camera", w2c), ("width", self.width), ("height", self.height),
                        ("times", None if self.times is None else self.times[idx])):
            object.__setattr__(sub, name, v)
        return sub

    @property
    def device(self) -> torch.device:
        return self.world_to_camera.device

    @property
    def dtype(self) -> torch.dtype:
        return self.world_to_camera.dtype

    @property
    def camera_to_world(self) -> Tensor:
        """(C, 4, 4) camera->world (OpenCV axes); the closed-form rigid inverse."""
        return rigid_inverse(self.world_to_camera)

    @property
    def centers(self) -> Tensor:
        """(C, 3) camera centres in world space."""
        R = self.world_to_camera[:, :3, :3]
        t = self.world_to_camera[:, :3, 3]
        return -(R.transpose(1, 2) @ t[..., None])[..., 0]

    @property
    def fov_y(self) -> Tensor:
        """(C,) vertical field of view in radians."""
        return 2 * torch.atan(0.5 * self.height / self.K[:, 1, 1])

    def to(self, device=None, dtype=None) -> "Cameras":
        kw = {}
        if device is not None:
            kw["device"] = device
        if dtype is not None:
            kw["dtype"] = dtype
        return Cameras(
            K=self.K.to(**kw),
            world_to_camera=self.world_to_camera.to(**kw),
            width=self.width,
            height=self.height,
            times=None if self.times is None else self.times.to(**kw),
        )

    def with_times(self, times) -> "Cameras":
        t = torch.as_tensor(times, dtype=self.dtype, device=self.device).reshape(-1)
        if t.numel() == 1 and len(self) > 1:
            t = t.expand(len(self)).clone()
        return replace(self, times=t)

    def resized(self, width: int, height: int) -> "Cameras":
        """Same cameras for a different image size: intrinsics scaled per axis."""
        sx, sy = width / self.width, height / self.height
        scale = torch.tensor([[sx, sx, sx], [sy, sy, sy], [1.0, 1.0, 1.0]], dtype=self.dtype, device=self.device)
        return replace(self, K=self.K * scale, width=int(width), height=int(height))

    @staticmethod
    def cat(cams: "list[Cameras]") -> "Cameras":
        if not cams:
            raise CameraError("Cameras.cat needs at least one Cameras")
        w, h = cams[0].width, cams[0].height
        if any(c.width != w or c.height != h for c in cams):
            raise CameraError("Cameras.cat: all cameras must share one image size")
        has_t = [c.times is not None for c in cams]
        if any(has_t) and not all(has_t):
            raise CameraError("Cameras.cat: either all or none of the cameras carry times")
        return Cameras(
            K=torch.cat([c.K for c in cams]),
            world_to_camera=torch.cat([c.world_to_camera for c in cams]),
            width=w,
            height=h,
            times=torch.cat([c.times for c in cams]) if all(has_t) else None,
        )


def _idx(mask: Tensor) -> list:
    return torch.nonzero(mask).flatten().tolist()[:10]


def rigid_inverse(T: Tensor) -> Tensor:
    """Inverse of (..., 4, 4) rigid transforms, in closed form (differentiable)."""
    R = T[..., :3, :3]
    t = T[..., :3, 3:]
    Rt = R.transpose(-1, -2)
    top = torch.cat([Rt, -Rt @ t], dim=-1)
    bottom = torch.zeros_like(T[..., 3:, :])
    bottom[..., 3] = 1
    return torch.cat([top, bottom], dim=-2)


def intrinsics_from_fov(
    fov_y: float, width: int, height: int, *, fov_x: Optional[float] = None, dtype=torch.float32, device=None
) -> Tensor:
    """(3, 3) pixel intrinsics for a centred principal point; fovs in radians."""
    fy = 0.5 * height / math.tan(0.5 * fov_y)
    fx = fy if fov_x is None else 0.5 * width / math.tan(0.5 * fov_x)
    return torch.tensor(
        [[fx, 0.0, width / 2.0], [0.0, fy, height / 2.0], [0.0, 0.0, 1.0]], dtype=dtype, device=device
    )


def look_at(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """(..., 4, 4) world_to_camera (OpenCV axes) for cameras at ``eye`` looking at ``target``.

    ``up`` is the world's up direction; the camera's -y axis is aligned with it as far as possible.
    """
    eye, target, up = torch.broadcast_tensors(
        torch.as_tensor(eye), torch.as_tensor(target, dtype=torch.as_tensor(eye).dtype),
        torch.as_tensor(up, dtype=torch.as_tensor(eye).dtype),
    )
    z = target - eye
    z = z / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    x = torch.linalg.cross(z, up)
    xn = x.norm(dim=-1, keepdim=True)
    if (xn < 1e-8).any():
        raise CameraError("look_at: viewing direction is parallel to the up vector; pick another up")
    x = x / xn
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z], dim=-2)  # rows: camera axes in world coordinates
    t = -(R @ eye[..., None])[..., 0]
    T = torch.zeros(eye.shape[:-1] + (4, 4), dtype=eye.dtype, device=eye.device)
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1
    return T
