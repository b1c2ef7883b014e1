"""The prior interface every score-distillation source implements, and its typed inputs/outputs.

Shapes (fixed letters): B groups, G images per group (G views of one moment, or G frames of one
clip), 3 colour channels, H x W pixels. Renders enter in [0, 1]; each prior maps them to its own
model space (pixels in [-1, 1], or VAE latents) itself.

Cameras are world-to-camera 4x4 matrices in OpenCV axes (+x right, +y down, +z forward), the one
convention of ``cameras``; times are scene times in [0, 1]. This package imports neither
``scene4d`` nor ``renderers``: it sees images, cameras and times, never Gaussians.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor

from .schedule import TimestepSchedule
from .sds import Weighting, cfg_combine, sds_gradient, sds_loss


class PriorError(ValueError):
    """A prior that cannot be loaded or used as asked: the message says which file or argument and
    what to do (e.g. where to put a local copy of the weights)."""


@dataclass
class PromptEmbeds:
    """A prompt encoded once, reused every step.

    ``cond`` / ``uncond``: the conditional and unconditional (negative-prompt) text states, (1, L, D)
    for text encoders; ``extra`` holds whatever else a prior conditions on (pooled states, an image
    embedding for image-to-video, the target index of the analytic prior)."""

    prompt: str
    negative: str
    cond: Optional[Tensor]
    uncond: Optional[Tensor]
    extra: Dict[str, Any] = field(default_factory=dict)

    def to(self, device) -> "PromptEmbeds":
        mv = lambda x: x.to(device) if isinstance(x, Tensor) else x  # noqa: E731
        return PromptEmbeds(self.prompt, self.negative, mv(self.cond), mv(self.uncond),
                            {k: mv(v) for k, v in self.extra.items()})


@dataclass
class SDSOutput:
    """What one score-distillation call returns.

    ``loss``: a scalar whose gradient with respect to the renders is the SDS gradient (chained
    through the prior's encoder where it has one); ``t``: (B,) integer timesteps used, one per
    group; ``grad_norm``: the norm of the (weighted, clamped) gradient in model space, a float
    tensor; ``preview``: (B, G, 3, H, W) the one-step denoised estimate in [0, 1] when asked for."""

    loss: Tensor
    t: Tensor
    grad_norm: Tensor
    preview: Optional[Tensor] = None
    terms: Dict[str, Tensor] = field(default_factory=dict)


class DiffusionPrior:
    """Base class of every prior. Subclasses set the class attributes and implement
    :meth:`encode_prompt` and :meth:`sds` (or, for noise-prediction models, the three hooks
    :meth:`encode_images`, :meth:`predict_noise`, :meth:`decode_preview` and let :meth:`sds` here do
    the rest).

    ``kind``: "image" (G independent images), "multiview" (G views attend to each other, cameras
    required), "video" (G frames of one clip, in time order), "image_to_video", "analytic".
    ``native_size``: the render size (pixels, square) the model wants; renders of another size are
    resized. ``group_size``: the G the model was trained for (1 for image priors)."""

    kind: str = "image"
    native_size: int = 64
    group_size: int = 1
    needs_cameras: bool = False
    needs_times: bool = False
    prediction_type: str = "epsilon"

    # ------------------------------------------------------------------ subclass hooks
    def encode_prompt(self, prompt: str, negative: str = "") -> PromptEmbeds:
        raise NotImplementedError

    @property
    def alphas_cumprod(self) -> Tensor:
        """(T,) float64 cumulative products of the noise schedule (DDPM's alpha-bar)."""
        raise NotImplementedError

    def encode_images(self, images: Tensor) -> Tensor:
        """(B, G, 3, H, W) renders in [0, 1] -> (B, G, C, h, w) model-space samples, differentiable."""
        raise NotImplementedError

    def predict_noise(self, x_t: Tensor, t: Tensor, emb: PromptEmbeds, *, cameras: Optional[Tensor],
                      times: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """Noise predictions ``(eps_cond, eps_uncond)``, each shaped like ``x_t`` (B, G, C, h, w), for
        timesteps ``t`` (B,). Called without gradients."""
        raise NotImplementedError

    def decode_preview(self, x0: Tensor) -> Tensor:
        """(B, G, C, h, w) model-space estimate -> (B, G, 3, h', w') images in [0, 1]."""
        return ((x0 + 1) / 2).clamp(0, 1)

    def check_inputs(self, images: Tensor, cameras: Optional[Tensor], times: Optional[Tensor]) -> None:
        if images.dim() != 5 or images.shape[2] != 3:
            raise PriorError(f"{type(self).__name__}.sds expects renders of shape (B, G, 3, H, W), got "
                             f"{tuple(images.shape)}")
        B, G = images.shape[:2]
        if self.needs_cameras and cameras is None:
            raise PriorError(f"{type(self).__name__} is a {self.kind} prior: it needs the cameras of the views "
                             "(cameras=(B, G, 4, 4) world-to-camera)")
        if cameras is not None and tuple(cameras.shape) != (B, G, 4, 4):
            raise PriorError(f"cameras must be (B={B}, G={G}, 4, 4) world-to-camera, got {tuple(cameras.shape)}")
        if self.needs_times and times is None:
            raise PriorError(f"{type(self).__name__} needs the scene time of each image (times=(B, G))")
        if times is not None and tuple(times.shape) != (B, G):
            raise PriorError(f"times must be (B={B}, G={G}), got {tuple(times.shape)}")

    # ------------------------------------------------------------------ the shared SDS step
    def sds(
        self,
        images: Tensor,
        emb: PromptEmbeds,
        *,
        cameras: Optional[Tensor] = None,
        intrinsics: Optional[Tensor] = None,
        times: Optional[Tensor] = None,
        guidance_scale: float = 7.5,
        t_range: Tuple[float, float] = (0.02, 0.98),
        schedule: Optional[TimestepSchedule] = None,
        step_ratio: float = 0.0,
        weighting: Weighting = "sds",
        grad_clip: Optional[float] = None,
        generator: Optional[torch.Generator] = None,
        want_preview: bool = False,
    ) -> SDSOutput:
        """Score distillation (DreamFusion, Poole et al. 2022, eq. 3) on renders ``images``.

        One timestep per group is drawn from ``schedule`` (or uniformly from ``t_range``, fractions
        of the training steps), the group is noised with noise drawn from ``generator``, the model
        predicts the noise with classifier-free guidance in diffusers' form
        ``eps_u + s (eps_c - eps_u)`` (threestudio's SD guidance writes ``eps_c + s (eps_c - eps_u)``,
        i.e. scale s there is s + 1 here), and ``grad = w(t) (eps_hat - eps)``.

        ``cameras``: (B, G, 4, 4) world-to-camera (OpenCV); ``intrinsics``: (B, G, 3, 3) pixel K at
        the render size (priors that condition on the field of view use it); ``times``: (B, G) scene
        times. ``step_ratio`` in [0, 1]: how far the run is, for annealed schedules.
        """
        self.check_inputs(images, cameras, times)
        B, G = images.shape[:2]
        x = self.encode_images(images)  # (B, G, C, h, w), carries the gradient back to the renders
        ac = self.alphas_cumprod.to(device=x.device)
        sched = schedule or TimestepSchedule(t_min=t_range[0], t_max=t_range[1])
        t = sched.sample(B, len(ac), step_ratio, generator=generator).to(x.device)
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
        a = ac[t].to(x.dtype).view(B, 1, 1, 1, 1)
        with torch.no_grad():
            x_t = a.sqrt() * x.detach() + (1 - a).sqrt() * noise
            eps_c, eps_u = self.predict_noise(x_t, t, emb, cameras=cameras, times=times)
            eps_hat = cfg_combine(eps_c, eps_u, guidance_scale)
            grad = sds_gradient(eps_hat, noise, a, weighting=weighting, clip=grad_clip)
            preview = None
            if want_preview:
                x0 = (x_t - (1 - a).sqrt() * eps_hat) / a.sqrt()
                preview = self.decode_preview(x0)
        loss = sds_loss(x, grad)
        return SDSOutput(loss=loss, t=t.detach().cpu(), grad_norm=grad.flatten(1).norm(dim=1).mean().detach(),
                         preview=preview, terms={"sds": loss})


def resize_renders(images: Tensor, size: int) -> Tensor:
    """(B, G, 3, H, W) -> (B, G, 3, size, size), bilinear with antialiasing when shrinking."""
    B, G, C, H, W = images.shape
    if (H, W) == (size, size):
        return images
    flat = images.reshape(B * G, C, H, W)
    out = torch.nn.functional.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False,
                                          antialias=size < max(H, W))
    return out.reshape(B, G, C, size, size)
