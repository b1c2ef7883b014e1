"""Noise schedules and the timestep schedules of score distillation.

Timesteps are integers in ``[0, T)`` of the model's training schedule; ranges are given as fractions
of T (threestudio's ``min_step_percent`` / ``max_step_percent``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import Tensor

Anneal = Literal["none", "linear", "sqrt", "deterministic"]


@dataclass(frozen=True)
class TimestepSchedule:
    """Which timesteps SDS draws as a run goes on (``ratio`` = step / total steps in [0, 1]).

    * ``none``: uniform in ``[t_min, t_max]`` throughout (DreamFusion).
    * ``linear``: uniform in ``[t_min, t_max(r)]`` with ``t_max`` going linearly from ``t_max`` to
      ``t_max_end`` over the run (threestudio's piecewise-linear ``max_step_percent``; MVDream uses
      0.98 -> 0.5).
    * ``sqrt``: the same with the square root of the ratio (HiFA, Zhu et al. 2023): big timesteps are
      left early.
    * ``deterministic``: one timestep ``t = t_max - (t_max - t_min_end) r`` (DreamGaussian's
      decreasing schedule), with no randomness.
    """

    t_min: float = 0.02
    t_max: float = 0.98
    anneal: Anneal = "none"
    t_max_end: float = 0.5
    t_min_end: Optional[float] = None
    """Lower end the range's minimum reaches at the end of the run (None: ``t_min`` throughout)."""

    def __post_init__(self) -> None:
        for name in ("t_min", "t_max", "t_max_end"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"timestep schedule: {name} is {v}; it must be a fraction in [0, 1]")
        if self.t_min > self.t_max:
            raise ValueError(f"timestep schedule: t_min {self.t_min} is above t_max {self.t_max}")
        if self.anneal not in ("none", "linear", "sqrt", "deterministic"):
            raise ValueError(f"timestep schedule: unknown anneal {self.anneal!r}; choose none, linear, sqrt or "
                             "deterministic")

    def bounds(self, ratio: float) -> tuple[float, float]:
        """The ``(low, high)`` fractions of T used at run position ``ratio``."""
        r = min(max(float(ratio), 0.0), 1.0)
        lo_end = self.t_min if self.t_min_end is None else self.t_min_end
        if self.anneal == "none":
            return self.t_min, self.t_max
        f = math.sqrt(r) if self.anneal == "sqrt" else r
        hi = self.t_max + (self.t_max_end - self.t_max) * f
        lo = self.t_min + (lo_end - self.t_min) * f
        if self.anneal == "deterministic":
            hi = self.t_max + (lo_end - self.t_max) * r
            return hi, hi
        return min(lo, hi), hi

    def sample(self, n: int, num_train_timesteps: int, ratio: float = 0.0,
               generator: Optional[torch.Generator] = None) -> Tensor:
        """(n,) int64 timesteps in ``[0, num_train_timesteps)``."""
        lo, hi = self.bounds(ratio)
        T = num_train_timesteps
        a = int(round(lo * (T - 1)))
        b = max(a, int(round(hi * (T - 1))))
        if self.anneal == "deterministic" or a == b:
            return torch.full((n,), b, dtype=torch.long)
        return torch.randint(a, b + 1, (n,), generator=generator)


def alphas_cumprod(kind: str, steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> Tensor:
    """(steps,) float64 alpha-bar of a DDPM noise schedule, as diffusers' ``DDPMScheduler`` makes it:
    ``linear``, ``scaled_linear`` (Stable Diffusion: betas linear in sqrt space) or
    ``squaredcos_cap_v2`` (Nichol & Dhariwal 2021, improved DDPM, eq. 17; pixel-space models)."""
    if kind == "linear":
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    elif kind == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float64) ** 2
    elif kind == "squaredcos_cap_v2":
        f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = torch.tensor([min(1 - f((i + 1) / steps) / f(i / steps), 0.999) for i in range(steps)],
                             dtype=torch.float64)
    else:
        raise ValueError(f"unknown beta schedule {kind!r}")
    return torch.cumprod(1.0 - betas, dim=0)
