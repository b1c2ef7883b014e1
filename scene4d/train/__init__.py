"""The one fitting loop: reconstruction and generation are two objectives over it.

::

    fit(scene, objective, out, cfg, *, resume=False, stop_at=None, progress=True, backend="auto",
        provenance=None, publish=None, evaluate=None, checkpoint_meta=None, on_step=None,
        resume_command=None) -> FitResult(scene, steps, seconds, metrics)

``scene`` is a :class:`~scene4d.field.Scene4D` already on its device (its initial Gaussians, or on
``resume`` any scene with the run's entities and fields: the checkpoint replaces its contents);
``cfg`` a :class:`FitConfig`; ``objective`` an :class:`Objective`. One step (1-based):

1. ``plan = objective.plan(step)`` (:class:`StepPlan`): deformation on?, canonical / deformation
   trained?, SH degree, learning-rate multiplier. Learning rates are set from ``cfg``'s decays.
2. ``terms = objective.losses(ctx)`` (:class:`StepContext`): the objective draws its views from
   ``ctx.generator`` and renders with ``ctx.render(t, cameras, deform=, background=, entities=)``
   as many times as it likes; every render's view-space gradients feed densification.
3. When ``plan.deform and plan.train_deformation``: the fields' regularisers (``scene.regularizers()``)
   join the terms. ``loss = sum(objective.weights[k] * terms[k])``: a term without a weight raises.
4. backward; densification (``cfg.densify``; only when ``plan.train_canonical``) with the entity
   index carried through clone / split / prune; the canonical optimisers step (only when
   ``plan.train_canonical``), the deformation optimiser (only when deformation is trained).
5. ``on_step(step, scene, terms, report)`` (previews, debugging); progress bar (``objective.label``,
   the loss EMA, ``objective.progress_info()``, N); a checkpoint every ``cfg.checkpoint_every`` steps.

Ctrl-C finishes the step, writes a checkpoint and raises ``KeyboardInterrupt`` whose message says
how to continue (``resume_command``). ``stop_at`` ends early with a checkpoint (and returns). A
finished run calls ``evaluate(scene) -> dict`` (scene in eval mode), writes ``metrics.json``, then
``save_scene(out, scene, provenance=provenance, **publish)`` (``publish``: train/test cameras,
background, up) with ``scene.json`` last, then removes the checkpoint. ``resume=True`` continues
the checkpoint in ``out`` bit for bit (with the ``cfg`` given: pass the run's own, which
:func:`read_checkpoint` returns as ``"fit"`` beside ``checkpoint_meta``). The objective's
``state_tensors()`` / ``load_state_tensors()`` carry its generators through the checkpoint. The
caller seeds torch's global RNG (split offsets are drawn from it) before building its scene.

Optimisers: one Adam per canonical parameter (``cfg.lrs``); one Adam over every entity's field,
with the named groups each field declares (:meth:`scene4d.deformation.DeformationField.param_groups`).

Imports: ``train`` -> ``field``, ``deformation``, ``densify``, ``io``, ``renderers``; jobs
(reconstruct, generate) import ``train``, never the other way.
"""

from .config import FitConfig, LearningRates, fit_config_from_json, fit_config_to_json
from .loop import FitDiverged, FitResult, exp_decay, fit, set_learning_rates
from .objective import Objective, StepContext, StepPlan, weighted_sum
from .state import (CheckpointError, OutputLock, TrainState, claim, existing_run, make_optimizers, read_checkpoint,
                    remove_checkpoint, tensors_path)

__all__ = [
    "CheckpointError", "FitDiverged", "OutputLock", "tensors_path",
    "FitConfig", "FitResult", "LearningRates", "Objective", "StepContext", "StepPlan", "TrainState", "claim",
    "existing_run", "exp_decay", "fit", "fit_config_from_json", "fit_config_to_json", "make_optimizers",
    "read_checkpoint", "remove_checkpoint", "set_learning_rates", "weighted_sum",
]
