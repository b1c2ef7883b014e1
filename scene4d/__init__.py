"""scene4d: 4D Gaussian scenes and the jobs over them (reconstruct, generate, render, export).

Import direction: ``cameras`` <- ``renderers`` <- ``scene4d`` -> ``diffusion_prior``.
"""

__version__ = "0.1.0"
