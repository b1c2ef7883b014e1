"""Tiny procedural scenes shared by the tests: every value is known."""

from __future__ import annotations

import math

import torch

from cameras import Cameras, intrinsics_from_fov, look_at
from renderers import Gaussians


def random_gaussians(n: int, *, seed: int = 0, sh_degree: int = 1, dtype=torch.float64, extent: float = 1.0,
                     scale_range=(0.05, 0.25), opacity_range=(0.2, 0.9)) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    u = lambda *s: torch.rand(*s, generator=g, dtype=dtype)  # noqa: E731
    means = (u(n, 3) * 2 - 1) * extent
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    lo, hi = scale_range
    scales = torch.exp(math.log(lo) + u(n, 3) * (math.log(hi) - math.log(lo)))
    opac = opacity_range[0] + u(n) * (opacity_range[1] - opacity_range[0])
    k = (sh_degree + 1) ** 2
    sh = torch.randn(n, k, 3, generator=g, dtype=dtype) * 0.5
    sh[:, 1:] *= 0.3
    return Gaussians(means, quats, scales, opac, sh)


def ring_cameras(n: int, *, width: int = 32, height: int = 24, radius: float = 4.0, dtype=torch.float64,
                 fov_deg: float = 50.0, elevation: float = 0.3) -> Cameras:
    ang = torch.arange(n, dtype=dtype) * (2 * math.pi / max(n, 1)) + 0.3
    eye = torch.stack([radius * torch.cos(ang), radius * torch.sin(ang), torch.full_like(ang, radius * elevation)], -1)
    w2c = look_at(eye, torch.zeros(3, dtype=dtype), torch.tensor([0.0, 0.0, 1.0], dtype=dtype))
    K = intrinsics_from_fov(math.radians(fov_deg), width, height, dtype=dtype).expand(n, 3, 3).clone()
    K[:, 0, 2] += 0.37  # off-centre principal point: catches x/y and +0.5 convention slips
    K[:, 1, 2] -= 0.21
    return Cameras(K, w2c, width, height)


def spheres_on_floor(n_per_sphere: int = 400, floor_side: int = 32):
    """:func:`scene4d.procedural.moving_spheres_scene` (two spheres on known paths: one slides in x
    and turns, one rises in z) plus a static checkered floor entity at z = -0.6: a small 4D scene
    where the pixels that change with time are known."""
    from scene4d.procedural import checker_color, moving_spheres_scene, surface_splats

    scene = moving_spheres_scene(n_per_sphere)
    k = floor_side
    u, v = torch.meshgrid(torch.linspace(-1, 1, k), torch.linspace(-1, 1, k), indexing="ij")
    pts = torch.stack([u.flatten(), v.flatten(), torch.full((k * k,), -0.6)], -1)
    col = checker_color(u.flatten() + 1, v.flatten() + 1, (0.85, 0.85, 0.8), (0.25, 0.3, 0.4), 2.5)
    g = surface_splats(pts, torch.tensor([[0.0, 0.0, 1.0]]).expand(k * k, 3), col, 2.0 / k * 0.8)
    scene.add_entity("floor", None, {"means": g.means, "quats": g.quats, "log_scales": torch.log(g.scales),
                                     "opacity_logits": torch.logit(g.opacities), "sh_dc": g.sh[:, :1],
                                     "sh_rest": g.sh[:, 1:]})
    return scene
