"""The 4D scene: canonical Gaussians plus a deformation field; ``scene.at(t)`` -> Gaussians.

Canonical parameters are stored raw, as the optimiser sees them: ``means`` (N,3), ``quats`` (N,4)
wxyz, ``log_scales`` (N,3), ``opacity_logits`` (N,), ``sh_dc`` (N,1,3), ``sh_rest`` (N,K-1,3).

Optional **temporal opacity** (``t_center`` (N,), ``t_log_scale`` (N,), as in Yang et al.'s
real-time 4DGS and Spacetime Gaussians): a Gaussian's opacity at time t is multiplied by
``exp(-1/2 ((t - t_center) / exp(t_log_scale))^2)`` and its centre moves by ``t_velocity (N,3) * (t -
t_center)`` (before the deformation field). It lets a fit represent what a deformation
field cannot reach from a zero start: objects that travel far (a ball crossing the scene), appear
or leave the frame. Gaussians that stay whole-clip (large time scale) are the static scene.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from torch import Tensor, nn

from renderers import Gaussians, rgb_to_sh0

from .deformation import make_field

MAX_LOG_SCALE_OFFSET = 0.5
"""Largest change of log-scale the deformation may apply (x1.65 / /1.65)."""

PARAM_NAMES = ("means", "quats", "log_scales", "opacity_logits", "sh_dc", "sh_rest")
TEMPORAL_NAMES = ("t_center", "t_log_scale", "t_velocity")
"""Extra per-Gaussian parameters of temporal opacity (present only when it is on)."""


def init_params(points: Tensor, colors: Optional[Tensor], sh_degree: int, *, opacity: float = 0.1,
                scale_from_neighbours: bool = True, times: Optional[Tensor] = None,
                time_scale: float = 0.25) -> Dict[str, Tensor]:
    """Canonical parameters for Gaussians at ``points`` (N,3), with colours (N,3) in [0,1] or grey.

    ``times`` (N,) in [0, 1] turns temporal opacity on: each Gaussian is centred at its time with
    temporal standard deviation ``time_scale``.
    """
    n = points.shape[0]
    if colors is None:
        colors = torch.full((n, 3), 0.5)
    if scale_from_neighbours and n > 1:
        d = _mean_knn_distance(points, k=3)
    else:
        d = torch.full((n,), 0.01)
    k = (sh_degree + 1) ** 2
    out = {
        "means": points.clone().float(),
        "quats": torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1),
        "log_scales": torch.log(0.5 * d.clamp_min(1e-4))[:, None].repeat(1, 3).float(),
        "opacity_logits": torch.logit(torch.full((n,), opacity)),
        "sh_dc": rgb_to_sh0(colors.float())[:, None, :],
        "sh_rest": torch.zeros(n, k - 1, 3),
    }
    if times is not None:
        out["t_center"] = times.detach().clone().float().reshape(n)
        out["t_log_scale"] = torch.full((n,), math.log(time_scale))
        out["t_velocity"] = torch.zeros(n, 3)
    return out


def _mean_knn_distance(x: Tensor, k: int = 3, chunk: int = 2048) -> Tensor:
    """Mean distance of each point to its k nearest neighbours (chunked, no extra dependency)."""
    out = []
    k = min(k, x.shape[0] - 1)  # a handful of points has fewer than k neighbours
    for i in range(0, x.shape[0], chunk):
        d = torch.cdist(x[i : i + chunk], x)
        d = d.topk(k + 1, largest=False).values[:, 1:]  # drop self
        out.append(d.mean(dim=1))
    return torch.cat(out)


class Scene4D(nn.Module):
    """Canonical Gaussians + an optional deformation field (None = static scene)."""

    def __init__(self, params: Dict[str, Tensor], deformation_cfg=None, sh_degree: int = 0):
        super().__init__()
        names = PARAM_NAMES + (TEMPORAL_NAMES if all(k in params for k in TEMPORAL_NAMES) else ())
        self.params = nn.ParameterDict({k: nn.Parameter(params[k].clone()) for k in names})
        self.sh_degree = sh_degree
        self.deformation_cfg = deformation_cfg
        self.deformation = make_field(deformation_cfg) if deformation_cfg is not None else None

    def __len__(self) -> int:
        return self.params["means"].shape[0]

    @property
    def device(self) -> torch.device:
        """Where the parameters (and so every ``at(t)``) live."""
        return self.params["means"].device

    @property
    def temporal_opacity(self) -> bool:
        return "t_center" in self.params

    @property
    def param_names(self) -> tuple:
        return tuple(self.params.keys())

    def opacities_at(self, t: float) -> Tensor:
        p = self.params
        o = torch.sigmoid(p["opacity_logits"])
        if self.temporal_opacity:
            z = (float(t) - p["t_center"]) * torch.exp(-p["t_log_scale"])
            o = o * torch.exp(-0.5 * z.square())
        return o

    def canonical(self) -> Gaussians:
        p = self.params
        return Gaussians(
            means=p["means"],
            quats=p["quats"],
            scales=torch.exp(p["log_scales"]),
            opacities=torch.sigmoid(p["opacity_logits"]),
            sh=torch.cat([p["sh_dc"], p["sh_rest"]], dim=1),
        )

    def means_at(self, t: float) -> Tensor:
        """Centres at time t before the deformation field (moved by their velocity when temporal)."""
        p = self.params
        if self.temporal_opacity:
            return p["means"] + p["t_velocity"] * (float(t) - p["t_center"])[:, None]
        return p["means"]

    def at(self, t: float, *, deform: bool = True) -> Gaussians:
        """The Gaussians at scene time ``t`` in [0, 1]."""
        p = self.params
        if self.deformation is None or not deform:
            g = self.canonical()
            if self.temporal_opacity:
                g = Gaussians(self.means_at(t), g.quats, g.scales, self.opacities_at(t), g.sh)
            return g
        means = self.means_at(t)
        if getattr(self.deformation, "moves_rigidly", False):
            means, quats = self.deformation.warp(means, p["quats"], t)
            return Gaussians(means, quats, torch.exp(p["log_scales"]), self.opacities_at(t),
                             torch.cat([p["sh_dc"], p["sh_rest"]], dim=1))
        d_means, d_quats, d_log_scales = self.deformation(means, t)
        return Gaussians(
            means=means + d_means,
            quats=p["quats"] + d_quats,
            # bounded: an unbounded scale offset lets one step blow Gaussians up to screen size
            scales=torch.exp(p["log_scales"] + MAX_LOG_SCALE_OFFSET * torch.tanh(d_log_scales / MAX_LOG_SCALE_OFFSET)),
            opacities=self.opacities_at(t),
            sh=torch.cat([p["sh_dc"], p["sh_rest"]], dim=1),
        )

    def bounds(self):
        """(centre (3,), radius) of the opaque bulk over the whole time range, for framing paths."""
        from .render import robust_bounds

        with torch.no_grad():
            if self.deformation is None and not self.temporal_opacity:
                return robust_bounds(self.canonical())
            return robust_bounds(Gaussians.cat([self.at(float(t)) for t in torch.linspace(0, 1, 5)]))
