"""Deformation fields: (canonical Gaussian, t) -> offsets of position, rotation and log-scale.

Two fields:

* :class:`HexPlaneField` (default) — multi-resolution space-time planes (K-planes / HexPlane, as in
  4DGaussians, Wu et al. CVPR 2024): six 2D feature planes (xy, xz, yz, xt, yt, zt) sampled with
  ``grid_sample`` and multiplied (Hadamard) per resolution, concatenated over resolutions, then a
  small MLP with one zero-initialised linear head per offset.
* :class:`MLPField` — positional encoding of (x, t) into an MLP (Deformable-3DGS, Yang et al. 2024).

Every head starts at zero, so a fresh field is the identity: a new scene is static until trained.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class HexPlaneConfig:
    """Space-time plane field."""

    kind: str = "hexplane"
    features: int = 16
    """Feature channels per plane."""
    resolutions: List[int] = field(default_factory=lambda: [32, 64])
    """Spatial plane resolutions (one set of six planes per entry)."""
    time_resolution: int = 16
    """Resolution of the time axis of the xt, yt, zt planes."""
    hidden: int = 64
    """Width of the MLP head."""
    bounds_radius: float = 1.5
    """Half-size of the cube around ``bounds_center`` that the planes cover (set from the data)."""
    bounds_center: Tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class MLPConfig:
    """Positional-encoding MLP field."""

    kind: str = "mlp"
    pos_freqs: int = 8
    time_freqs: int = 6
    hidden: int = 128
    depth: int = 4
    bounds_radius: float = 1.5
    bounds_center: Tuple[float, float, float] = (0.0, 0.0, 0.0)


class _Heads(nn.Module):
    """Shared trunk output -> (d_means (N,3), d_quats (N,4), d_log_scales (N,3)), zero at init."""

    def __init__(self, width: int):
        super().__init__()
        self.pos = nn.Linear(width, 3)
        self.rot = nn.Linear(width, 4)
        self.scale = nn.Linear(width, 3)
        for lin in (self.pos, self.rot, self.scale):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, h: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        return self.pos(h), self.rot(h), self.scale(h)


class HexPlaneField(nn.Module):
    # plane axes: pairs of coordinates of (x, y, z, t)
    PLANES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))

    def __init__(self, cfg: HexPlaneConfig):
        super().__init__()
        self.cfg = cfg
        self.planes = nn.ParameterList()
        for res in cfg.resolutions:
            for a, b in self.PLANES:
                ra = cfg.time_resolution if a == 3 else res
                rb = cfg.time_resolution if b == 3 else res
                if b == 3:
                    # time planes start at 1: the Hadamard product then equals the static features
                    p = torch.ones(1, cfg.features, rb, ra)
                else:
                    p = torch.empty(1, cfg.features, rb, ra).uniform_(0.1, 0.5)
                self.planes.append(nn.Parameter(p))
        width = cfg.features * len(cfg.resolutions)
        self.trunk = nn.Sequential(nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU())
        self.heads = _Heads(cfg.hidden)
        self.register_buffer("center", torch.tensor(cfg.bounds_center, dtype=torch.float32))

    def features(self, means: Tensor, t: float) -> Tensor:
        """(N, 3) positions at scene time t -> (N, features * len(resolutions))."""
        x = (means - self.center) / self.cfg.bounds_radius
        tt = torch.full_like(x[:, :1], 2.0 * float(t) - 1.0)
        xt = torch.cat([x.clamp(-1, 1), tt], dim=-1)  # (N, 4) in [-1, 1]
        out = []
        i = 0
        for _ in self.cfg.resolutions:
            f = None
            for a, b in self.PLANES:
                grid = xt[:, (a, b)].reshape(1, -1, 1, 2)
                v = F.grid_sample(self.planes[i], grid, mode="bilinear", padding_mode="border", align_corners=True)
                v = v[0, :, :, 0].t()  # (N, features)
                f = v if f is None else f * v
                i += 1
            out.append(f)
        return torch.cat(out, dim=-1)

    def forward(self, means: Tensor, t: float) -> Tuple[Tensor, Tensor, Tensor]:
        return self.heads(self.trunk(self.features(means, t)))

    @torch.no_grad()
    def hold_after(self, t: float) -> None:
        """Make the field constant in time after ``t``: every time knot past the one that the window
        ``[0, t]`` reaches takes that knot's value. A time curriculum calls this each step, so a
        moment entering the window starts where the last fitted one ended (as a tracker would)."""
        knots = self.cfg.time_resolution
        last = min(knots - 1, int(math.ceil(float(t) * (knots - 1) - 1e-6)))
        if last >= knots - 1:
            return
        for p, (_, b) in self._planes_with_axes():
            if b == 3:  # time runs along the rows of the xt, yt, zt planes
                p[..., last + 1 :, :] = p[..., last : last + 1, :]

    def _planes_with_axes(self):
        """(plane, (axis a, axis b)) for every plane, all resolutions, in storage order."""
        return zip(self.planes, [ab for _ in self.cfg.resolutions for ab in self.PLANES])

    def regularizers(self) -> Dict[str, Tensor]:
        """Plane total variation (spatial smoothness) and time smoothness (K-planes eq. 6-7)."""
        tv = []
        smooth = []
        for p, (_, b) in self._planes_with_axes():
            tv.append((p[..., 1:, :] - p[..., :-1, :]).square().mean() + (p[..., :, 1:] - p[..., :, :-1]).square().mean())
            if b == 3:  # second difference along time (rows of the time planes)
                d2 = p[..., 2:, :] - 2 * p[..., 1:-1, :] + p[..., :-2, :]
                smooth.append(d2.square().mean())
        return {"plane_tv": torch.stack(tv).mean(), "time_smoothness": torch.stack(smooth).mean()}


def positional_encoding(x: Tensor, n_freqs: int) -> Tensor:
    """(N, D) -> (N, D * (1 + 2 n_freqs)): x, sin(2^k pi x), cos(2^k pi x)."""
    freqs = (2.0 ** torch.arange(n_freqs, dtype=x.dtype, device=x.device)) * math.pi
    xb = x[..., None] * freqs  # (N, D, F)
    return torch.cat([x, torch.sin(xb).flatten(1), torch.cos(xb).flatten(1)], dim=-1)


class MLPField(nn.Module):
    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.cfg = cfg
        d_in = 3 * (1 + 2 * cfg.pos_freqs) + (1 + 2 * cfg.time_freqs)
        layers: List[nn.Module] = []
        w = d_in
        for _ in range(cfg.depth):
            layers += [nn.Linear(w, cfg.hidden), nn.ReLU()]
            w = cfg.hidden
        self.trunk = nn.Sequential(*layers)
        self.heads = _Heads(cfg.hidden)
        self.register_buffer("center", torch.tensor(cfg.bounds_center, dtype=torch.float32))

    def forward(self, means: Tensor, t: float) -> Tuple[Tensor, Tensor, Tensor]:
        x = ((means - self.center) / self.cfg.bounds_radius).clamp(-1.5, 1.5)
        tt = torch.full_like(x[:, :1], float(t))
        h = torch.cat([positional_encoding(x, self.cfg.pos_freqs), positional_encoding(tt, self.cfg.time_freqs)], -1)
        return self.heads(self.trunk(h))

    def regularizers(self) -> Dict[str, Tensor]:
        return {}


def make_field(cfg) -> nn.Module:
    if isinstance(cfg, dict):
        cfg = config_from_dict(cfg)
    if isinstance(cfg, HexPlaneConfig):
        return HexPlaneField(cfg)
    if isinstance(cfg, MLPConfig):
        return MLPField(cfg)
    raise ValueError(f"unknown deformation config {cfg!r}")


def config_from_dict(d: dict):
    kinds = {"hexplane": HexPlaneConfig, "mlp": MLPConfig}
    kind = d.get("kind")
    if kind not in kinds:
        raise ValueError(f"unknown deformation kind {kind!r}; known: {sorted(kinds)}")
    d = dict(d)
    if "bounds_center" in d:
        d["bounds_center"] = tuple(d["bounds_center"])
    return kinds[kind](**d)


def config_to_dict(cfg) -> dict:
    return asdict(cfg)
