"""Densification: clone, split, prune and opacity reset, driven by view-space gradients.

The strategy of 3DGS (Kerbl et al. 2023), in the shape of gsplat's ``DefaultStrategy``:
``initialize_state`` / ``step_pre_backward`` / ``step_post_backward``. All topology surgery —
parameters *and* their Adam moments, and the scene's per-Gaussian buffers (the entity index) —
happens in :func:`_update_rows`, the one place per-Gaussian state is resized.

A step may render several times (a video prior renders G frames, a multi-view prior C cameras, an
objective one entity at a time): ``step_post_backward`` takes every render of the step, each with
the scene rows it drew (None: all), and every one feeds the view-space gradient statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, MutableMapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from renderers import quat_to_rotmat


@dataclass
class DensifyConfig:
    """When and how the Gaussian set grows and shrinks."""

    grow_grad2d: float = 0.0002
    """Average view-space gradient norm (in NDC-like units, as gsplat) above which a Gaussian grows."""
    grow_scale3d: float = 0.01
    """Gaussians smaller than this (x scene scale) are cloned, larger ones split."""
    prune_opacity: float = 0.005
    """Gaussians with opacity below this are removed."""
    prune_scale3d: float = 0.1
    """After the first opacity reset, Gaussians larger than this (x scene scale) are removed."""
    refine_start: int = 500
    refine_stop: int = 15_000
    refine_every: int = 100
    reset_every: int = 3000
    max_gaussians: int = 200_000
    """Growth stops at this many Gaussians (CPU budgets)."""


class DefaultStrategy:
    def __init__(self, cfg: DensifyConfig, scene_scale: float):
        self.cfg = cfg
        self.scene_scale = scene_scale

    def initialize_state(self, n: int, device=None) -> Dict[str, Tensor]:
        """Per-Gaussian statistics, kept where the Gaussians are (no host round trip per step)."""
        return {"grad2d": torch.zeros(n, device=device), "count": torch.zeros(n, device=device)}

    def step_pre_backward(self, info) -> None:
        """Keep the view-space gradient of a render (call it for every render of the step)."""
        if info.means2d.requires_grad:
            info.means2d.retain_grad()

    @torch.no_grad()
    def step_post_backward(self, params: nn.ParameterDict, optimizers: Dict[str, torch.optim.Optimizer],
                           state: Dict[str, Tensor], step: int, info: Union[object, Sequence],
                           buffers: Optional[MutableMapping[str, Tensor]] = None) -> Dict[str, int]:
        """Accumulate statistics from this step's renders; refine on schedule.

        ``info``: a RenderOutput, or a list of RenderOutputs / ``(RenderOutput, rows)`` pairs, where
        ``rows`` (M,) int64 are the scene rows that render drew (None: all N, in order).
        ``buffers``: per-Gaussian tensors to carry through the surgery (``scene.row_buffers``)."""
        cfg = self.cfg
        if step >= cfg.refine_stop:
            return {}
        for out, rows in _renders(info):
            g = out.means2d.grad  # (C, M, 2)
            if g is None:
                continue
            g = g.clone()
            g[..., 0] *= out.rgb.shape[2] / 2.0  # pixels -> NDC-like units, as gsplat/3DGS
            g[..., 1] *= out.rgb.shape[1] / 2.0
            vis = out.visible
            norms = g.norm(dim=-1)
            if rows is None:
                state["grad2d"] += (norms * vis).sum(0)
                state["count"] += vis.sum(0).float()
            else:
                state["grad2d"].index_add_(0, rows, (norms * vis).sum(0))
                state["count"].index_add_(0, rows, vis.sum(0).float())
        report: Dict[str, int] = {}
        if step > cfg.refine_start and step % cfg.refine_every == 0:
            report.update(self._grow(params, optimizers, state, buffers))
            report.update(self._prune(params, optimizers, state, step, buffers))
            state["grad2d"].zero_()
            state["count"].zero_()
        if step > 0 and step % cfg.reset_every == 0:
            self._reset_opacity(params, optimizers)
        return report

    def _grow(self, params, optimizers, state, buffers=None) -> Dict[str, int]:
        cfg = self.cfg
        n = params["means"].shape[0]
        avg = state["grad2d"] / state["count"].clamp_min(1)
        high = avg > cfg.grow_grad2d
        small = torch.exp(params["log_scales"]).amax(-1) <= cfg.grow_scale3d * self.scene_scale
        room = max(0, cfg.max_gaussians - n)
        clone = high & small
        split = high & ~small
        # respect the budget: splits add one net Gaussian each, clones one
        if int(clone.sum() + split.sum()) > room:
            order = torch.argsort(avg, descending=True)
            allowed = torch.zeros(n, dtype=torch.bool, device=avg.device)
            allowed[order[:room]] = True
            clone &= allowed
            split &= allowed
        n_clone, n_split = int(clone.sum()), int(split.sum())
        if n_clone:
            idx = torch.nonzero(clone).flatten()
            _update_rows(params, optimizers, state, lambda name, p: torch.cat([p, p[idx]]), n_new=len(idx),
                         buffers=buffers)
        if n_split:
            mask = torch.cat([split, torch.zeros(n_clone, dtype=torch.bool, device=split.device)])
            idx = torch.nonzero(mask).flatten()
            self._split(params, optimizers, state, idx, buffers)
        return {"cloned": n_clone, "split": n_split}

    def _split(self, params, optimizers, state, idx: Tensor, buffers=None) -> None:
        """Replace each selected Gaussian by two, sampled inside it, with scales / 1.6."""
        scales = torch.exp(params["log_scales"][idx])
        R = quat_to_rotmat(params["quats"][idx])
        offsets = [(R @ (torch.randn_like(scales) * scales)[..., None])[..., 0] for _ in range(2)]
        keep = torch.ones(params["means"].shape[0], dtype=torch.bool, device=idx.device)
        keep[idx] = False

        def surgery(name, p):
            if name == "means":
                new = torch.cat([p[idx] + offsets[0], p[idx] + offsets[1]])
            elif name == "log_scales":
                new = (p[idx] - math.log(1.6)).repeat(2, *[1] * (p.dim() - 1))
            else:
                new = p[idx].repeat(2, *[1] * (p.dim() - 1))
            return torch.cat([p[keep], new])

        _update_rows(params, optimizers, state, surgery, n_new=2 * len(idx), keep=keep, buffers=buffers)

    def _prune(self, params, optimizers, state, step, buffers=None) -> Dict[str, int]:
        cfg = self.cfg
        prune = torch.sigmoid(params["opacity_logits"]) < cfg.prune_opacity
        if step > cfg.reset_every:
            prune |= torch.exp(params["log_scales"]).amax(-1) > cfg.prune_scale3d * self.scene_scale
        if prune.all():  # never remove everything: keep the most opaque
            prune[torch.argmax(params["opacity_logits"])] = False
        n = int(prune.sum())
        if n:
            keep = ~prune
            _update_rows(params, optimizers, state, lambda name, p: p[keep], n_new=0, keep=keep, buffers=buffers)
        return {"pruned": n}

    def _reset_opacity(self, params, optimizers) -> None:
        cap = torch.logit(torch.tensor(self.cfg.prune_opacity * 2.0))
        p = params["opacity_logits"]
        p.data.clamp_(max=float(cap))
        st = optimizers["opacity_logits"].state.get(p)
        if st:
            st["exp_avg"].zero_()
            st["exp_avg_sq"].zero_()


def _renders(info) -> Sequence[Tuple[object, Optional[Tensor]]]:
    """``info`` as a list of (RenderOutput, rows or None)."""
    if isinstance(info, (list, tuple)):
        return [x if isinstance(x, tuple) else (x, None) for x in info]
    return [(info, None)]


def _update_rows(params: nn.ParameterDict, optimizers, state, fn: Callable, *, n_new: int, keep: Tensor = None,
                 buffers: Optional[MutableMapping[str, Tensor]] = None) -> None:
    """Apply row surgery ``fn(name, tensor)`` to every parameter and its Adam moments, and to every
    per-Gaussian buffer (the entity index: a clone or split child belongs to its parent's entity),
    and resize the strategy state. ``fn`` keeps the rows in ``keep`` (all if None) in order and
    appends ``n_new`` new rows; new rows start with zero moments and zero statistics."""
    for name in list(params.keys()):
        old = params[name]
        new = nn.Parameter(fn(name, old.data))
        opt = optimizers[name]
        st = opt.state.pop(old, None)
        if st:
            for key in ("exp_avg", "exp_avg_sq"):
                m = st[key]
                moved = fn("_moment", m)
                # rows that did not exist before (clones / split children) start with zero moments
                if n_new:
                    moved[-n_new:] = 0
                st[key] = moved
            opt.state[new] = st
        opt.param_groups[0]["params"] = [new]
        params[name] = new
    if buffers is not None:
        for name in list(buffers.keys()):
            buffers[name] = fn(name, buffers[name])
    for key in list(state.keys()):
        v = state[key]
        kept = v[keep] if keep is not None else v
        state[key] = torch.cat([kept, torch.zeros(n_new, dtype=v.dtype, device=v.device)])
