"""The 4D scene: canonical Gaussians plus a deformation field; ``scene.at(t)`` -> Gaussians.

Canonical parameters are stored raw, as the optimiser sees them: ``means`` (N,3), ``quats`` (N,4)
wxyz, ``log_scales`` (N,3), ``opacity_logits`` (N,), ``sh_dc`` (N,1,3), ``sh_rest`` (N,K-1,3).
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor, nn

from renderers import Gaussians, rgb_to_sh0

from .deformation import make_field

MAX_LOG_SCALE_OFFSET = 0.5
"""Largest change of log-scale the deformation may apply (x1.65 / /1.65)."""

PARAM_NAMES = ("means", "quats", "log_scales", "opacity_logits", "sh_dc", "sh_rest")


def init_params(points: Tensor, colors: Optional[Tensor], sh_degree: int, *, opacity: float = 0.1,
                scale_from_neighbours: bool = True) -> Dict[str, Tensor]:
    """Canonical parameters for Gaussians at ``points`` (N,3), with colours (N,3) in [0,1] or grey."""
    n = points.shape[0]
    if colors is None:
        colors = torch.full((n, 3), 0.5)
    if scale_from_neighbours and n > 1:
        d = _mean_knn_distance(points, k=3)
    else:
        d = torch.full((n,), 0.01)
    k = (sh_degree + 1) ** 2
    return {
        "means": points.clone().float(),
        "quats": torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1),
        "log_scales": torch.log(0.5 * d.clamp_min(1e-4))[:, None].repeat(1, 3).float(),
        "opacity_logits": torch.logit(torch.full((n,), opacity)),
        "sh_dc": rgb_to_sh0(colors.float())[:, None, :],
        "sh_rest": torch.zeros(n, k - 1, 3),
    }


def _mean_knn_distance(x: Tensor, k: int = 3, chunk: int = 2048) -> Tensor:
    """Mean distance of each point to its k nearest neighbours (chunked, no extra dependency)."""
    out = []
    for i in range(0, x.shape[0], chunk):
        d = torch.cdist(x[i : i + chunk], x)
        d = d.topk(k + 1, largest=False).values[:, 1:]  # drop self
        out.append(d.mean(dim=1))
    return torch.cat(out)


class Scene4D(nn.Module):
    """Canonical Gaussians + an optional deformation field (None = static scene)."""

    def __init__(self, params: Dict[str, Tensor], deformation_cfg=None, sh_degree: int = 0):
        super().__init__()
        self.params = nn.ParameterDict({k: nn.Parameter(params[k].clone()) for k in PARAM_NAMES})
        self.sh_degree = sh_degree
        self.deformation_cfg = deformation_cfg
        self.deformation = make_field(deformation_cfg) if deformation_cfg is not None else None

    def __len__(self) -> int:
        return self.params["means"].shape[0]

    def canonical(self) -> Gaussians:
        p = self.params
        return Gaussians(
            means=p["means"],
            quats=p["quats"],
            scales=torch.exp(p["log_scales"]),
            opacities=torch.sigmoid(p["opacity_logits"]),
            sh=torch.cat([p["sh_dc"], p["sh_rest"]], dim=1),
        )

    def at(self, t: float, *, deform: bool = True) -> Gaussians:
        """The Gaussians at scene time ``t`` in [0, 1]."""
        p = self.params
        if self.deformation is None or not deform:
            return self.canonical()
        d_means, d_quats, d_log_scales = self.deformation(p["means"], t)
        return Gaussians(
            means=p["means"] + d_means,
            quats=p["quats"] + d_quats,
            # bounded: an unbounded scale offset lets one step blow Gaussians up to screen size
            scales=torch.exp(p["log_scales"] + MAX_LOG_SCALE_OFFSET * torch.tanh(d_log_scales / MAX_LOG_SCALE_OFFSET)),
            opacities=torch.sigmoid(p["opacity_logits"]),
            sh=torch.cat([p["sh_dc"], p["sh_rest"]], dim=1),
        )

    def bounds(self):
        """(centre (3,), radius) of the opaque bulk over the whole time range, for framing paths."""
        from .render import robust_bounds

        with torch.no_grad():
            if self.deformation is None:
                return robust_bounds(self.canonical())
            return robust_bounds(Gaussians.cat([self.at(float(t)) for t in torch.linspace(0, 1, 5)]))
