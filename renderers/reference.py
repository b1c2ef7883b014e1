"""Brute-force per-pixel rasterizer: the slow, obvious twin of the tile rasterizers.

Every Gaussian is evaluated at every pixel, Gaussians are sorted by depth, and pixels are blended
with the same rules as :mod:`renderers.torch_backend` (skip below ``alpha_min``, stop before
transmittance reaches ``transmittance_min``). Plain autograd, a Python loop over the (few)
Gaussians: use it only on small scenes, in tests.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from cameras import Cameras

from .gaussians import Gaussians, eval_sh, quat_to_rotmat


def rasterize_bruteforce(
    gaussians: Gaussians,
    cameras: Cameras,
    *,
    background: Optional[Tensor] = None,
    sh_degree: Optional[int] = None,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    alpha_min: float = 1.0 / 255.0,
    alpha_max: float = 0.999,
    transmittance_min: float = 1e-4,
):
    """Returns rgb (C,H,W,3), alpha (C,H,W,1), depth (C,H,W,1)."""
    H, W = cameras.height, cameras.width
    degree = gaussians.sh_degree if sh_degree is None else sh_degree
    dt = gaussians.dtype
    jj, ii = torch.meshgrid(torch.arange(W, dtype=dt), torch.arange(H, dtype=dt), indexing="xy")
    px, py = jj + 0.5, ii + 0.5  # (H, W)
    rgbs, alphas, depths = [], [], []
    for c in range(len(cameras)):
        w2c = cameras.world_to_camera[c]
        K = cameras.K[c]
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        T = torch.ones(H, W, dtype=dt)
        done = torch.zeros(H, W, dtype=torch.bool)
        acc_rgb = torch.zeros(H, W, 3, dtype=dt)
        acc_d = torch.zeros(H, W, dtype=dt)
        center = -w2c[:3, :3].T @ w2c[:3, 3]
        order = []
        for n in range(len(gaussians)):
            p = w2c[:3, :3] @ gaussians.means[n] + w2c[:3, 3]
            order.append((float(p[2].detach()), n, p))
        order.sort(key=lambda e: e[0])
        for z_val, n, p in order:
            if z_val <= near_plane:
                continue
            x, y, z = p
            # EWA Jacobian at the frustum-clamped position (as gsplat's persp_proj)
            limx_p = (W - cx) / fx + 0.3 * 0.5 * W / fx
            limx_n = cx / fx + 0.3 * 0.5 * W / fx
            limy_p = (H - cy) / fy + 0.3 * 0.5 * H / fy
            limy_n = cy / fy + 0.3 * 0.5 * H / fy
            tx = z * torch.clamp(x / z, -limx_n, limx_p)
            ty = z * torch.clamp(y / z, -limy_n, limy_p)
            J = torch.stack(
                [torch.stack([fx / z, 0 * z, -fx * tx / z**2]), torch.stack([0 * z, fy / z, -fy * ty / z**2])]
            )
            Rg = quat_to_rotmat(gaussians.quats[n])
            S = torch.diag(gaussians.scales[n])
            cov = Rg @ S @ S @ Rg.T
            Rc = w2c[:3, :3]
            cov2 = J @ Rc @ cov @ Rc.T @ J.T + eps2d * torch.eye(2, dtype=dt)
            if torch.linalg.det(cov2) <= 0:
                continue
            inv = torch.linalg.inv(cov2)
            mx, my = fx * x / z + cx, fy * y / z + cy
            dx, dy = px - mx, py - my
            sigma = 0.5 * (inv[0, 0] * dx * dx + inv[1, 1] * dy * dy) + inv[0, 1] * dx * dy
            o = gaussians.opacities[n]
            if o < alpha_min:
                continue
            alpha = torch.clamp_max(o * torch.exp(-sigma), alpha_max)
            color = eval_sh(degree, gaussians.sh[n : n + 1], (gaussians.means[n] - center)[None])[0]
            skip = (sigma < 0) | (alpha < alpha_min) | done
            next_T = T * (1 - alpha)
            stop = (next_T <= transmittance_min) & ~skip
            done = done | stop
            use = ~skip & ~stop
            w = torch.where(use, alpha * T, torch.zeros_like(alpha))
            acc_rgb = acc_rgb + w[..., None] * color
            acc_d = acc_d + w * z
            T = torch.where(use, next_T, T)
        a = 1 - T
        if background is not None:
            bg = torch.as_tensor(background, dtype=dt).reshape(-1, 3)
            acc_rgb = acc_rgb + T[..., None] * bg[min(c, bg.shape[0] - 1)]
        rgbs.append(acc_rgb)
        alphas.append(a[..., None])
        depths.append((acc_d / a.clamp_min(1e-10))[..., None])
    return torch.stack(rgbs), torch.stack(alphas), torch.stack(depths)
