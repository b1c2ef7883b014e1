"""Unit: a coloured triangle mesh of the scene at one time (``--format mesh``, ``.glb``/``.obj``/``.ply``).

TSDF fusion of rendered depth (research/export.md section 3): ``--views`` cameras on the upper
part of a sphere around the scene (elevations -10..75 degrees about its up axis, so a floor is
seen from above only) render colour, alpha and expected depth with the torch rasterizer; every
voxel of a grid over the opaque Gaussians is projected into every view and averages the
truncated signed distance ``clamp((depth - z) / trunc, -1, 1)`` (pixels with alpha < 0.5 count as
free space), and the colour where ``|sdf| < trunc``. The zero level set is extracted by surface
nets (:mod:`scene4d.formats.mesh`), components under 1 % of the faces dropped, decimated to
``--faces`` by vertex clustering. Plain torch + numpy: no open3d (it needs a Debian package and
its ScalableTSDFVolume integrates nothing in 0.20), no scikit-image.

Depth is the rasterizer's expected camera-space z of Gaussian centres, not ray hits: the
surface sits within about a splat's thickness of the truth (1 cm on the demo, as measured with
open3d's TSDF in the research note).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from renderers.ply import write_atomic

from ..formats import mesh as geo
from ..render import UsageError

NAME, SUFFIX, LOSSY = "mesh", ".glb", True
SUFFIXES = (".glb", ".obj", ".ply")
MAX_RES = 384


def disk_frame(F: np.ndarray) -> np.ndarray:
    return F


def _up_vector(up: str) -> np.ndarray:
    v = np.zeros(3)
    v["xyz".index(up[1])] = 1.0 if up[0] == "+" else -1.0
    return v


def view_cameras(centre: np.ndarray, radius: float, up: str, n: int, size: int, fov_deg: float = 50.0):
    """``n`` cameras on a spherical band (elevation -10..75 deg) looking at ``centre``."""
    import torch

    from cameras import Cameras, intrinsics_from_fov, look_at

    upv = _up_vector(up)
    a = np.array([1.0, 0, 0]) if abs(upv[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = np.cross(upv, a)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(upv, e1)
    i = np.arange(n) + 0.5
    s_lo, s_hi = math.sin(math.radians(-10)), math.sin(math.radians(75))
    h = s_lo + (s_hi - s_lo) * i / n  # uniform in area on the band
    phi = i * math.pi * (3 - math.sqrt(5))
    r = np.sqrt(1 - h * h)
    dirs = (np.cos(phi) * r)[:, None] * e1 + (np.sin(phi) * r)[:, None] * e2 + h[:, None] * upv
    dist = radius / math.sin(math.radians(fov_deg) / 2) * 1.05
    eye = torch.tensor(centre + dist * dirs, dtype=torch.float32)
    w2c = look_at(eye, torch.tensor(centre, dtype=torch.float32), torch.tensor(upv, dtype=torch.float32))
    K = intrinsics_from_fov(math.radians(fov_deg), size, size).expand(n, 3, 3).clone()
    return Cameras(K, w2c, size, size)


def fuse(g, up: str, *, views: int = 44, size: int = 256, voxel: float = 0.0, batch: int = 4):
    """TSDF fusion of ``views`` renders of Gaussians ``g`` -> (sdf, observed, colour, origin, voxel, timings)."""
    import torch

    from renderers import rasterize

    t0 = time.perf_counter()
    with torch.no_grad():
        keep = g.opacities > 0.1
        m = g.means[keep] if keep.sum() >= 8 else g.means
        lo = torch.quantile(m.float(), 0.001, dim=0).numpy().astype(np.float64)
        hi = torch.quantile(m.float(), 0.999, dim=0).numpy().astype(np.float64)
    ext = float((hi - lo).max())
    if ext <= 0:
        raise UsageError("mesh: the opaque Gaussians span no volume; nothing to mesh")
    voxel = voxel or ext / 192
    pad = 4 * voxel + 0.02 * ext
    lo, hi = lo - pad, hi + pad
    res = np.ceil((hi - lo) / voxel).astype(int) + 1
    if res.max() > MAX_RES:
        raise UsageError(f"mesh: --voxel {voxel:g} needs a {res.tolist()} grid; the limit is {MAX_RES} per side "
                         f"(use --voxel {ext / (MAX_RES - 16):.3g} or larger)")
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(hi - lo) / 2)
    cams = view_cameras(centre, radius, up, views, size)
    trunc = 3 * voxel
    grid = [torch.arange(r, dtype=torch.float32) for r in res]
    X = torch.stack(torch.meshgrid(*grid, indexing="ij"), -1).reshape(-1, 3) * voxel + torch.tensor(lo, dtype=torch.float32)
    nvox = X.shape[0]
    tsdf = torch.zeros(nvox)
    weight = torch.zeros(nvox)
    col = torch.zeros(nvox, 3)
    cw = torch.zeros(nvox)
    t_render = 0.0
    for s in range(0, views, batch):
        sub = cams[s:s + batch] if hasattr(cams, "__getitem__") else cams
        tr = time.perf_counter()
        with torch.no_grad():
            out = rasterize(g, sub, background=0.0, backend="torch")
        t_render += time.perf_counter() - tr
        for c in range(out.rgb.shape[0]):
            depth = out.depth[c, ..., 0]
            alpha = out.alpha[c, ..., 0]
            depth = torch.where(alpha > 0.5, depth, torch.full_like(depth, float("inf")))
            w2c = sub.world_to_camera[c]
            K = sub.K[c]
            xc = X @ w2c[:3, :3].T + w2c[:3, 3]
            z = xc[:, 2]
            zs = torch.where(z > 1e-6, z, torch.ones_like(z))
            u = K[0, 0] * xc[:, 0] / zs + K[0, 2]
            v = K[1, 1] * xc[:, 1] / zs + K[1, 2]
            ok = (z > 1e-6) & (u >= 0) & (u < size) & (v >= 0) & (v < size)
            ui = u.clamp(0, size - 1).long()
            vi = v.clamp(0, size - 1).long()
            d = depth[vi, ui]
            sdf = d - z
            upd = ok & (sdf > -trunc)
            val = (sdf / trunc).clamp(-1, 1)
            tsdf = torch.where(upd, (tsdf * weight + val) / (weight + 1), tsdf)
            weight = weight + upd.float()
            near = ok & (sdf.abs() < trunc)
            col = col + torch.where(near[:, None], out.rgb[c][vi, ui], torch.zeros(1))
            cw = cw + near.float()
    shape = tuple(int(r) for r in res)
    colour = (col / cw.clamp_min(1)[:, None]).reshape(*shape, 3).numpy()
    timings = {"render_s": round(t_render, 2), "fuse_s": round(time.perf_counter() - t0 - t_render, 2)}
    return (tsdf.reshape(shape).numpy().astype(np.float64), (weight > 0).reshape(shape).numpy(), colour, lo,
            voxel, timings)


def extract(g, up: str, *, views: int = 44, size: int = 256, voxel: float = 0.0, faces: int = 0):
    """(vertices, faces, colours, info) of the scene's surface (in the scene frame)."""
    sdf, observed, colour, origin, voxel, info = fuse(g, up, views=views, size=size, voxel=voxel)
    t0 = time.perf_counter()
    v, f = geo.surface_nets(sdf, observed, origin, voxel)
    idx = np.clip(np.round((v - origin) / voxel).astype(int), 0, np.array(sdf.shape) - 1)
    c = colour[tuple(idx.T)]
    v, f, c = geo.keep_large_components(v, f, c)
    n_full = len(f)
    v, f, c = geo.decimate(v, f, c, faces)
    info.update({"extract_s": round(time.perf_counter() - t0, 2), "voxel": voxel, "grid": list(sdf.shape),
                 "views": views, "view_size": size, "faces_before_decimation": n_full, "faces": len(f),
                 "vertices": len(v)})
    return v, f, c, info


def write_from_source(src, out: Path, opts, F, t: float) -> dict:
    import torch

    if out.suffix.lower() not in SUFFIXES:
        raise UsageError(f"--out {out}: a mesh is written as {', '.join(SUFFIXES)}")
    if opts.views < 4 or opts.view_size < 32 or opts.faces < 0:
        raise UsageError("mesh: --views must be >= 4, --view-size >= 32 and --faces >= 0")
    with torch.no_grad():
        g = src.scene.at(t)
    if len(g) == 0:
        raise UsageError(f"{src.path}: the scene has no Gaussians at t={t:g}; nothing to export")
    torch_threads = torch.get_num_threads()
    v, f, c, info = extract(g, src.up, views=opts.views, size=opts.view_size, voxel=opts.voxel, faces=opts.faces)
    geo.check_mesh(v, f, str(out))
    v = v @ np.asarray(F, np.float64).T
    if np.linalg.det(F) < 0:  # a mirror turns the winding inside out
        f = f[:, ::-1]
    suffix = out.suffix.lower()
    if suffix == ".glb":
        write_atomic(out, [geo.glb_bytes(v, f, c)])
    elif suffix == ".obj":
        write_atomic(out, [geo.obj_bytes(v, f, c)])
    else:
        from renderers.ply import write_ply

        write_ply(out, geo.ply_elements(v, f, c))
    info["torch_threads"] = torch_threads
    return {"format_version": f"triangle mesh ({suffix[1:]}), vertex colours", "sh_degree_written": 0,
            "n_gaussians": len(g), "mesh": info, "errors": "see the tests' accuracy figures (README)"}
