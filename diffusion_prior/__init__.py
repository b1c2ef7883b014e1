"""scene4d diffusion priors: text/images -> score-distillation gradients; knows nothing of Gaussians.

Import direction: ``scene4d`` -> ``diffusion_prior``; this package imports neither ``scene4d`` nor
``renderers``. (Populated by the text-to-4D work; nothing here yet.)
"""
