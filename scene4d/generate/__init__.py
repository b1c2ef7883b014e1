"""Text-to-4D generation: the toy world, priors and the generate stages."""
