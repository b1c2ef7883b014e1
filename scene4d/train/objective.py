"""What an objective tells the loop: a plan per step, and named loss terms.

An objective owns how a step samples (cameras, times) and what it compares the renders with
(photographs for reconstruction, a diffusion prior's score for generation); the loop
(:func:`scene4d.train.fit`) owns everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, runtime_checkable

import torch
from torch import Tensor

if TYPE_CHECKING:
    from cameras import Cameras
    from renderers import RenderOutput

    from ..field import Scene4D


@dataclass(frozen=True)
class StepPlan:
    """What one step trains. ``objective.plan(step)`` returns it before the step renders."""

    deform: bool = True
    """Evaluate the deformation fields (False: every entity at its canonical pose; renders'
    default)."""
    train_canonical: bool = True
    """Step the canonical Gaussians' optimisers and densify. False freezes them: no optimiser step,
    no densification statistics, no clone / split / prune / opacity reset that step."""
    train_deformation: bool = True
    """Step the deformation optimiser and add the fields' regularisers (only when ``deform``)."""
    sh_degree: int = 0
    """SH degree renders use (schedules unlock bands over the run)."""
    lr_scale: float = 1.0
    """Multiplies every learning rate this step (after the loop's own decay)."""


class StepContext:
    """What ``objective.losses`` gets for one step.

    Attributes: ``scene`` (the :class:`~scene4d.field.Scene4D`), ``step`` (1-based), ``plan`` (this
    step's :class:`StepPlan`), ``generator`` (the objective's own ``torch.Generator``, checkpointed
    through ``objective.state_tensors``; draw every random choice from it).
    """

    def __init__(self, scene: "Scene4D", step: int, plan: StepPlan, generator: Optional[torch.Generator],
                 render_fn: Callable[..., "RenderOutput"]):
        self.scene = scene
        self.step = step
        self.plan = plan
        self.generator = generator
        self._render_fn = render_fn
        self.renders: List[Tuple["RenderOutput", Optional[Tensor]]] = []
        """Every render of this step with the scene rows it drew (None: all)."""

    def render(self, t: float, cameras: "Cameras", *, deform: Optional[bool] = None, background=None,
               entities: Optional[Sequence[int]] = None, sh_degree: Optional[int] = None) -> "RenderOutput":
        """``scene.at(t, deform=, entities=)`` rasterized into C ``cameras`` -> RenderOutput with
        ``rgb`` (C, H, W, 3). ``deform`` defaults to the plan's, ``sh_degree`` to the plan's;
        ``entities`` (indices) renders only those entities. Call it as often as the step needs
        (G frames at G times for a video prior, one call with 4 cameras for a multi-view prior):
        every render's view-space gradients feed densification."""
        return self._render_fn(self, t, cameras, deform=self.plan.deform if deform is None else deform,
                               background=background, entities=entities,
                               sh_degree=self.plan.sh_degree if sh_degree is None else sh_degree)


@runtime_checkable
class Objective(Protocol):
    """What :func:`scene4d.train.fit` optimises.

    ``weights``: one weight per loss-term name that ``losses`` returns AND per regulariser name
    the scene's fields return (``plane_tv``, ``time_smoothness``, ``arap``): a term without a
    weight is an error, so a new regulariser is never dropped silently. Weight 0 leaves a term out.
    ``label``: the progress bar's label. ``generator``: the objective's own RNG.
    """

    label: str
    weights: Mapping[str, float]
    generator: Optional[torch.Generator]

    def plan(self, step: int) -> StepPlan:
        """The plan of step ``step`` (1-based); no random draws here."""

    def losses(self, ctx: StepContext) -> Dict[str, Tensor]:
        """Render through ``ctx.render`` and return named scalar loss terms."""

    def state_tensors(self) -> Dict[str, Tensor]:
        """Everything the next step depends on that the objective owns (generator states, EMAs), as
        tensors, for the checkpoint."""

    def load_state_tensors(self, tensors: Dict[str, Tensor]) -> None:
        """Restore what :meth:`state_tensors` returned."""

    def progress_info(self) -> Dict[str, str]:
        """Extra fields for the progress bar (e.g. ``{"psnr": "27.31"}``)."""


def weighted_sum(terms: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """``sum(weights[k] * terms[k])`` in the terms' order, skipping weight-0 terms; a term with no
    weight raises ``KeyError`` naming it."""
    missing = [k for k in terms if k not in weights]
    if missing:
        raise KeyError(f"loss term(s) {missing} have no weight in objective.weights (it has {sorted(weights)}); "
                       "give each a weight (0 to leave it out)")
    total = None
    for k, v in terms.items():
        w = float(weights[k])
        if w == 0.0:
            continue
        v = v if w == 1.0 else w * v
        total = v if total is None else total + v
    if total is None:
        raise ValueError(f"every loss term has weight 0 ({sorted(terms)}); nothing to optimise")
    return total
