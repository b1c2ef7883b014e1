"""A prior whose score is known in closed form: the exact test of the whole SDS machinery.

The clean-image distribution given the prompt is a narrow Gaussian around known target renders,
``p(x0 | c) = N(mu_c, s^2 I)``, with ``mu_c`` the target at the sampled camera and time (model space
``x = 2 img - 1``). Under DDPM noising ``x_t = alpha x0 + sigma eps`` (``alpha = sqrt(alpha_bar)``,
``sigma = sqrt(1 - alpha_bar)``), ``x_t ~ N(alpha mu, alpha^2 s^2 + sigma^2)``, so the optimal noise
prediction is

    eps*(x_t) = -sigma * score(x_t) = sigma (x_t - alpha mu) / (alpha^2 s^2 + sigma^2)

and, for a render ``x``, the SDS gradient averaged over the noise is

    E[grad | t] = w(t) sigma alpha (x - mu) / (alpha^2 s^2 + sigma^2)

which pulls every pixel straight to the target. The unconditional model is a wider Gaussian
``N(mu_u, s_u^2 I)`` (mean ``mu_u`` a constant grey by default), so classifier-free guidance
``eps_u + g (eps_c - eps_u)`` keeps a closed form too (:meth:`AnalyticPrior.expected_gradient`).

The targets come from a callable handed in by the caller (``scene4d`` renders a scene folder), so
this package still knows nothing of Gaussians.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

from .base import DiffusionPrior, PriorError, PromptEmbeds, SDSOutput
from .schedule import TimestepSchedule, alphas_cumprod
from .sds import Weighting, cfg_combine, sds_gradient, sds_loss, weight

TargetFn = Callable[..., Tensor]
"""``target_fn(world_to_camera (B, G, 4, 4), K (B, G, 3, 3), times (B, G), height, width) ->
(B, G, 3, H, W)`` target renders in [0, 1]."""


class AnalyticPrior(DiffusionPrior):
    """Closed-form denoiser toward target renders (see the module docstring).

    Args:
        target_fn: renders the target at given cameras and times (see :data:`TargetFn`).
        s: standard deviation of the conditional clean-image distribution (model space, [-1, 1]).
        uncond_mean: model-space value of the unconditional mean (0 = grey 0.5).
        uncond_s: standard deviation of the unconditional distribution.
        schedule: the DDPM alpha-bar schedule (default: Stable Diffusion's scaled-linear, 1000 steps).
    """

    kind = "analytic"
    native_size = 0  # any: the targets are rendered at the render size
    group_size = 4
    needs_cameras = True
    needs_times = True

    def __init__(self, target_fn: TargetFn, *, s: float = 0.05, uncond_mean: float = 0.0, uncond_s: float = 0.5,
                 beta_schedule: str = "scaled_linear"):
        if s <= 0 or uncond_s <= 0:
            raise PriorError("analytic prior: s and uncond_s must be positive")
        self.target_fn = target_fn
        self.s = float(s)
        self.uncond_mean = float(uncond_mean)
        self.uncond_s = float(uncond_s)
        self._ac = alphas_cumprod(beta_schedule)

    @property
    def alphas_cumprod(self) -> Tensor:
        return self._ac

    def encode_prompt(self, prompt: str, negative: str = "") -> PromptEmbeds:
        # the prompt is the target itself: nothing to encode
        return PromptEmbeds(prompt, negative, None, None)

    def encode_images(self, images: Tensor) -> Tensor:
        return images * 2 - 1

    def targets(self, cameras: Tensor, intrinsics: Tensor, times: Tensor, height: int, width: int) -> Tensor:
        """(B, G, 3, H, W) model-space conditional means at these cameras and times."""
        with torch.no_grad():
            return self.target_fn(cameras, intrinsics, times, height, width) * 2 - 1

    def _eps(self, x_t: Tensor, a: Tensor, mu, s: float) -> Tensor:
        alpha, sigma2 = a.sqrt(), 1 - a
        return sigma2.sqrt() * (x_t - alpha * mu) / (a * s * s + sigma2)

    def sds(self, images: Tensor, emb: PromptEmbeds, *, cameras: Optional[Tensor] = None,
            intrinsics: Optional[Tensor] = None, times: Optional[Tensor] = None, guidance_scale: float = 1.0,
            t_range: Tuple[float, float] = (0.02, 0.98), schedule: Optional[TimestepSchedule] = None,
            step_ratio: float = 0.0, weighting: Weighting = "sds", grad_clip: Optional[float] = None,
            generator: Optional[torch.Generator] = None, want_preview: bool = False,
            targets: Optional[Tensor] = None) -> SDSOutput:
        """As :meth:`DiffusionPrior.sds`; the targets are rendered at ``cameras``/``intrinsics``/
        ``times`` unless given (``targets``, (B, G, 3, H, W) in [0, 1])."""
        self.check_inputs(images, cameras, times)
        B, G, _, H, W = images.shape
        x = self.encode_images(images)
        if targets is not None:
            mu = targets.to(x) * 2 - 1
        else:
            if intrinsics is None:
                raise PriorError("analytic prior: pass intrinsics=(B, G, 3, 3) so the targets match the renders")
            mu = self.targets(cameras, intrinsics, times, H, W).to(x)
        ac = self._ac.to(x.device)
        sched = schedule or TimestepSchedule(t_min=t_range[0], t_max=t_range[1])
        t = sched.sample(B, len(ac), step_ratio, generator=generator).to(x.device)
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x)
        a = ac[t].to(x.dtype).view(B, 1, 1, 1, 1)
        with torch.no_grad():
            x_t = a.sqrt() * x.detach() + (1 - a).sqrt() * noise
            eps_c = self._eps(x_t, a, mu, self.s)
            eps_u = self._eps(x_t, a, self.uncond_mean, self.uncond_s)
            eps_hat = cfg_combine(eps_c, eps_u, guidance_scale)
            grad = sds_gradient(eps_hat, noise, a, weighting=weighting, clip=grad_clip)
            preview = None
            if want_preview:
                preview = (((x_t - (1 - a).sqrt() * eps_hat) / a.sqrt() + 1) / 2).clamp(0, 1)
        loss = sds_loss(x, grad)
        return SDSOutput(loss=loss, t=t.cpu(), grad_norm=grad.flatten(1).norm(dim=1).mean(), preview=preview,
                         terms={"sds": loss})

    def expected_gradient(self, images: Tensor, targets: Tensor, t: int, *, guidance_scale: float = 1.0,
                          weighting: Weighting = "sds") -> Tensor:
        """The closed-form mean over the noise of the model-space SDS gradient at timestep ``t``:
        ``w sigma alpha [g (x - mu_c) / v_c + (1 - g) (x - mu_u) / v_u]`` with
        ``v = alpha^2 s^2 + sigma^2`` (g = 1 without guidance)."""
        a = self._ac[int(t)].to(images.dtype)
        x, mu = images * 2 - 1, targets * 2 - 1
        alpha, sigma2 = a.sqrt(), 1 - a
        vc = a * self.s**2 + sigma2
        vu = a * self.uncond_s**2 + sigma2
        g = guidance_scale
        return weight(a, weighting) * sigma2.sqrt() * alpha * (g * (x - mu) / vc + (1 - g) * (x - self.uncond_mean) / vu)
