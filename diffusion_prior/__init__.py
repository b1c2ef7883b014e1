"""scene4d diffusion priors: renders (+ cameras, times) and a prompt -> score-distillation gradients.

Import direction: ``scene4d`` -> ``diffusion_prior``; this package imports neither ``scene4d`` nor
``renderers`` (it knows images, cameras and times, never Gaussians). diffusers and transformers are
imported only by the modules that load real models, on use.

    base.py      DiffusionPrior, PromptEmbeds, SDSOutput, PriorError
    schedule.py  TimestepSchedule (uniform / linear / sqrt / deterministic), alphas_cumprod
    sds.py       cfg_combine, weight, sds_gradient, sds_loss (the reparameterisation, derived)
    analytic.py  AnalyticPrior: closed-form score toward known target renders (the exact test)
"""

from .base import DiffusionPrior, PriorError, PromptEmbeds, SDSOutput, resize_renders
from .schedule import TimestepSchedule, alphas_cumprod
from .sds import cfg_combine, sds_gradient, sds_loss, weight

__all__ = ["DiffusionPrior", "PriorError", "PromptEmbeds", "SDSOutput", "resize_renders", "TimestepSchedule",
           "alphas_cumprod", "cfg_combine", "sds_gradient", "sds_loss", "weight"]
