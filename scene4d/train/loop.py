"""The one fitting loop, shared by reconstruction and generation (see :mod:`scene4d.train`)."""

from __future__ import annotations

import math
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import torch
from tqdm import tqdm

from renderers import rasterize

from ..densify import DefaultStrategy
from ..field import Scene4D
from ..io import atomic_write_json, save_scene
from .config import FitConfig
from .objective import Objective, StepContext, StepPlan, weighted_sum
from .state import (CheckpointError, Divergence, OutputLock, TrainState, check_free_space, claim,
                    clean_temporaries, make_optimizers, read_checkpoint, remove_checkpoint)

FIRST_CHECKPOINT = 50
"""Every run checkpoints at this step too (before its first regular checkpoint), so a kill early in a
long run does not lose everything."""


class FitDiverged(ValueError):
    """The fit went non-finite; the message says where, what was kept and what to change."""


@dataclass
class FitResult:
    scene: Scene4D
    steps: int
    """The last step done (``cfg.iters`` when the run finished)."""
    seconds: float
    """Seconds in the loop (this call only)."""
    metrics: dict
    """``evaluate``'s metrics + train_seconds, steps, n_gaussians (empty when the run stopped early)."""


def exp_decay(lr0: float, lr1: float, step: int, total: int) -> float:
    """``lr0`` at step 0 to ``lr1`` at ``total``, exponentially (log-linear), clamped outside."""
    f = min(max(step / max(total, 1), 0.0), 1.0)
    return math.exp(math.log(lr0) * (1 - f) + math.log(lr1) * f)


def set_learning_rates(state: TrainState, cfg: FitConfig, step: int, scale: float = 1.0) -> None:
    """The learning rates of step ``step`` (1-based): centres decay over the run, deformation groups
    after ``deformation_lr_start``, the rest stay at their initial value; all times ``scale``."""
    for k, o in state.optimizers.items():
        g = o.param_groups[0]
        lr = exp_decay(g["base_lr"], g["base_lr"] / cfg.means_lr_decay, step, cfg.iters) if k == "means" else g["base_lr"]
        g["lr"] = lr * scale if scale != 1.0 else lr
    if state.deform_optimizer is not None:
        start = cfg.deformation_lr_start
        for g in state.deform_optimizer.param_groups:
            lr0 = g["base_lr"]
            lr = exp_decay(lr0, lr0 / cfg.deformation_lr_decay, max(0, step - start), max(1, cfg.iters - start))
            g["lr"] = lr * scale if scale != 1.0 else lr


def fit(
    scene: Scene4D,
    objective: Objective,
    out: Path,
    cfg: FitConfig,
    *,
    resume: bool = False,
    stop_at: Optional[int] = None,
    progress: bool = True,
    backend: str = "auto",
    provenance: Optional[dict] = None,
    publish: Optional[dict] = None,
    evaluate: Optional[Callable[[Scene4D], dict]] = None,
    checkpoint_meta: Optional[dict] = None,
    on_step: Optional[Callable[[int, Scene4D, Dict[str, torch.Tensor], Dict[str, int]], None]] = None,
    resume_command: Optional[str] = None,
) -> FitResult:
    """Fit ``scene`` (on its device) to ``objective`` and publish it as the scene folder ``out``;
    see the package docstring for the step and the arguments."""
    out = Path(out)
    lock = OutputLock(out).acquire()
    try:
        return _fit(scene, objective, out, cfg, resume=resume, stop_at=stop_at, progress=progress, backend=backend,
                    provenance=provenance, publish=publish, evaluate=evaluate, checkpoint_meta=checkpoint_meta,
                    on_step=on_step, resume_command=resume_command)
    finally:
        lock.release()


def _param_bytes(scene: Scene4D) -> int:
    return sum(p.numel() * p.element_size() for p in scene.parameters()) + \
        sum(p.numel() * p.element_size() for p in scene.params.values())


def _fit(scene, objective, out, cfg, *, resume, stop_at, progress, backend, provenance, publish, evaluate,
         checkpoint_meta, on_step, resume_command) -> FitResult:
    claim(out, resume)
    clean_temporaries(out)
    # a checkpoint holds the parameters and two Adam moments (x3), the old one stays until the new is whole
    check_free_space(out, 7 * _param_bytes(scene) + (16 << 20), "a checkpoint of this run")
    strategy = DefaultStrategy(cfg.densify, cfg.scene_scale) if cfg.densify is not None else None
    if resume:
        state = TrainState.load(out, scene, cfg, objective)
        if strategy is None:
            state.strategy_state = {}
    else:
        opts, deform_opt = make_optimizers(scene, cfg)
        strat = strategy.initialize_state(len(scene), scene.device) if strategy is not None else {}
        state = TrainState(scene, opts, deform_opt, strat, 0)
    meta = dict(checkpoint_meta or {})
    out.mkdir(parents=True, exist_ok=True)

    total = cfg.iters
    last = total if stop_at is None else min(total, stop_at)
    interrupted = {"flag": False}

    def _on_sigint(signum, frame):  # finish the current step, then checkpoint and stop
        interrupted["flag"] = True

    main_thread = threading.current_thread() is threading.main_thread()
    # Ctrl-C, `kill` and a closed terminal (SSH) all finish the step, checkpoint and stop
    signals = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    old_handlers = {sg: signal.signal(sg, _on_sigint) for sg in signals} if main_thread else {}
    start_step = state.step
    t0 = time.perf_counter()
    bar = tqdm(total=total, initial=state.step, desc=getattr(objective, "label", "fit"), unit="it",
               disable=not progress, dynamic_ncols=True)
    ema_loss = None

    def render(ctx: StepContext, t, cameras, *, deform, background, entities, sh_degree):
        g = scene.at(t, deform=deform, entities=entities)
        r = rasterize(g, cameras, background=background, sh_degree=sh_degree, backend=backend, check=False)
        if strategy is not None and ctx.plan.train_canonical:
            strategy.step_pre_backward(r)
        ctx.renders.append((r, scene.rows(entities)))
        return r

    label = getattr(objective, "label", "fit")
    # the step of the first checkpoint that could not be written (while none could) and why
    unsaved: Dict[str, object] = {"since": None, "why": None}

    def checkpoint(at: int, last_one: bool = False) -> bool:
        """Write a checkpoint; a disk that fails (read-only, full, gone) is reported once and the run
        goes on with its state in memory: the next checkpoint tries again. ``last_one``: the run
        ends here, and its caller says what became of the state."""
        try:
            state.save(out, cfg, objective, meta)
        except (OSError, CheckpointError) as e:
            unsaved["why"] = _why(e)
            if unsaved["since"] is None and not last_one:
                tqdm.write(f"{label}: the checkpoint at step {at} could not be written to {out / 'checkpoints'} "
                           f"({_why(e)}); training goes on with its state in memory and tries again at the next "
                           "checkpoint", file=sys.stderr)
                unsaved["since"] = at
            return False
        if unsaved["since"] is not None:
            tqdm.write(f"{label}: checkpoint written again at step {at}", file=sys.stderr)
            unsaved["since"] = None
        return True

    step = state.step
    try:
        while step < last:
            step += 1
            plan: StepPlan = objective.plan(step)
            set_learning_rates(state, cfg, step, plan.lr_scale)
            ctx = StepContext(scene, step, plan, getattr(objective, "generator", None), render)
            terms = dict(objective.losses(ctx))
            if plan.deform and plan.train_deformation:
                # regularisers the objective weighs 0 are not computed at all (weighted_sum drops them)
                unweighted = {k for k, w in objective.weights.items() if float(w) == 0.0}
                for k, v in scene.regularizers(unweighted).items():
                    if k in terms:
                        raise KeyError(f"the objective's loss term {k!r} has the name of a field regulariser")
                    terms[k] = v
            loss = weighted_sum(terms, objective.weights)
            loss.backward()
            report: Dict[str, int] = {}
            if plan.train_canonical:
                if strategy is not None:
                    report = strategy.step_post_backward(scene.params, state.optimizers, state.strategy_state, step,
                                                         ctx.renders, buffers=scene.row_buffers)
                for o in state.optimizers.values():
                    o.step()
                    o.zero_grad(set_to_none=True)
            else:
                for o in state.optimizers.values():
                    o.zero_grad(set_to_none=True)
            if state.deform_optimizer is not None:
                if plan.deform and plan.train_deformation:
                    state.deform_optimizer.step()
                state.deform_optimizer.zero_grad(set_to_none=True)
            state.step = step
            if on_step is not None:
                on_step(step, scene, terms, report)
            # reading a value back waits for a GPU: there, every 5 steps; on the CPU it is free
            if step % 5 == 0 or report or loss.device.type == "cpu":
                value = float(loss.detach())
                if not math.isfinite(value):
                    bad = [f"{k} = {float(v.detach()):g}" for k, v in terms.items() if not bool(torch.isfinite(v.detach()))]
                    raise Divergence(step, f"the loss is {value:g}" + (f" ({', '.join(bad)})" if bad else ""))
                if step % 5 == 0 or report:
                    ema_loss = value if ema_loss is None else 0.8 * ema_loss + 0.2 * value
            bar.update(1)
            if (step % 10 == 0 or report) and ema_loss is not None:
                bar.set_postfix(loss=f"{ema_loss:.4f}", **objective.progress_info(), N=len(scene))
            if (step % cfg.checkpoint_every == 0 or step == FIRST_CHECKPOINT) and step < total:
                checkpoint(step)
            if interrupted["flag"]:
                break
    except Divergence as d:
        raise FitDiverged(_diverged(d, out, objective)) from None
    finally:
        bar.close()
        for sg, h in old_handlers.items():
            signal.signal(sg, h)
    seconds = time.perf_counter() - t0
    hint = resume_command or f"the same command with --resume (--out {out})"
    if step < total:
        try:
            saved = checkpoint(step, last_one=True)
        except Divergence as d:
            raise FitDiverged(_diverged(d, out, objective)) from None
        if not saved:  # the disk failed: the state goes elsewhere rather than nowhere
            where = _rescue(out, lambda d: state.save(d, cfg, objective, meta))
            ck = out / "checkpoints"
            raise CheckpointError(
                f"stopped at step {step}/{total}, but the checkpoint could not be written to {ck} "
                f"({unsaved['why']}); "
                + (f"it was written to {where / 'checkpoints'} instead: once the disk is writable, replace the files "
                   f"in {ck} with it (rm -rf {ck} && cp -r {where / 'checkpoints'} {ck}) and continue with {hint}"
                   if where else
                   "nor anywhere else (" + ", ".join(str(b) for b in _rescue_bases()) + "): the state is lost"))
        if interrupted["flag"]:
            raise KeyboardInterrupt(f"stopped at step {step}/{total}; checkpoint saved in {out / 'checkpoints'}. "
                                    f"Continue with: {hint}")
        return FitResult(scene, step, seconds, {})

    kept = False
    if step > start_step:  # the finished state is kept as a checkpoint until the scene is safely written
        try:
            kept = checkpoint(step, last_one=True)
        except Divergence as d:
            raise FitDiverged(_diverged(d, out, objective)) from None
    else:
        kept = read_checkpoint(out) is not None
    scene.eval()
    metrics = dict(evaluate(scene)) if evaluate is not None else {}
    metrics.update({"train_seconds": round(seconds, 2), "steps": step, "n_gaussians": len(scene)})

    def write(d: Path) -> None:
        check_free_space(d, 2 * _param_bytes(scene) + (8 << 20), "writing the scene")
        atomic_write_json(d / "metrics.json", metrics)
        save_scene(d, scene, provenance=provenance, **(publish or {}))

    try:
        write(out)
    except (OSError, CheckpointError) as e:
        why = _why(e)
        if kept:
            raise CheckpointError(f"writing the scene failed ({why}); the trained state is kept in "
                                  f"{out / 'checkpoints'} (step {step}): make room and run {hint} to write it") from None
        # neither the scene nor a checkpoint is on the output's disk: write the scene elsewhere
        where = _rescue(out, write)
        raise CheckpointError(
            f"writing the scene to {out} failed ({why}) and no checkpoint of it is there; "
            + (f"the finished scene was written to {where} instead (every command takes it: scene4d render {where}); "
               f"move it where you want it" if where else
               "it could not be written anywhere else either (" + ", ".join(str(b) for b in _rescue_bases())
               + "): the trained scene is lost")) from None
    # the scene is complete (scene.json is written last): a checkpoint left behind would let a later
    # --resume go back to an earlier step and overwrite the finished scene
    remove_checkpoint(out)
    return FitResult(scene, step, seconds, metrics)


def _why(e: BaseException) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)


def _rescue_bases() -> list[Path]:
    """Where a run whose output disk failed writes its work instead, in order: $SCENE4D_RESCUE_DIR,
    the temporary folder, ~/.cache/scene4d/rescue."""
    bases = [os.environ.get("SCENE4D_RESCUE_DIR"), tempfile.gettempdir(), Path.home() / ".cache" / "scene4d" / "rescue"]
    return [Path(b) for b in bases if b]


def _rescue(out: Path, write: Callable[[Path], object]) -> Optional[Path]:
    """``write(folder)`` into a new folder under the first rescue base that takes it; that folder, or None."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for base in _rescue_bases():
        d = base / f"scene4d-rescue-{Path(out).name or 'scene'}-{stamp}-{os.getpid()}"
        try:
            d.mkdir(parents=True)
            write(d)
            return d
        except (OSError, CheckpointError):
            continue
    return None


def _diverged(d: Divergence, out: Path, objective) -> str:
    """The one line a diverged run ends with."""
    meta = read_checkpoint(out)
    kept = (f"the last good checkpoint (step {meta['step']}) is kept in {out / 'checkpoints'}" if meta else
            "no checkpoint was written yet")
    return (f"{getattr(objective, 'label', 'fit')} diverged at step {d.step}: {d.what}; {kept}. A learning rate is "
            "probably too high: lower it (the preset's train.lr_* values) and run again")
