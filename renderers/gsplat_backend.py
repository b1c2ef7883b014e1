"""gsplat's CUDA rasterizer behind scene4d's ``rasterize`` conventions.

gsplat is imported lazily: importing :mod:`renderers` never touches CUDA. The torch backend is the
reference this one is held against (tests marked ``gpu``).
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
from torch import Tensor


@functools.lru_cache(maxsize=1)
def gsplat_available() -> bool:
    """True when gsplat imports and a CUDA device is present (its kernels need one)."""
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except Exception:  # pragma: no cover - depends on the machine
        return False
    return True


def rasterize_gsplat(
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
    radius_clip: float,
    tile_size: int,
):
    """Returns (rgb (C,H,W,3), alpha (C,H,W,1), depth (C,H,W,1), meta dict from gsplat)."""
    try:
        from gsplat import rasterization
    except ImportError as e:  # pragma: no cover
        raise ImportError(
            "backend='gsplat' needs the gsplat package with its CUDA kernels: pip install gsplat "
            "(on a machine with CUDA), or use backend='torch'"
        ) from e
    if means.device.type != "cuda":
        raise ValueError(
            "backend='gsplat' runs on CUDA tensors only; move the Gaussians and cameras to a CUDA "
            "device or use backend='torch' (the default on CPU)"
        )
    renders, alphas, meta = rasterization(
        means=means,
        quats=quats,
        scales=scales,
        opacities=opacities,
        colors=sh,
        viewmats=world_to_camera,
        Ks=K,
        width=width,
        height=height,
        near_plane=near_plane,
        far_plane=far_plane,
        radius_clip=radius_clip,
        eps2d=eps2d,
        sh_degree=sh_degree,
        packed=False,
        tile_size=tile_size,
        backgrounds=background,
        render_mode="RGB+ED",
        rasterize_mode="classic",
    )
    return renders[..., :3], alphas, renders[..., 3:4], meta
