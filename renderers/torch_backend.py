"""Tile-based Gaussian rasterizer in pure PyTorch (CPU and GPU), the reference backend.

Conventions follow gsplat (and through it the 3DGS paper, Kerbl et al. 2023):

* EWA splatting: ``cov2d = J W Sigma W^T J^T + eps2d * I`` with the 0.3 px low-pass dilation, the
  projection Jacobian evaluated at a position clamped to 1.3x the view frustum.
* Per pixel, Gaussians are blended front to back by camera-space depth with
  ``alpha = min(alpha_max, o * exp(-1/2 d^T Sigma2d^-1 d))``, skipped below 1/255; a pixel stops
  at the Gaussian that would take its transmittance to ``<= 1e-4`` (that one is not blended).
* Pixel centres are at ``(j + 0.5, i + 0.5)``.

The projection stage is plain autograd (so gradients reach Gaussians *and* the camera pose).
Compositing is one :class:`torch.autograd.Function` with a hand-written backward: forward and
backward both walk (tile, Gaussian) pairs in chunks of bounded size, so memory does not grow with
the number of pixels x Gaussians, and nothing loops over Gaussians or pixels in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .gaussians import covariances, eval_sh


@dataclass
class Projected:
    """Per (camera, Gaussian) screen-space quantities, shapes (C, N, ...)."""

    means2d: Tensor  # (C, N, 2) pixel coordinates
    conics: Tensor  # (C, N, 3) upper triangle (a, b, c) of the inverse 2D covariance
    depths: Tensor  # (C, N) camera-space z
    radii: Tensor  # (C, N, 2) int32 screen-space half extents; 0 = culled
    colors: Tensor  # (C, N, 3)


def project(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    sh: Tensor,
    sh_degree: int,
    world_to_camera: Tensor,
    K: Tensor,
    width: int,
    height: int,
    *,
    eps2d: float,
    near_plane: float,
    far_plane: float,
    alpha_min: float,
    radius_clip: float,
) -> Projected:
    """EWA projection of N Gaussians into C cameras (differentiable; culled ones get radius 0)."""
    R = world_to_camera[:, None, :3, :3]  # (C, 1, 3, 3)
    t = world_to_camera[:, None, :3, 3]  # (C, 1, 3)
    means_c = (R @ means[None, :, :, None])[..., 0] + t  # (C, N, 3)
    cov_c = R @ covariances(quats, scales)[None] @ R.transpose(-1, -2)  # (C, N, 3, 3)

    x, y, z = means_c.unbind(-1)
    in_depth = (z > near_plane) & (z < far_plane)
    # Culled Gaussians keep finite (unused) values so no inf/NaN leaks into the gradients.
    z_safe = torch.where(in_depth, z, torch.ones_like(z))
    fx, fy = K[:, None, 0, 0], K[:, None, 1, 1]
    cx, cy = K[:, None, 0, 2], K[:, None, 1, 2]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    rz = 1.0 / z_safe
    tx = z_safe * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x * rz))
    ty = z_safe * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y * rz))
    zero = torch.zeros_like(z)
    J = torch.stack(
        [fx * rz, zero, -fx * tx * rz * rz, zero, fy * rz, -fy * ty * rz * rz], dim=-1
    ).reshape(z.shape + (2, 3))
    cov2d = J @ cov_c @ J.transpose(-1, -2)
    a = cov2d[..., 0, 0] + eps2d
    b = 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0])
    c = cov2d[..., 1, 1] + eps2d
    det = a * c - b * b
    ok = in_depth & (det > 0)
    det_safe = torch.where(ok, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)

    with torch.no_grad():
        # Opacity-aware extent (gsplat; arXiv 2402.00525 B.2): beyond it alpha < alpha_min anyway.
        o = opacities.detach()[None].expand_as(z)
        ok = ok & (o >= alpha_min)
        extend = torch.sqrt(2.0 * torch.log(o.clamp_min(alpha_min) / alpha_min)).clamp_max(3.33)
        rx = torch.ceil(extend * torch.sqrt(a.detach().clamp_min(0)))
        ry = torch.ceil(extend * torch.sqrt(c.detach().clamp_min(0)))
        m = means2d.detach()
        ok = ok & ((rx > radius_clip) | (ry > radius_clip))
        ok = ok & (m[..., 0] + rx > 0) & (m[..., 0] - rx < width)
        ok = ok & (m[..., 1] + ry > 0) & (m[..., 1] - ry < height)
        radii = torch.stack([rx, ry], dim=-1).masked_fill(~ok[..., None], 0).to(torch.int32)

    # View-dependent colour: direction from the camera centre to the Gaussian (3DGS convention).
    cam_centers = -(world_to_camera[:, :3, :3].transpose(-1, -2) @ world_to_camera[:, :3, 3:])[..., 0]
    dirs = means[None] - cam_centers[:, None]
    colors = eval_sh(sh_degree, sh, dirs)
    return Projected(means2d=means2d, conics=conics, depths=z, radii=radii, colors=colors)


# ----------------------------------------------------------------------------- tiles


@dataclass
class TileIntersections:
    """(tile, Gaussian) pairs sorted by tile, then by depth; tiles of all cameras in one index."""

    gauss: Tensor  # (M,) index into the flattened (C*N) Gaussians
    tile: Tensor  # (M,) global tile index c * tiles_per_image + ty * tiles_x + tx
    tile_start: Tensor  # (C*tiles_per_image + 1,) offsets of each tile's pairs
    tiles_x: int
    tiles_y: int


#: the (tile, Gaussian) pairs of one call stay under this many bytes: about PAIR_BYTES a pair at the
#: sort's peak. A 1080p frame of 1M Gaussians ~0.02 wide made ~100M pairs at 4-pixel tiles (11 GB);
#: :func:`tile_size_within` doubles the tile (up to MAX_TILE) until the pairs fit instead.
PAIR_BUDGET_BYTES = 2 << 30
PAIR_BYTES = 96
MAX_TILE = 64


def _tile_ranges(means2d: Tensor, radii: Tensor, width: int, height: int, tile_size: int):
    C, N = radii.shape[:2]
    tiles_x = (width + tile_size - 1) // tile_size
    tiles_y = (height + tile_size - 1) // tile_size
    m = means2d.detach().reshape(C * N, 2)
    r = radii.reshape(C * N, 2).to(m.dtype)
    valid = (radii.reshape(C * N, 2) > 0).all(dim=-1)
    x0 = torch.floor((m[:, 0] - r[:, 0]) / tile_size).clamp(0, tiles_x).long()
    x1 = torch.ceil((m[:, 0] + r[:, 0]) / tile_size).clamp(0, tiles_x).long()
    y0 = torch.floor((m[:, 1] - r[:, 1]) / tile_size).clamp(0, tiles_y).long()
    y1 = torch.ceil((m[:, 1] + r[:, 1]) / tile_size).clamp(0, tiles_y).long()
    wx = (x1 - x0).clamp_min(0)
    counts = torch.where(valid, wx * (y1 - y0).clamp_min(0), torch.zeros_like(wx))
    return tiles_x, tiles_y, x0, y0, wx, counts


@torch.no_grad()
def tile_size_within(means2d: Tensor, radii: Tensor, width: int, height: int, tile_size: int,
                     budget_bytes: Optional[int] = None) -> int:
    """``tile_size``, doubled while the call's tile-Gaussian pairs would take more than
    ``budget_bytes`` (default :data:`PAIR_BUDGET_BYTES`), up to :data:`MAX_TILE`. The image does not
    depend on the tile size; only the memory and the speed do."""
    budget = PAIR_BUDGET_BYTES if budget_bytes is None else budget_bytes
    ts = tile_size
    while ts < MAX_TILE and int(_tile_ranges(means2d, radii, width, height, ts)[-1].sum()) * PAIR_BYTES > budget:
        ts *= 2
    return ts


@torch.no_grad()
def intersect_tiles(means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int, tile_size: int) -> TileIntersections:
    """Which tiles each projected Gaussian touches (tile range ``[floor((m-r)/ts), ceil((m+r)/ts))``)."""
    C, N = depths.shape
    dev = means2d.device
    tiles_x, tiles_y, x0, y0, wx, counts = _tile_ranges(means2d, radii, width, height, tile_size)
    total = int(counts.sum())
    n_tiles = C * tiles_x * tiles_y
    if total == 0:
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return TileIntersections(empty, empty, torch.zeros(n_tiles + 1, dtype=torch.long, device=dev), tiles_x, tiles_y)
    gid = torch.repeat_interleave(torch.arange(C * N, device=dev), counts, output_size=total)
    first = torch.cumsum(counts, 0) - counts
    k = torch.arange(total, device=dev) - first[gid]
    w = wx[gid]
    tx = x0[gid] + k % w
    ty = y0[gid] + k // w
    cam = gid // N
    tile = cam * (tiles_x * tiles_y) + ty * tiles_x + tx
    # Sort by (tile, depth): rank depths once, then one int64 key sort.
    order = torch.argsort(depths.detach().reshape(-1))
    rank = torch.empty_like(order)
    rank[order] = torch.arange(C * N, device=dev)
    key = tile * (C * N) + rank[gid]
    key, perm = torch.sort(key)
    tile = tile[perm]
    gid = gid[perm]
    tile_counts = torch.bincount(tile, minlength=n_tiles)
    tile_start = torch.zeros(n_tiles + 1, dtype=torch.long, device=dev)
    tile_start[1:] = torch.cumsum(tile_counts, 0)
    return TileIntersections(gid, tile, tile_start, tiles_x, tiles_y)


def _chunks(tile_start: Tensor, pixels_per_tile: int, budget: int) -> List[Tuple[int, int]]:
    """Split tiles into consecutive runs of at most ``budget`` pair-pixel elements (>= 1 tile each)."""
    max_pairs = max(1, budget // pixels_per_tile)
    starts = tile_start.cpu()
    n_tiles = starts.numel() - 1
    out = []
    t0 = 0
    while t0 < n_tiles:
        target = int(starts[t0]) + max_pairs
        t1 = int(torch.searchsorted(starts, target, right=True)) - 1
        t1 = min(max(t1, t0 + 1), n_tiles)
        out.append((t0, t1))
        t0 = t1
    return out


# ----------------------------------------------------------------------------- compositing


class _ChunkGeometry:
    """Everything a chunk of tiles needs, recomputed identically in forward and backward."""

    def __init__(self, isect: TileIntersections, t0: int, t1: int, tile_size: int, dtype, device):
        p0, p1 = int(isect.tile_start[t0]), int(isect.tile_start[t1])
        self.p0, self.p1 = p0, p1
        self.g = isect.gauss[p0:p1]
        self.lt = isect.tile[p0:p1] - t0  # local tile index of each pair
        tiles_per_img = isect.tiles_x * isect.tiles_y
        tid = torch.arange(t0, t1, device=device) % tiles_per_img
        self.tile_x0 = ((tid % isect.tiles_x) * tile_size).to(dtype)
        self.tile_y0 = ((tid // isect.tiles_x) * tile_size).to(dtype)
        self.n_tiles = t1 - t0
        # first pair of each local tile, relative to p0 (for segmented scans)
        self.seg_start = isect.tile_start[t0:t1] - p0


def _pixel_offsets(tile_size: int, dtype, device) -> Tuple[Tensor, Tensor]:
    i = torch.arange(tile_size * tile_size, device=device)
    return (i % tile_size).to(dtype) + 0.5, (i // tile_size).to(dtype) + 0.5


def _segmented_cumsum(v: Tensor, geo: _ChunkGeometry) -> Tensor:
    """Inclusive cumsum over pairs (dim 0) restarting at each tile; float64 accumulation."""
    cs = torch.cumsum(v.double(), dim=0)
    before = torch.cat([torch.zeros_like(cs[:1]), cs], dim=0)[geo.seg_start]  # (tiles, Q)
    return cs - before[geo.lt]


def _alpha_terms(geo, means2d, conics, opacities, ox, oy, alpha_min, alpha_max, t_min):
    """Per (pair, pixel) blending terms of one chunk."""
    g = geo.g
    m = means2d[g]
    con = conics[g]
    dx = (geo.tile_x0[geo.lt][:, None] + ox[None]) - m[:, :1]  # (P, Q) pixel - mean
    dy = (geo.tile_y0[geo.lt][:, None] + oy[None]) - m[:, 1:]
    sigma = 0.5 * (con[:, :1] * dx * dx + con[:, 2:] * dy * dy) + con[:, 1:2] * dx * dy
    gauss = torch.exp(-sigma)
    raw = opacities[g][:, None] * gauss
    alpha = raw.clamp_max(alpha_max)
    keep = (sigma >= 0) & (alpha >= alpha_min)
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    log1m = torch.log1p(-alpha)
    incl = _segmented_cumsum(log1m, geo)  # log T after each pair (inclusive)
    # A pixel stops at the Gaussian whose blending would leave T <= t_min; it and all after it are
    # skipped. T is non-increasing, so the blended set is a prefix of each tile's list.
    used = incl > torch.log(torch.tensor(t_min, dtype=torch.float64))
    alpha = torch.where(used, alpha, torch.zeros_like(alpha))
    T_before = torch.exp(incl - log1m.double()).to(alpha.dtype)
    return dx, dy, gauss, raw, alpha, keep & used, log1m, T_before


def _chunk_terms(isect, chunks, tile_size, means2d, conics, opacities, opts):
    """``(t0, t1, geometry, blending terms)`` of each non-empty chunk of tiles, in order."""
    alpha_min, alpha_max, t_min, _ = opts
    dev, dt = means2d.device, means2d.dtype
    ox, oy = _pixel_offsets(tile_size, dt, dev)
    for t0, t1 in chunks:
        geo = _ChunkGeometry(isect, t0, t1, tile_size, dt, dev)
        if geo.p1 > geo.p0:
            yield t0, t1, geo, _alpha_terms(geo, means2d, conics, opacities, ox, oy, alpha_min, alpha_max, t_min)


class _Composite(torch.autograd.Function):
    """Front-to-back blending of per-Gaussian features over tiles.

    Returns ``feat`` (n_tiles, Q, F) = sum_i w_i f_i and ``T`` (n_tiles, Q), the final transmittance,
    where ``w_i = alpha_i prod_{j<i}(1 - alpha_j)`` and Q = tile_size^2 pixels per tile.
    """

    @staticmethod
    def forward(ctx, means2d, conics, opacities, feats, isect, tile_size, opts):
        budget = opts[3]
        dev, dt = means2d.device, means2d.dtype
        n_tiles = isect.tile_start.numel() - 1
        Q = tile_size * tile_size
        F = feats.shape[-1]
        feat_out = torch.zeros(n_tiles, Q, F, dtype=dt, device=dev)
        logT = torch.zeros(n_tiles, Q, dtype=torch.float64, device=dev)
        chunks = _chunks(isect.tile_start, Q, budget)
        walk = _chunk_terms(isect, chunks, tile_size, means2d, conics, opacities, opts)
        # Small frames (the CPU's training sizes) keep the chunks' blending terms for the backward
        # pass instead of recomputing them there; large ones recompute, so memory stays bounded.
        keep = any(ctx.needs_input_grad[:4]) and int(isect.tile_start[-1]) * Q <= budget
        if keep:
            walk = list(walk)
        for t0, t1, geo, (_, _, _, _, alpha, _, log1m, T_before) in walk:
            w = alpha * T_before
            f = feats[geo.g]  # (P, F)
            # sum_i w_i f_i per tile as a batched matmul over the pairs of each tile
            acc = torch.zeros(geo.n_tiles, Q, F, dtype=dt, device=dev)
            acc.index_add_(0, geo.lt, w[:, :, None] * f[:, None, :])
            feat_out[t0:t1] = acc
            lt_sum = torch.zeros(geo.n_tiles, Q, dtype=torch.float64, device=dev)
            lt_sum.index_add_(0, geo.lt, torch.where(alpha > 0, log1m, torch.zeros_like(log1m)).double())
            logT[t0:t1] = lt_sum
        T = torch.exp(logT).to(dt)
        ctx.save_for_backward(means2d, conics, opacities, feats, feat_out, T)
        ctx.isect, ctx.tile_size, ctx.opts, ctx.chunks = isect, tile_size, opts, chunks
        ctx.kept = walk if keep else None
        return feat_out, T

    @staticmethod
    def backward(ctx, g_feat, g_T):
        means2d, conics, opacities, feats, feat_out, T = ctx.saved_tensors
        isect, tile_size, chunks = ctx.isect, ctx.tile_size, ctx.chunks
        alpha_max = ctx.opts[1]
        dev, dt = means2d.device, means2d.dtype
        n = means2d.shape[0]
        gm = torch.zeros(n, 2, dtype=dt, device=dev)
        gc = torch.zeros(n, 3, dtype=dt, device=dev)
        go = torch.zeros(n, dtype=dt, device=dev)
        gf = torch.zeros_like(feats)
        if g_feat is None:
            g_feat = torch.zeros_like(feat_out)
        if g_T is None:
            g_T = torch.zeros_like(T)
        # Per pixel: d(sum_k w_k f_k . G)/d alpha_i = T_i (G.f_i) - S_i / (1 - alpha_i), where
        # S_i = sum_{k>i} w_k (G.f_k) is the part of the pixel behind i; and
        # d T_final / d alpha_i = -T_final / (1 - alpha_i).
        total = (g_feat * feat_out).sum(-1)  # (tiles, Q): sum_k w_k G.f_k
        tail_T = g_T * T  # (tiles, Q)
        walk = ctx.kept if ctx.kept is not None else _chunk_terms(isect, chunks, tile_size, means2d, conics, opacities, ctx.opts)
        ctx.kept = None
        for t0, t1, geo, (dx, dy, gauss, raw, alpha, used, log1m, T_before) in walk:
            G = g_feat[t0:t1][geo.lt]  # (P, Q, F)
            f = feats[geo.g]
            w = alpha * T_before
            gf.index_add_(0, geo.g, torch.einsum("pq,pqf->pf", w, G))
            Gf = torch.einsum("pqf,pf->pq", G, f)
            suffix = (total[t0:t1][geo.lt] - _segmented_cumsum(w * Gf, geo)).to(dt)
            g_alpha = T_before * Gf - (suffix + tail_T[t0:t1][geo.lt]) / (1 - alpha)
            # only blended, unclamped alphas carry gradient (clamped: d alpha = 0, as in gsplat)
            g_alpha = torch.where(used & (raw < alpha_max), g_alpha, torch.zeros_like(g_alpha))
            go.index_add_(0, geo.g, (g_alpha * gauss).sum(-1))
            g_sigma = -g_alpha * alpha
            con = conics[geo.g]
            gcon = torch.stack(
                [(g_sigma * 0.5 * dx * dx).sum(-1), (g_sigma * dx * dy).sum(-1), (g_sigma * 0.5 * dy * dy).sum(-1)],
                dim=-1,
            )
            gc.index_add_(0, geo.g, gcon)
            gmean = torch.stack(
                [
                    -(g_sigma * (con[:, :1] * dx + con[:, 1:2] * dy)).sum(-1),
                    -(g_sigma * (con[:, 1:2] * dx + con[:, 2:] * dy)).sum(-1),
                ],
                dim=-1,
            )
            gm.index_add_(0, geo.g, gmean)
        return gm, gc, go, gf, None, None, None


def rasterize_torch(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    sh: Tensor,
    sh_degree: int,
    world_to_camera: Tensor,
    K: Tensor,
    width: int,
    height: int,
    background: Optional[Tensor],
    *,
    eps2d: float,
    near_plane: float,
    far_plane: float,
    alpha_min: float,
    alpha_max: float,
    transmittance_min: float,
    radius_clip: float,
    tile_size: int,
    chunk_elements: int,
):
    """Returns (rgb (C,H,W,3), alpha (C,H,W,1), depth (C,H,W,1), Projected)."""
    C = world_to_camera.shape[0]
    N = means.shape[0]
    proj = project(
        means, quats, scales, opacities, sh, sh_degree, world_to_camera, K, width, height,
        eps2d=eps2d, near_plane=near_plane, far_plane=far_plane, alpha_min=alpha_min, radius_clip=radius_clip,
    )
    tile_size = tile_size_within(proj.means2d, proj.radii, width, height, tile_size)
    isect = intersect_tiles(proj.means2d, proj.radii, proj.depths, width, height, tile_size)
    feats = torch.cat([proj.colors, proj.depths[..., None]], dim=-1).reshape(C * N, 4)
    feat, T = _Composite.apply(
        proj.means2d.reshape(C * N, 2),
        proj.conics.reshape(C * N, 3),
        opacities[None].expand(C, N).reshape(C * N),
        feats,
        isect,
        tile_size,
        (alpha_min, alpha_max, transmittance_min, chunk_elements),
    )
    ty, tx = isect.tiles_y, isect.tiles_x
    img = (
        feat.reshape(C, ty, tx, tile_size, tile_size, 4)
        .permute(0, 1, 3, 2, 4, 5)
        .reshape(C, ty * tile_size, tx * tile_size, 4)[:, :height, :width]
    )
    T = (
        T.reshape(C, ty, tx, tile_size, tile_size)
        .permute(0, 1, 3, 2, 4)
        .reshape(C, ty * tile_size, tx * tile_size)[:, :height, :width, None]
    )
    return (*finish_composite(img, T, background), proj)


def finish_composite(feat: Tensor, T: Tensor, background: Optional[Tensor]):
    """Composited (C, H, W, 4) colour+depth sums and (C, H, W, 1) final transmittance -> (rgb over
    ``background``, alpha, depth normalised by alpha); shared by the torch and compiled backends."""
    alpha = 1 - T
    rgb = feat[..., :3]
    if background is not None:
        rgb = rgb + T * background[:, None, None, :]
    return rgb, alpha, feat[..., 3:] / alpha.clamp_min(1e-10)
