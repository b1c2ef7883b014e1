"""scene4d renderers: Gaussians at one instant + cameras -> images. Nothing about time or training.

Import direction: ``cameras`` <- ``renderers`` <- ``scene4d``. This package imports only ``cameras``.

    out = rasterize(gaussians, cameras)          # RenderOutput
    out.rgb    (C, H, W, 3)
    out.alpha  (C, H, W, 1)
    out.depth  (C, H, W, 1)  expected camera-space z (sum w_i z_i / alpha)
    out.means2d, out.radii   per (camera, Gaussian), for densification
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Union

import torch
from torch import Tensor

from cameras import Cameras

from .gaussians import (
    SH_C0,
    GaussianError,
    Gaussians,
    covariances,
    eval_sh,
    quat_multiply,
    quat_to_rotmat,
    rgb_to_sh0,
    sh0_to_rgb,
)
from .cpu_backend import (
    configure_cpu_threads,
    idle_cores,
    cpu_backend_available,
    cpu_backend_status,
    rasterize_cpu,
    set_raster_threads,
    warn_fallback_once,
)
from .gsplat_backend import gsplat_available, rasterize_gsplat
from .torch_backend import rasterize_torch

Backend = Literal["auto", "torch", "gsplat", "numba"]


@dataclass(frozen=True)
class RasterOptions:
    """Rasterizer settings; the defaults are gsplat's (and so match the 3DGS CUDA rasterizer)."""

    near_plane: float = 0.01
    """Gaussians nearer than this camera-space depth are culled."""
    far_plane: float = 1e10
    """Gaussians farther than this are culled."""
    eps2d: float = 0.3
    """Low-pass dilation added to the 2D covariance diagonal, in pixels^2."""
    radius_clip: float = 0.0
    """Gaussians whose screen radius is at most this many pixels are culled."""
    tile_size: Optional[int] = None
    """Tile edge in pixels; None picks each backend's fastest (gsplat 16; numba 64 x 16; torch 4,
    measured on CPU with bench/render.py). Results do not depend on it."""
    alpha_min: float = 1.0 / 255.0
    """Contributions with alpha below this are skipped."""
    alpha_max: float = 0.999
    """Per-Gaussian alpha is clamped to this (gsplat 1.x uses 0.999; the original 3DGS 0.99)."""
    transmittance_min: float = 1e-4
    """A pixel stops at the Gaussian that would take its transmittance to or below this."""
    chunk_elements: int = 1 << 22
    """torch backend: (pair x pixel) elements processed at once; bounds memory, not results."""


@dataclass
class RenderOutput:
    """What one rasterize call returns. C cameras, N Gaussians, H x W pixels."""

    rgb: Tensor
    """(C, H, W, 3) colour composited over the background."""
    alpha: Tensor
    """(C, H, W, 1) accumulated opacity."""
    depth: Tensor
    """(C, H, W, 1) expected camera-space depth (0 where alpha is 0)."""
    means2d: Tensor
    """(C, N, 2) projected centres in pixels; ``retain_grad()`` it before backward to read
    the view-space positional gradients that densification uses."""
    radii: Tensor
    """(C, N, 2) int32 screen half-extents in pixels; 0 where a Gaussian is culled."""
    depths: Tensor
    """(C, N) camera-space depth of each Gaussian centre."""
    backend: str
    """Which backend produced this output."""

    @property
    def visible(self) -> Tensor:
        """(C, N) bool: Gaussians that reached at least one tile."""
        return (self.radii > 0).all(dim=-1)


class RenderError(ValueError):
    """Inputs rasterize cannot use (wrong shapes, devices, backends)."""


def default_device() -> torch.device:
    """Where work goes when the user does not say: the GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_backend(backend: str, device: Union[str, torch.device]) -> str:
    """The rasterizer ``backend`` names on ``device``: "auto" is gsplat's kernels on CUDA when
    gsplat is installed, the compiled CPU rasterizer ("numba") on the CPU when numba loads (else,
    said once, the torch rasterizer), the torch rasterizer elsewhere."""
    if backend == "auto":
        dev = torch.device(device).type
        if dev == "cuda" and gsplat_available():
            return "gsplat"
        if dev == "cpu":
            if cpu_backend_available():
                return "numba"
            warn_fallback_once()
        return "torch"
    if backend not in ("torch", "gsplat", "numba"):
        raise RenderError(f"unknown backend {backend!r}; choose 'auto', 'torch', 'numba' or 'gsplat'")
    return backend


def rasterize(
    gaussians: Gaussians,
    cameras: Cameras,
    *,
    background: Optional[Union[Tensor, float, tuple]] = None,
    sh_degree: Optional[int] = None,
    backend: Backend = "auto",
    options: RasterOptions = RasterOptions(),
    check: bool = True,
) -> RenderOutput:
    """Render N Gaussians into C cameras.

    Args:
        gaussians: the Gaussians (see :class:`Gaussians` for units).
        cameras: C cameras sharing one image size (OpenCV world-to-camera, pixel K).
        background: colour behind the Gaussians: a float, an RGB triple, (3,) or (C, 3); black if None.
        sh_degree: SH degree to evaluate (<= stored degree); all stored bands if None.
        backend: "torch" (pure PyTorch, any device, differentiable in every Gaussian parameter and
            the camera pose; the reference), "numba" (compiled CPU kernels, the torch backend's
            semantics and gradients, several times faster), "gsplat" (CUDA kernels), or "auto"
            (gsplat on CUDA when available, numba on the CPU when it loads, else torch).
        options: see :class:`RasterOptions`.
        check: validate inputs (finite values, shapes); costs one host sync.
    """
    if not isinstance(gaussians, Gaussians):
        raise RenderError(f"rasterize expects renderers.Gaussians, got {type(gaussians).__name__}")
    if not isinstance(cameras, Cameras):
        raise RenderError(f"rasterize expects cameras.Cameras, got {type(cameras).__name__}")
    if check:
        gaussians.validate()
    dev, dt = gaussians.device, gaussians.dtype
    if cameras.device != dev:
        raise RenderError(
            f"Gaussians are on {dev} but cameras on {cameras.device}; move one with .to(device)"
        )
    cams = cameras.to(dtype=dt) if cameras.dtype != dt else cameras
    C, H, W = len(cams), cams.height, cams.width
    stored = gaussians.sh_degree
    degree = stored if sh_degree is None else int(sh_degree)
    if not 0 <= degree <= stored:
        raise RenderError(f"sh_degree={degree} but the Gaussians store SH up to degree {stored}")
    bg = _background(background, C, dt, dev)

    requested, backend = backend, resolve_backend(backend, dev)
    if backend == "numba" and requested == "auto" and dt not in (torch.float32, torch.float64):
        backend = "torch"  # the compiled kernels read float32/float64

    if len(gaussians) == 0:
        rgb = (bg if bg is not None else torch.zeros(C, 3, dtype=dt, device=dev))[:, None, None, :]
        rgb = rgb.expand(C, H, W, 3).clone()
        z = torch.zeros(C, H, W, 1, dtype=dt, device=dev)
        empty = torch.zeros(C, 0, dtype=dt, device=dev)
        return RenderOutput(
            rgb, z, z.clone(), empty[..., None].expand(C, 0, 2), torch.zeros(C, 0, 2, dtype=torch.int32, device=dev),
            empty, backend,
        )

    common = dict(
        means=gaussians.means, quats=gaussians.quats, scales=gaussians.scales,
        opacities=gaussians.opacities, sh=gaussians.sh, sh_degree=degree,
        world_to_camera=cams.world_to_camera, K=cams.K, width=W, height=H, background=bg,
        eps2d=options.eps2d, near_plane=options.near_plane, far_plane=options.far_plane,
        radius_clip=options.radius_clip,
    )
    if backend == "torch":
        rgb, alpha, depth, proj = rasterize_torch(
            **common, alpha_min=options.alpha_min, alpha_max=options.alpha_max,
            transmittance_min=options.transmittance_min, chunk_elements=options.chunk_elements,
            tile_size=options.tile_size or 4,
        )
        return RenderOutput(rgb, alpha, depth, proj.means2d, proj.radii, proj.depths, "torch")
    if backend == "numba":
        if dev.type != "cpu" or dt not in (torch.float32, torch.float64):
            raise RenderError(f"backend 'numba' renders float32/float64 CPU tensors, got {dt} on {dev}; "
                              "use backend='auto'")
        ok, why = cpu_backend_status()
        if not ok:
            raise RenderError(f"backend 'numba' is unavailable here ({why}); use backend='torch' or 'auto'")
        rgb, alpha, depth, proj = rasterize_cpu(
            **common, alpha_min=options.alpha_min, alpha_max=options.alpha_max,
            transmittance_min=options.transmittance_min,
            # None: 64 x 16 pixel tiles, the fastest shape measured (bench/render.py sizes, 1-2 threads)
            tile_size=options.tile_size or 16, tile_width=None if options.tile_size else 64,
        )
        return RenderOutput(rgb, alpha, depth, proj.means2d, proj.radii, proj.depths, "numba")
    rgb, alpha, depth, meta = rasterize_gsplat(**common, tile_size=options.tile_size or 16)
    return RenderOutput(rgb, alpha, depth, meta["means2d"], meta["radii"], meta["depths"], "gsplat")


def _background(background, C, dt, dev) -> Optional[Tensor]:
    if background is None:
        return None
    bg = torch.as_tensor(background, dtype=dt, device=dev)
    if bg.dim() == 0:
        bg = bg.expand(3)
    if bg.shape == (3,):
        bg = bg.expand(C, 3)
    if bg.shape != (C, 3):
        raise RenderError(f"background must be a float, (3,) or (C={C}, 3); got shape {tuple(bg.shape)}")
    return bg


__all__ = [
    "Gaussians", "GaussianError", "RasterOptions", "RenderOutput", "RenderError", "rasterize",
    "gsplat_available", "cpu_backend_available", "cpu_backend_status", "configure_cpu_threads", "idle_cores", "set_raster_threads",
    "default_device", "resolve_backend", "covariances", "eval_sh", "quat_multiply", "quat_to_rotmat", "rgb_to_sh0", "sh0_to_rgb", "SH_C0",
]
