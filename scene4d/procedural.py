"""Procedural scenes with known geometry: the embedded defaults and the tests' ground truth.

``python -m scene4d.procedural assets/`` regenerates the shipped assets (bit-for-bit with one torch
build; another build's ``acos``/``sin`` may round a few coordinates one float32 ulp apart).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from renderers import Gaussians, rgb_to_sh0


def _quat_from_normal(n: torch.Tensor) -> torch.Tensor:
    """(N, 3) unit normals -> (N, 4) wxyz quaternions rotating +z onto them."""
    z = torch.tensor([0.0, 0.0, 1.0], dtype=n.dtype)
    axis = torch.linalg.cross(z.expand_as(n), n)
    s = axis.norm(dim=-1, keepdim=True)
    c = (n * z).sum(-1, keepdim=True)
    half = torch.atan2(s, c) / 2
    axis = torch.where(s > 1e-8, axis / s.clamp_min(1e-8), torch.tensor([1.0, 0.0, 0.0], dtype=n.dtype))
    return torch.cat([torch.cos(half), torch.sin(half) * axis], -1)


def surface_splats(points, normals, colors, size: float, thickness_ratio: float = 0.15, opacity: float = 0.95) -> Gaussians:
    """Flat discs lying on a surface: one Gaussian per sample, sh degree 0."""
    n = points.shape[0]
    quats = _quat_from_normal(normals)
    scales = torch.tensor([size, size, size * thickness_ratio]).expand(n, 3).clone()
    return Gaussians(points, quats, scales, torch.full((n,), opacity), rgb_to_sh0(colors)[:, None, :])


def sphere_samples(n: int, center, radius: float):
    """Fibonacci-sphere points and outward normals."""
    i = torch.arange(n, dtype=torch.float32) + 0.5
    phi = torch.acos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    nrm = torch.stack([torch.cos(theta) * torch.sin(phi), torch.sin(theta) * torch.sin(phi), torch.cos(phi)], -1)
    return torch.as_tensor(center, dtype=torch.float32) + radius * nrm, nrm


def checker_color(u, v, c1, c2, cells: float):
    pick = ((torch.floor(u * cells) + torch.floor(v * cells)) % 2)[:, None]
    return torch.as_tensor(c1) * (1 - pick) + torch.as_tensor(c2) * pick


def demo_static_scene() -> Gaussians:
    """A checkered floor with three striped spheres: a small static splat scene (z up)."""
    parts = []
    # floor: a 2.4 x 2.4 checkerboard at z = 0
    k = 48
    u, v = torch.meshgrid(torch.linspace(-1.2, 1.2, k), torch.linspace(-1.2, 1.2, k), indexing="ij")
    pts = torch.stack([u.flatten(), v.flatten(), torch.zeros(k * k)], -1)
    col = checker_color(u.flatten() + 1.2, v.flatten() + 1.2, (0.85, 0.85, 0.8), (0.25, 0.3, 0.4), 2.5)
    parts.append(surface_splats(pts, torch.tensor([[0.0, 0.0, 1.0]]).expand(k * k, 3), col, 2.4 / k * 0.75))
    spheres = [((0.0, 0.0, 0.45), 0.45, (0.9, 0.25, 0.2), (1.0, 0.85, 0.3)),
               ((0.75, -0.45, 0.25), 0.25, (0.2, 0.55, 0.95), (0.95, 0.95, 0.95)),
               ((-0.7, 0.5, 0.3), 0.3, (0.25, 0.8, 0.35), (0.1, 0.2, 0.1))]
    for center, r, c1, c2 in spheres:
        n = int(2600 * (r / 0.45) ** 2)
        p, nrm = sphere_samples(n, center, r)
        # latitude stripes and a longitude seam make rotation and parallax visible
        lat = torch.asin(nrm[:, 2].clamp(-1, 1))
        lon = torch.atan2(nrm[:, 1], nrm[:, 0])
        col = checker_color(lat / math.pi + 0.5, lon / (2 * math.pi) + 0.5, c1, c2, 6.0)
        parts.append(surface_splats(p, nrm, col, r * math.sqrt(4 * math.pi / n) * 0.7))
    return Gaussians.cat(parts)


DEMO_FLYBY = [  # (eye, target) of each keyframe, z up: in high, down between the spheres, out low
    ((3.2, -2.6, 2.4), (0.0, 0.0, 0.3)),
    ((1.9, -1.2, 1.1), (0.2, -0.1, 0.35)),
    ((0.1, -1.5, 0.45), (0.0, 0.0, 0.45)),
    ((-1.6, -0.9, 0.6), (-0.2, 0.2, 0.35)),
    ((-2.6, 1.9, 1.5), (0.0, 0.0, 0.3)),
]


def demo_camera_path(width: int = 480, height: int = 270, fps: float = 30.0, seconds: float = 4.0,
                     fov_deg: float = 50.0) -> dict:
    """A keyframed ``camera_path.json`` (nerfstudio viewer format, row-major OpenGL camera-to-world)
    flying through :func:`demo_static_scene`: a sample to copy, edit and render with ``--path``."""
    from cameras import look_at, opencv_w2c_to_opengl_c2w

    keys = []
    for eye, target in DEMO_FLYBY:
        w2c = look_at(torch.tensor(eye, dtype=torch.float64), torch.tensor(target, dtype=torch.float64),
                      torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
        c2w = opencv_w2c_to_opengl_c2w(w2c)
        keys.append({"matrix": [round(float(x), 6) for x in c2w.flatten()], "fov": fov_deg, "aspect": width / height})
    return {"camera_type": "perspective", "render_width": width, "render_height": height, "fps": fps,
            "seconds": seconds, "is_cycle": False, "keyframes": keys}


def moving_spheres_scene(n_per_sphere: int = 500):
    """An exact 4D scene (a :class:`scene4d.field.Scene4D` with a motion-nodes field): a
    red/yellow striped sphere (radius 0.3) sliding from x = -0.35 to x = +0.35 while turning half a
    turn about z, and a blue/white one (radius 0.25) rising from z = -0.3 to z = +0.3, one node
    each with two time knots, so the motion between knots is exactly the screw motion. A target
    for ``generate --prior analytic:SCENE`` whose every Gaussian's path is known."""
    from .deformation import MotionNodesConfig
    from .field import Scene4D

    spheres = [((-0.35, -0.3, 0.0), 0.3, (0.9, 0.25, 0.2), (1.0, 0.85, 0.3)),
               ((0.0, 0.4, -0.3), 0.25, (0.2, 0.45, 0.95), (0.95, 0.95, 0.95))]
    parts = []
    for center, r, c1, c2 in spheres:
        p, nrm = sphere_samples(n_per_sphere, center, r)
        lon = torch.atan2(nrm[:, 1], nrm[:, 0])
        lat = torch.asin(nrm[:, 2].clamp(-1, 1))
        col = checker_color(lat / math.pi + 0.5, lon / (2 * math.pi) + 0.5, c1, c2, 4.0)
        parts.append(surface_splats(p, nrm, col, r * math.sqrt(4 * math.pi / n_per_sphere) * 0.8, opacity=0.98))
    g = Gaussians.cat(parts)
    params = {"means": g.means, "quats": g.quats, "log_scales": torch.log(g.scales),
              "opacity_logits": torch.logit(g.opacities), "sh_dc": g.sh[:, :1], "sh_rest": g.sh[:, 1:]}
    cfg = MotionNodesConfig(nodes=2, time_resolution=2, learn_nodes=False, bounds_radius=1.0)
    scene = Scene4D(params, cfg, sh_degree=0)
    f = scene.deformation
    with torch.no_grad():
        f.centers.copy_(torch.tensor([s[0] for s in spheres]))
        f.log_radii.copy_(torch.log(torch.tensor([0.12, 0.12])))  # far apart: each sphere follows its node
        f.translations.zero_()
        f.rotvecs.zero_()
        f.translations[0, 1] = torch.tensor([0.7, 0.0, 0.0])
        f.rotvecs[0, 1] = torch.tensor([0.0, 0.0, math.pi / 2])
        f.translations[1, 1] = torch.tensor([0.0, 0.0, 0.6])
    return scene


def main(argv=None) -> None:
    import json

    from renderers.splat_io import write_ply

    out = Path((argv or sys.argv[1:] or ["assets"])[0])
    path = write_ply(out / "demo_splat.ply", demo_static_scene())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    path = out / "demo_flyby_camera_path.json"
    path.write_text(json.dumps(demo_camera_path(), indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
