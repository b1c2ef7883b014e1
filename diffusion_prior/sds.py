"""Score distillation: guidance, weighting, the gradient and the loss that injects it.

The gradient of DreamFusion's SDS (Poole et al. 2022, eq. 3) with respect to the model-space sample
``x`` (pixels or latents) is ``w(t) (eps_hat(x_t; y, t) - eps)``: the U-Net's Jacobian is dropped.
It is injected through a loss whose gradient is exactly that (:func:`sds_loss`).
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import Tensor

Weighting = Literal["sds", "uniform", "fantasia3d"]


def cfg_combine(eps_cond: Tensor, eps_uncond: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance (Ho & Salimans 2022) in diffusers' form:
    ``eps_u + s (eps_c - eps_u)``. s = 1 is the conditional model alone, s = 0 the unconditional.
    threestudio's Stable Diffusion guidance uses ``eps_c + s (eps_c - eps_u)``: its
    ``guidance_scale: 100`` is 101 here."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def weight(alpha_bar: Tensor, weighting: Weighting) -> Tensor:
    """w(t): ``sds`` = 1 - alpha_bar (DreamFusion's choice, = sigma_t^2), ``uniform`` = 1,
    ``fantasia3d`` = sqrt(alpha_bar) (1 - alpha_bar)."""
    if weighting == "sds":
        return 1 - alpha_bar
    if weighting == "uniform":
        return torch.ones_like(alpha_bar)
    if weighting == "fantasia3d":
        return alpha_bar.sqrt() * (1 - alpha_bar)
    raise ValueError(f"unknown SDS weighting {weighting!r}; choose sds, uniform or fantasia3d")


def sds_gradient(eps_hat: Tensor, noise: Tensor, alpha_bar: Tensor, *, weighting: Weighting = "sds",
                 clip: Optional[float] = None) -> Tensor:
    """``w(t) (eps_hat - eps)``, NaN/inf zeroed (a diverged U-Net output must not poison the
    scene) and clamped elementwise to ``[-clip, clip]`` when ``clip`` is given."""
    g = weight(alpha_bar, weighting) * (eps_hat - noise)
    g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
    if clip is not None:
        g = g.clamp(-clip, clip)
    return g


def sds_loss(x: Tensor, grad: Tensor) -> Tensor:
    """A scalar whose gradient with respect to ``x`` (B, ...) is ``grad / B``.

    With ``target = (x - grad).detach()``, ``L = 1/2 ||x - target||^2 / B``, so
    ``dL/dx = (x - target) / B = grad / B``: the U-Net never enters the autograd graph, and the
    gradient reaches the renders (through the VAE encoder, for latent priors) by the chain rule.
    The value of ``L`` is ``1/2 ||grad||^2 / B``, a useful magnitude to log, not an objective.
    """
    target = (x - grad).detach()
    return 0.5 * (x - target).square().sum() / x.shape[0]
