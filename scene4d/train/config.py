"""The fitting loop's settings: learning rates and schedules, densification, checkpoints.

Plain dataclasses of values (saved as JSON in every checkpoint), one docstring per field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, Optional

from ..densify import DensifyConfig


@dataclass
class LearningRates:
    """Initial Adam learning rates. Lengths (``means``, ``t_velocity``, deformation MLPs, node
    translations and centres) are multiplied by the scene scale. Deformation fields read the last
    five through :meth:`scene4d.deformation.DeformationField.param_groups`."""

    means: float = 1.6e-4
    """Canonical centres x scene scale; decays exponentially by ``FitConfig.means_lr_decay``."""
    quats: float = 1e-3
    scales: float = 5e-3
    """Log-scales."""
    opacity: float = 5e-2
    """Opacity logits."""
    sh: float = 2.5e-3
    """SH DC colour; the higher bands take 1/20 of it."""
    t_center: float = 1e-3
    t_scale: float = 1e-2
    t_velocity: float = 1.6e-3
    """Per-Gaussian velocity x scene scale (temporal opacity only)."""
    deform: float = 1.6e-3
    """Deformation MLP trunks and heads x scene scale."""
    planes: float = 1.6e-2
    """Space-time plane grids."""
    motion: float = 5e-3
    """Motion-node translations x scene scale."""
    rotation: float = 5e-3
    """Motion-node rotation vectors (radians)."""
    nodes: float = 1e-3
    """Motion-node centres x scene scale (log-radii: 10x)."""

    def canonical(self, scene_scale: float) -> Dict[str, float]:
        """Learning rate of every canonical parameter (``scene4d.field.PARAM_NAMES`` and
        ``TEMPORAL_NAMES``)."""
        return {
            "means": self.means * scene_scale, "quats": self.quats, "log_scales": self.scales,
            "opacity_logits": self.opacity, "sh_dc": self.sh, "sh_rest": self.sh / 20,
            "t_center": self.t_center, "t_log_scale": self.t_scale, "t_velocity": self.t_velocity * scene_scale,
        }


@dataclass
class FitConfig:
    """One run of :func:`scene4d.train.fit`."""

    iters: int = 3000
    """Optimisation steps."""
    lrs: LearningRates = field(default_factory=LearningRates)
    scene_scale: float = 1.0
    """Radius of the scene (world units): lengths in learning rates and densification scale by it."""
    means_lr_decay: float = 100.0
    """The centres' learning rate falls exponentially by this factor from step 0 to ``iters``."""
    deformation_lr_decay: float = 10.0
    """Every deformation group's learning rate falls by this factor from ``deformation_lr_start``
    to ``iters``."""
    deformation_lr_start: int = 0
    """Step at which the deformation's decay starts (the end of a static warm-up)."""
    densify: Optional[DensifyConfig] = field(default_factory=DensifyConfig)
    """Clone / split / prune schedule; None keeps the Gaussian set fixed."""
    checkpoint_every: int = 1000
    """Steps between checkpoints (one is also written when a run stops early)."""


def fit_config_to_json(cfg: FitConfig) -> dict:
    return asdict(cfg)


def fit_config_from_json(d: dict) -> FitConfig:
    d = dict(d)
    d["lrs"] = LearningRates(**d["lrs"])
    d["densify"] = None if d.get("densify") is None else DensifyConfig(**d["densify"])
    return FitConfig(**d)
