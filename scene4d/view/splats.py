"""A scene's Gaussians as the viewer's splat buffers, evaluated at a time.

The browser draws splats from (centre, covariance, rgb, opacity) per Gaussian. A time change
moves only the Gaussians whose field moves them: rows that stay put over the whole time range
(entities without a field, and rows a field leaves where they are) form one ``static`` set sent
once; the rest form a ``dynamic`` set that each time change re-evaluates (the deformation runs here,
on the scene's device) and re-sends. ``bytes_per_update`` says what a time change costs on the wire.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch

from renderers import Gaussians, covariances, sh0_to_rgb

#: bytes per Gaussian in viser's splat buffer (centre f32x3 + pad, covariance f16x6, rgba u8x4)
BYTES_PER_SPLAT = 32


@dataclass
class SplatArrays:
    """One set of splats in the layout viser's ``add_gaussian_splats`` takes."""

    centers: np.ndarray  # (N, 3) float32
    covariances: np.ndarray  # (N, 3, 3) float32
    rgbs: np.ndarray  # (N, 3) float32 in [0, 1]
    opacities: np.ndarray  # (N, 1) float32 in [0, 1]

    def __len__(self) -> int:
        return self.centers.shape[0]


def splat_arrays(g: Gaussians) -> SplatArrays:
    """Gaussians -> viser's arrays. Colour is the view-independent (degree-0) colour: the WebGL
    splats carry no spherical harmonics; the render panel shows every band."""
    with torch.no_grad():
        cov = covariances(g.quats.float(), g.scales.float())
        rgb = sh0_to_rgb(g.sh[:, 0].float()).clamp(0, 1)
        return SplatArrays(
            centers=g.means.float().cpu().numpy(),
            covariances=cov.cpu().numpy(),
            rgbs=rgb.cpu().numpy(),
            opacities=g.opacities.float().clamp(0, 1).cpu().numpy()[:, None],
        )


def _take(g: Gaussians, rows: torch.Tensor) -> Gaussians:
    return Gaussians(g.means[rows], g.quats[rows], g.scales[rows], g.opacities[rows], g.sh[rows])


class SceneSplats:
    """The splats of ``scene`` (anything with ``at(t) -> Gaussians``: a Scene4D or a static .ply).

    ``probe`` times in [0, 1] decide which rows move: a row is dynamic when its centre moves by more
    than ``tol`` x the scene's extent, its opacity changes, or its covariance changes, at any of
    them; with temporal opacity (Gaussians that appear and vanish) every row is dynamic.
    """

    def __init__(self, scene, *, probe: int = 9, tol: float = 1e-4):
        self.scene = scene
        self.deform = True
        with torch.no_grad():
            g0 = scene.at(0.0)
            n = len(g0)
            moving = torch.zeros(n, dtype=torch.bool, device=g0.means.device)
            if getattr(scene, "temporal_opacity", False):
                # a Gaussian that lives between two probe times would look static (and invisible):
                # with temporal opacity every row counts as moving
                moving[:] = True
            elif getattr(scene, "dynamic", False):
                ext = float((g0.means.max(0).values - g0.means.min(0).values).norm()) if n else 1.0
                c0 = covariances(g0.quats, g0.scales)
                scale0 = c0.flatten(1).abs().amax(1) + 1e-12
                for t in np.linspace(0.0, 1.0, probe)[1:]:
                    g = scene.at(float(t))
                    moving |= (g.means - g0.means).norm(dim=1) > tol * max(ext, 1e-6)
                    moving |= (g.opacities - g0.opacities).abs() > 1e-3
                    moving |= (covariances(g.quats, g.scales) - c0).flatten(1).abs().amax(1) > 1e-3 * scale0
        self.n = n
        self.timings = (0.0, 0.0)
        self.dynamic_rows = torch.nonzero(moving).flatten()
        self.static_rows = torch.nonzero(~moving).flatten()
        self._fast = self._node_parts()

    def _node_parts(self):
        """For a scene whose moving rows are all carried by motion-node fields (no temporal
        opacity): per field, the rows, canonical means and quats, and the node weights, computed
        once; a time change then only blends the nodes' poses (the weights are most of a warp).
        None when some moving row is moved otherwise (hexplane and MLP fields evaluate in full)."""
        from ..deformation import MotionNodesField

        sc = self.scene
        fields = getattr(sc, "fields", None)
        if not fields or getattr(sc, "temporal_opacity", False) or self.n_dynamic == 0:
            return None
        with torch.no_grad():
            ent = sc.entity[self.dynamic_rows]
            parts = []
            for i, f in enumerate(fields):
                pos = torch.nonzero(ent == i).flatten()  # positions within the moving set
                if pos.numel() == 0:
                    continue
                if not isinstance(f, MotionNodesField):
                    return None
                rows = self.dynamic_rows[pos]
                means, quats = sc.params["means"][rows], sc.params["quats"][rows]
                parts.append((f, pos, means, quats, f.weights(means)))
            g = sc.at(0.0, deform=False)
            rest = (g.scales[self.dynamic_rows], g.opacities[self.dynamic_rows], g.sh[self.dynamic_rows])
        return parts, rest

    def _dynamic_gaussians(self, t: float) -> Gaussians:
        if self._fast is None or not self.deform:
            return _take(self.gaussians(t), self.dynamic_rows)
        parts, (scales, opacities, sh) = self._fast
        means = torch.empty(self.n_dynamic, 3, dtype=scales.dtype, device=scales.device)
        quats = torch.empty(self.n_dynamic, 4, dtype=scales.dtype, device=scales.device)
        with torch.no_grad():
            for f, pos, m, q, w in parts:
                mm, qq = f.warp(m, q, float(t), weights=w)
                means[pos], quats[pos] = mm, qq
        return Gaussians(means, quats, scales, opacities, sh)

    @property
    def n_dynamic(self) -> int:
        return int(self.dynamic_rows.numel())

    @property
    def bytes_per_update(self) -> int:
        """What one time change sends: the dynamic rows' splats."""
        return self.n_dynamic * BYTES_PER_SPLAT

    def gaussians(self, t: float) -> Gaussians:
        """Every Gaussian at ``t`` (canonical when the deformation is off)."""
        with torch.no_grad():
            if not self.deform and hasattr(self.scene, "at"):
                try:
                    return self.scene.at(float(t), deform=False)
                except TypeError:  # a static scene has nothing to switch off
                    pass
            return self.scene.at(float(t))

    def static(self) -> SplatArrays:
        return splat_arrays(_take(self.gaussians(0.0), self.static_rows))

    def dynamic(self, t: float) -> Optional[SplatArrays]:
        """The moving rows at ``t``; ``timings`` then holds (evaluate, pack) seconds."""
        if self.n_dynamic == 0:
            return None
        t0 = time.perf_counter()
        g = self._dynamic_gaussians(t)
        t1 = time.perf_counter()
        out = splat_arrays(g)
        self.timings = (t1 - t0, time.perf_counter() - t1)
        return out

    def all_at(self, t: float) -> Dict[str, SplatArrays]:
        out = {"static": self.static()}
        d = self.dynamic(t)
        if d is not None:
            out["dynamic"] = d
        return out
