"""Gaussians at one instant: the input of every rasterize call.

Shapes: N Gaussians, K = (degree + 1)^2 spherical-harmonic coefficients per colour channel.
Values are *activated* (linear scales, opacities in [0, 1]); the raw optimiser parameters
(log-scales, logit opacities) live in :mod:`scene4d` and in splat files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814


class GaussianError(ValueError):
    """Gaussians that cannot be rendered as given (shapes, NaN values...)."""


def sh_degree_from_coeffs(k: int) -> int:
    d = int(round(math.sqrt(k))) - 1
    if (d + 1) ** 2 != k or not 0 <= d <= 3:
        raise GaussianError(f"SH colours must have 1, 4, 9 or 16 coefficients per channel, got {k}")
    return d


@dataclass(frozen=True)
class Gaussians:
    """N 3D Gaussians.

    Attributes:
        means: (N, 3) centres, world space.
        quats: (N, 4) rotations as quaternions (w, x, y, z); need not be normalised.
        scales: (N, 3) standard deviations along the rotated axes, linear (not log).
        opacities: (N,) in [0, 1] (not logit).
        sh: (N, K, 3) spherical-harmonic colour coefficients, K in {1, 4, 9, 16}; the
            rendered colour is ``max(SH(dir) + 0.5, 0)`` as in 3DGS/gsplat, so ``sh[:, 0] =
            (rgb - 0.5) / SH_C0`` gives a view-independent colour ``rgb``.
    """

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    sh: Tensor

    def __post_init__(self) -> None:
        n = self.means.shape[0] if self.means.dim() == 2 else -1
        checks = [
            ("means", self.means, (n, 3)),
            ("quats", self.quats, (n, 4)),
            ("scales", self.scales, (n, 3)),
            ("opacities", self.opacities, (n,)),
        ]
        for name, t, shape in checks:
            if not isinstance(t, Tensor):
                raise GaussianError(f"Gaussians.{name} must be a torch.Tensor, got {type(t).__name__}")
            if tuple(t.shape) != shape:
                raise GaussianError(
                    f"Gaussians.{name} must have shape {_fmt(shape)}, got {tuple(t.shape)}"
                )
        if self.sh.dim() != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3:
            raise GaussianError(f"Gaussians.sh must have shape (N={n}, K, 3), got {tuple(self.sh.shape)}")
        sh_degree_from_coeffs(self.sh.shape[1])

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_coeffs(self.sh.shape[1])

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    def validate(self) -> None:
        """Raise :class:`GaussianError` on non-finite values or out-of-range parameters."""
        with torch.no_grad():
            for name in ("means", "quats", "scales", "opacities", "sh"):
                t = getattr(self, name).detach()
                finite = torch.isfinite(t)
                if not finite.all():
                    rows = torch.nonzero(~finite.reshape(t.shape[0], -1).all(dim=1)).flatten()
                    raise GaussianError(
                        f"Gaussians.{name} has {int(rows.numel())} non-finite row(s) (NaN/inf), "
                        f"first at index {rows[:5].tolist()}; check the optimiser (learning rate) or "
                        "the file these Gaussians came from"
                    )
            if (self.scales.detach() < 0).any():
                raise GaussianError("Gaussians.scales must be non-negative (linear, not log-scales)")
            o = self.opacities.detach()
            if ((o < 0) | (o > 1)).any():
                raise GaussianError(
                    "Gaussians.opacities must lie in [0, 1] (pass sigmoid(logit), not the logit)"
                )
            qn = self.quats.detach().norm(dim=-1)
            if (qn < 1e-12).any():
                i = torch.nonzero(qn < 1e-12).flatten()[:5].tolist()
                raise GaussianError(f"Gaussians.quats has zero-length quaternions at {i}")

    def to(self, device=None, dtype=None) -> "Gaussians":
        kw = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        return Gaussians(*(getattr(self, f).to(**kw) for f in ("means", "quats", "scales", "opacities", "sh")))

    def __getitem__(self, idx) -> "Gaussians":
        return Gaussians(self.means[idx], self.quats[idx], self.scales[idx], self.opacities[idx], self.sh[idx])

    @staticmethod
    def empty(sh_degree: int = 0, dtype=torch.float32, device=None) -> "Gaussians":
        k = (sh_degree + 1) ** 2
        z = lambda *s: torch.zeros(*s, dtype=dtype, device=device)  # noqa: E731
        return Gaussians(z(0, 3), z(0, 4), z(0, 3), z(0), z(0, k, 3))

    @staticmethod
    def cat(items: "list[Gaussians]") -> "Gaussians":
        k = max(g.sh.shape[1] for g in items)
        sh = [torch.nn.functional.pad(g.sh, (0, 0, 0, k - g.sh.shape[1])) for g in items]
        return Gaussians(
            torch.cat([g.means for g in items]),
            torch.cat([g.quats for g in items]),
            torch.cat([g.scales for g in items]),
            torch.cat([g.opacities for g in items]),
            torch.cat(sh),
        )


def _fmt(shape) -> str:
    return "(" + ", ".join("N" if s == -1 else str(s) for s in shape) + ")"


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """Degree-0 SH coefficient giving view-independent colour ``rgb`` (any shape, last dim 3)."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: Tensor) -> Tensor:
    return sh0 * SH_C0 + 0.5


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """(..., 4) wxyz quaternions (normalised here) -> (..., 3, 3) rotation matrices."""
    q = quats / quats.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )
    return R.reshape(q.shape[:-1] + (3, 3))


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product of (..., 4) wxyz quaternions (rotation ``a`` after ``b``)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def covariances(quats: Tensor, scales: Tensor) -> Tensor:
    """(N, 3, 3) world covariances ``R S S R^T`` from (N, 4) wxyz quats and (N, 3) linear scales."""
    M = quat_to_rotmat(quats) * scales[..., None, :]
    return M @ M.transpose(-1, -2)


# Real spherical harmonics, the 3DGS/gsplat ordering and sign conventions.
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (
    -0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
    -0.4570457994644658, 1.445305721320277, -0.5900435899266435,
)


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """(..., 3) unit directions -> (..., (degree+1)^2) real SH basis values (3DGS convention)."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [
            _C2[0] * xy, _C2[1] * yz, _C2[2] * (2 * zz - xx - yy), _C2[3] * xz, _C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            _C3[0] * y * (3 * xx - yy),
            _C3[1] * xy * z,
            _C3[2] * y * (4 * zz - xx - yy),
            _C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            _C3[4] * x * (4 * zz - xx - yy),
            _C3[5] * z * (xx - yy),
            _C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def eval_sh(degree: int, sh: Tensor, dirs: Tensor) -> Tensor:
    """Colour ``max(SH(dir) + 0.5, 0)``.

    Args:
        degree: SH degree to use (<= the degree stored in ``sh``).
        sh: (N, K, 3) coefficients.
        dirs: (..., N, 3) viewing directions (camera -> Gaussian), any length.
    Returns:
        (..., N, 3) colours.
    """
    k = (degree + 1) ** 2
    d = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    basis = sh_basis(degree, d)  # (..., N, k)
    rgb = (basis[..., None] * sh[:, :k, :]).sum(dim=-2)
    return torch.clamp_min(rgb + 0.5, 0.0)
