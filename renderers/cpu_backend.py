"""Compiled CPU rasterizer: numba kernels behind two ``torch.autograd.Function``s.

The torch backend (:mod:`renderers.torch_backend`) is the reference: this backend has its
semantics (gsplat's conventions, the same :class:`~renderers.RasterOptions`, rgb / alpha / depth,
``means2d`` gradients for densification, gradients to every Gaussian parameter and to the camera
pose) and the tests hold the two together, forward and backward. What differs is how the work is
done (the kernels are in :mod:`renderers._cpu_kernels`):

* projection, SH colour and their backward are one kernel each over Gaussians (instead of a few
  hundred small autograd ops);
* tiles are binned and depth-sorted in one pass; each tile's Gaussians are walked once forward and
  once backward, each over only the pixels it can reach;
* the backward writes one gradient row per (tile, Gaussian) pair and sums them in pair order, so
  gradients do not depend on the number of threads.

Threads: the kernels release the GIL and run over ranges of tiles (or Gaussians) that
:func:`raster_threads` threads (``torch.get_num_threads()`` unless :func:`set_raster_threads` says
otherwise) take from a shared queue, the calling thread among them. A thread slowed by another
process on its core holds up only the range it is on, and idle threads sleep (no OpenMP runtime,
no spinning). :func:`configure_cpu_threads` is the setting measured fastest for training jobs.

numba compiles the kernels on first use, about 8 s per float type once per machine (cached on disk
beside this module, or in ``NUMBA_CACHE_DIR``; later processes load them in about 0.4 s).
:func:`cpu_backend_status` says whether this backend can run here and why not;
``rasterize(backend="auto")`` on the CPU uses it when it can and otherwise falls back to the torch
backend, saying why once.
"""

from __future__ import annotations

import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

_STATUS: Optional[Tuple[bool, str]] = None
_WARNED = False
_THREADS: Optional[int] = None
_POOL: Optional[ThreadPoolExecutor] = None
_POOL_PID = 0
_POOL_LOCK = threading.Lock()
_CPUS = os.cpu_count() or 1

PAIR_BUDGET = 1 << 20
"""(tile, Gaussian) pairs whose gradient rows the backward holds at once (40 MB in float32): the
backward's memory does not grow with the frame beyond this."""


def _kernels():
    from . import _cpu_kernels

    return _cpu_kernels


def cpu_backend_status() -> Tuple[bool, str]:
    """``(True, "")`` when the compiled CPU backend can run here, else ``(False, why)``.

    The test, done once per process: import numba and run one small kernel (loading it from the
    on-disk cache, or compiling it the first time). ``SCENE4D_CPU_BACKEND=0`` in the environment
    turns the backend off for ``auto``."""
    global _STATUS
    if _STATUS is not None:
        return _STATUS
    if os.environ.get("SCENE4D_CPU_BACKEND", "1").strip().lower() in ("0", "false", "no", "off"):
        _STATUS = (False, "SCENE4D_CPU_BACKEND=0 is set")
        return _STATUS
    try:
        g, s = _kernels().bin_tiles(np.zeros((1, 1, 2), np.float32), np.ones((1, 1, 2), np.int32),
                                    np.ones((1, 1), np.float32), 16, 16, 1, 1)
        if g.tolist() != [0] or s.tolist() != [0, 1]:
            raise RuntimeError("the tile-binning kernel returned wrong values")
        _STATUS = (True, "")
    except Exception as e:  # numba missing, an llvmlite that does not match it, no compiler target...
        _STATUS = (False, f"{type(e).__name__}: {e}".splitlines()[0][:300])
    return _STATUS


def cpu_backend_available() -> bool:
    return cpu_backend_status()[0]


def warn_fallback_once() -> None:
    """Say once per process why ``auto`` uses the torch rasterizer on the CPU."""
    global _WARNED
    ok, why = cpu_backend_status()
    if ok or _WARNED:
        return
    _WARNED = True
    hint = "" if "SCENE4D_CPU_BACKEND" in why else " (`pip install numba` brings it back)"
    warnings.warn(
        f"the compiled CPU rasterizer is unavailable ({why}); using the torch rasterizer, several times "
        f"slower{hint}", RuntimeWarning, stacklevel=4,
    )


# ----------------------------------------------------------------------------- threads


def set_raster_threads(n: Optional[int]) -> None:
    """Threads of the compiled CPU rasterizer; None (the default) follows ``torch.get_num_threads()``,
    so ``torch.set_num_threads`` and ``--threads`` govern both."""
    global _THREADS
    if n is not None and int(n) < 1:
        raise ValueError(f"raster threads must be >= 1 or None, got {n}")
    _THREADS = None if n is None else int(n)


def raster_threads() -> int:
    """How many threads the compiled CPU rasterizer uses now."""
    return max(1, min(_THREADS or torch.get_num_threads(), _CPUS))


def configure_cpu_threads(threads: Optional[int] = None) -> str:
    """Thread settings for a CPU training or rendering job; returns them in words.

    ``threads=None`` (a job's default): torch's own ops on one thread and the compiled rasterizer
    on every core. torch's OpenMP threads spin-wait between ops, and beside a busy process every
    parallel op then waits for a time slice, while the rasterizer's threads sleep when idle and
    take ranges of tiles from a queue. Measured with bench/threads.py on a 2-core CPU (demo
    capture, 128^2): quiet, 72 steps/s against 55 for the best ``--threads`` value and 54 for
    torch's default; beside one busy process, 62 against 55 (one thread) and 24 (torch's default).
    Without the compiled rasterizer: one thread for everything (0.77x the two-thread speed on a
    quiet machine, 2.5x it beside a busy process). ``threads=N``: N for both (``--threads``)."""
    if threads is not None:
        n = int(threads)
        if n < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(n)
        set_raster_threads(None)
        return f"{n} thread{'s' if n > 1 else ''}"
    torch.set_num_threads(1)
    if cpu_backend_available():
        set_raster_threads(_CPUS)
        return f"torch 1 thread, rasterizer {_CPUS}"
    set_raster_threads(None)
    return "1 thread"


def idle_cores(load: Optional[float] = None, cores: Optional[int] = None, cap: int = 4) -> int:
    """Cores left over by other processes, from the 1-minute load average (``load``, read now when
    None), at least 1 and at most ``cap``: the torch threads for work dominated by a neural network
    (a diffusion prior's U-Net), which gains from threads on an idle machine (1.43x at 2 threads on
    the 2-core CI machine) but loses to spin-waiting beside a busy process (0.52x). One when the
    load cannot be read."""
    cores = int(cores or _CPUS)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (OSError, AttributeError):
            return 1
    return max(1, min(int(cap), cores - int(round(float(load)))))


def _pool() -> ThreadPoolExecutor:
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        # a forked child inherits the pool object but not its threads: it makes its own
        if _POOL is None or _POOL_PID != os.getpid():
            _POOL = ThreadPoolExecutor(max_workers=max(1, _CPUS - 1), thread_name_prefix="scene4d-raster")
            _POOL_PID = os.getpid()
        return _POOL


def _parallel(fn: Callable[[int, int], None], tasks: Sequence[Tuple[int, int]]) -> None:
    """Run ``fn(lo, hi)`` for every task on :func:`raster_threads` threads (the caller's included),
    each thread taking the next task when it is done with one (dynamic scheduling)."""
    n = min(raster_threads(), len(tasks))
    if n <= 1:
        for t in tasks:
            fn(*t)
        return
    it = iter(tasks)
    lock = threading.Lock()

    def work():
        while True:
            with lock:
                t = next(it, None)
            if t is None:
                return
            fn(*t)

    futures = [_pool().submit(work) for _ in range(n - 1)]
    try:
        work()
    finally:
        for f in futures:
            f.result()


def _ranges(n: int, parts: int) -> List[Tuple[int, int]]:
    parts = max(1, min(parts, n))
    return [(i * n // parts, (i + 1) * n // parts) for i in range(parts)]


def _tile_ranges(tile_start: np.ndarray, t_lo: int, t_hi: int, parts: int) -> List[Tuple[int, int]]:
    """Split tiles [t_lo, t_hi) into up to ``parts`` consecutive ranges of about equal pair counts."""
    p_lo, p_hi = int(tile_start[t_lo]), int(tile_start[t_hi])
    cuts = [t_lo]
    for k in range(1, parts):
        t = int(np.searchsorted(tile_start, p_lo + (p_hi - p_lo) * k // parts, side="left"))
        t = min(max(t, cuts[-1]), t_hi)
        if t > cuts[-1]:
            cuts.append(t)
    if cuts[-1] < t_hi:
        cuts.append(t_hi)
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def _parts() -> int:
    # a few tasks per thread: a slowed thread delays only its last one
    n = raster_threads()
    return 1 if n == 1 else 8 * n


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


# ----------------------------------------------------------------------------- autograd


PROJECT_RANGES = 16
"""Fixed Gaussian ranges of the projection backward: the camera-pose gradient is summed per range,
then over ranges in order, whatever the thread count."""


class _Project(torch.autograd.Function):
    """(means, quats, scales, sh, world_to_camera) -> means2d, conics, depths, colors (+ radii)."""

    @staticmethod
    def forward(ctx, means, quats, scales, sh, w2c, opacities, K, sh_degree, width, height, eps2d, near, far,
                alpha_min, radius_clip):
        k = _kernels()
        C, N = w2c.shape[0], means.shape[0]
        dt = means.dtype
        means2d = torch.empty(C, N, 2, dtype=dt)
        conics = torch.empty(C, N, 3, dtype=dt)
        depths = torch.empty(C, N, dtype=dt)
        radii = torch.empty(C, N, 2, dtype=torch.int32)
        colors = torch.empty(C, N, 3, dtype=dt)
        args = (_np(means), _np(quats), _np(scales), _np(opacities), _np(sh), sh_degree, _np(w2c), _np(K),
                width, height, eps2d, near, far, alpha_min, radius_clip,
                means2d.numpy(), conics.numpy(), depths.numpy(), radii.numpy(), colors.numpy())
        _parallel(lambda lo, hi: k.project_forward(*args, lo, hi), _ranges(N, _parts()))
        ctx.save_for_backward(means, quats, scales, sh, w2c, K)
        ctx.cfg = (sh_degree, width, height, eps2d, near, far)
        ctx.mark_non_differentiable(radii)
        return means2d, conics, depths, colors, radii

    @staticmethod
    def backward(ctx, g_means2d, g_conics, g_depths, g_colors, _g_radii):
        means, quats, scales, sh, w2c, K = ctx.saved_tensors
        sh_degree, width, height, eps2d, near, far = ctx.cfg
        k = _kernels()
        C, N = w2c.shape[0], means.shape[0]
        dt = means.dtype

        def grad_or_zeros(g, shape):
            return _np(g.to(dt)) if g is not None else np.zeros(shape, dtype=_np(means).dtype)

        g_means = torch.zeros(N, 3, dtype=dt)
        g_quats = torch.zeros(N, 4, dtype=dt)
        g_scales = torch.zeros(N, 3, dtype=dt)
        g_sh = torch.zeros(sh.shape, dtype=dt)
        ranges = _ranges(N, PROJECT_RANGES)
        g_pose = np.zeros((len(ranges), C, 12))
        args = (_np(means), _np(quats), _np(scales), _np(sh), sh_degree, _np(w2c), _np(K), width, height,
                eps2d, near, far, grad_or_zeros(g_means2d, (C, N, 2)), grad_or_zeros(g_conics, (C, N, 3)),
                grad_or_zeros(g_depths, (C, N)), grad_or_zeros(g_colors, (C, N, 3)),
                g_means.numpy(), g_quats.numpy(), g_scales.numpy(), g_sh.numpy())
        index = {r: i for i, r in enumerate(ranges)}
        _parallel(lambda lo, hi: k.project_backward(*args, g_pose[index[(lo, hi)]], lo, hi), ranges)
        g_w2c = None
        if ctx.needs_input_grad[4]:
            g_w2c = torch.zeros(C, 4, 4, dtype=dt)
            g_w2c[:, :3, :] = torch.from_numpy(g_pose.sum(0)).reshape(C, 3, 4).to(dt)
        return (g_means, g_quats, g_scales, g_sh, g_w2c) + (None,) * 10


class _Rasterize(torch.autograd.Function):
    """(means2d, conics, opacities, colors, depths) -> feat (C,H,W,4) = sum w (rgb, z), T (C,H,W)."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, depths, radii, width, height, tile, alpha_min, alpha_max,
                t_min):
        k = _kernels()
        C, N = depths.shape
        dt = means2d.dtype
        tile_w, tile_h = tile
        tiles_x = (width + tile_w - 1) // tile_w
        tiles_y = (height + tile_h - 1) // tile_h
        m2 = _np(means2d)
        gauss, tile_start = k.bin_tiles(m2, _np(radii), _np(depths), tile_w, tile_h, tiles_x, tiles_y)
        feat = torch.empty(C, height, width, 4, dtype=dt)
        T = torch.empty(C, height, width, dtype=dt)
        flat = (m2.reshape(C * N, 2), _np(conics).reshape(C * N, 3), _np(opacities), _np(colors).reshape(C * N, 3),
                _np(depths).reshape(C * N))
        args = (gauss, tile_start, N, tile_w, tile_h, tiles_x, width, height) + flat + (
            alpha_min, alpha_max, t_min, feat.numpy(), T.numpy())
        n_tiles = len(tile_start) - 1
        _parallel(lambda lo, hi: k.raster_forward(*args, lo, hi), _tile_ranges(tile_start, 0, n_tiles, _parts()))
        ctx.save_for_backward(means2d, conics, opacities, colors, depths, feat, T)
        ctx.isect = (gauss, tile_start, flat)
        ctx.cfg = (width, height, tile_w, tile_h, tiles_x, alpha_min, alpha_max, t_min)
        return feat, T

    @staticmethod
    def backward(ctx, g_feat, g_T):
        means2d, conics, opacities, colors, depths, feat, T = ctx.saved_tensors
        gauss, tile_start, flat = ctx.isect
        width, height, tile_w, tile_h, tiles_x, alpha_min, alpha_max, t_min = ctx.cfg
        k = _kernels()
        C, N = depths.shape
        dt = means2d.dtype
        g_feat = np.zeros(feat.shape, _np(feat).dtype) if g_feat is None else _np(g_feat.to(dt))
        g_T = np.zeros(T.shape, _np(T).dtype) if g_T is None else _np(g_T.to(dt))
        args = (gauss, tile_start, N, tile_w, tile_h, tiles_x, width, height) + flat + (
            alpha_min, alpha_max, t_min, _np(feat), _np(T), g_feat, g_T)
        # accumulate in float64 whatever the dtype: sums over many pairs
        sums = [np.zeros((C * N, 2)), np.zeros((C * N, 3)), np.zeros(N), np.zeros((C * N, 3)), np.zeros(C * N)]
        n_tiles = len(tile_start) - 1
        pair_dtype = np.float64 if dt == torch.float64 else np.float32
        t0 = 0
        while t0 < n_tiles:  # waves of at most PAIR_BUDGET pairs (or one tile)
            t1 = int(np.searchsorted(tile_start, tile_start[t0] + PAIR_BUDGET, side="right")) - 1
            t1 = min(max(t1, t0 + 1), n_tiles)
            p0, p1 = int(tile_start[t0]), int(tile_start[t1])
            if p1 > p0:
                rows = np.empty((p1 - p0, 10), dtype=pair_dtype)
                _parallel(lambda lo, hi: k.raster_backward(*args, rows, p0, lo, hi),
                          _tile_ranges(tile_start, t0, t1, _parts()))
                k.reduce_pairs(gauss, rows, p0, N, *sums)
            t0 = t1
        g_m2, g_con, g_op, g_col, g_dep = (torch.from_numpy(a).to(dt) for a in sums)
        return (g_m2.reshape(C, N, 2), g_con.reshape(C, N, 3), g_op, g_col.reshape(C, N, 3), g_dep.reshape(C, N)) \
            + (None,) * 7


def rasterize_cpu(
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
    tile_width: Optional[int] = None,
):
    """Same contract as :func:`renderers.torch_backend.rasterize_torch`: returns
    (rgb (C,H,W,3), alpha (C,H,W,1), depth (C,H,W,1), Projected). CPU tensors, float32 or float64.

    Intrinsics ``K`` are not differentiated by the compiled projection; when they require a
    gradient, the projection runs through the torch backend's autograd ``project`` (compositing
    stays compiled)."""
    from .torch_backend import Projected, finish_composite, project

    if means.device.type != "cpu":
        raise ValueError(f"the compiled CPU rasterizer needs CPU tensors, got {means.device}")
    if means.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"the compiled CPU rasterizer needs float32 or float64, got {means.dtype}")
    if K.requires_grad:
        proj = project(means, quats, scales, opacities, sh, sh_degree, world_to_camera, K, width, height,
                       eps2d=eps2d, near_plane=near_plane, far_plane=far_plane, alpha_min=alpha_min,
                       radius_clip=radius_clip)
    else:
        m2, con, dep, col, radii = _Project.apply(
            means, quats, scales, sh[:, : (sh_degree + 1) ** 2], world_to_camera, opacities, K, sh_degree, width,
            height, float(eps2d), float(near_plane), float(far_plane), float(alpha_min), float(radius_clip))
        proj = Projected(means2d=m2, conics=con, depths=dep, radii=radii, colors=col)
    tile = (tile_width or tile_size, tile_size)
    feat, T = _Rasterize.apply(proj.means2d, proj.conics, opacities, proj.colors, proj.depths, proj.radii,
                               width, height, tile, float(alpha_min), float(alpha_max), float(transmittance_min))
    return (*finish_composite(feat, T[..., None], background), proj)
