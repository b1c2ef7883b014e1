"""The loop's state (scene, optimisers, densification statistics) and its checkpoints.

A checkpoint is ``checkpoints/latest.safetensors`` (tensors) + ``checkpoints/latest.json`` (the
step, the fit config and the caller's metadata), the JSON written last. It holds everything the
next step depends on — parameters, entity index, Adam moments, densification statistics, the
global torch RNGs and the objective's own state (its generators) — so a resumed run is bit for
bit the run that was interrupted. No pickle.

Tensor names: ``canonical.*`` / ``entity.index`` / ``deformation.I.*`` (as the scene folder's
weights), ``adam.NAME.J.{exp_avg,exp_avg_sq,step}`` (J: parameter position in the optimiser),
``densify.*``, ``rng.torch``, ``rng.cuda``, ``objective.*``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch
from safetensors.torch import load_file

from ..field import Scene4D
from ..io import atomic_save_tensors, atomic_write_json, load_scene_tensors, scene_tensors
from .config import FitConfig, fit_config_to_json

CHECKPOINT_DIR = "checkpoints"
LATEST = ("latest.json", "latest.safetensors")


def existing_run(out: Path) -> Optional[str]:
    """Why ``out`` cannot take a new run (None: it can): an unfinished run (continue it with
    --resume) or a finished scene (never overwritten silently)."""
    out = Path(out)
    latest = out / CHECKPOINT_DIR / "latest.json"
    if (out / "scene.json").is_file():
        return (f"{out} already holds a finished scene; choose another --out, or delete the folder to run "
                "again (render it with: scene4d render " + str(out) + ")")
    if latest.is_file():
        try:
            step = f" at step {int(json.loads(latest.read_text())['step'])}"
        except (ValueError, KeyError, TypeError):
            step = ""
        return (f"{out} holds an unfinished run (stopped{step}); pass --resume to continue it, or choose another "
                "--out")
    return None


def claim(out: Path, resume: bool) -> None:
    """Check that ``out`` can take this run: with ``resume``, it holds an unfinished one
    (FileNotFoundError otherwise); without, it holds none (FileExistsError otherwise)."""
    out = Path(out)
    if resume:
        if (out / "scene.json").is_file():
            raise FileNotFoundError(f"{out}: nothing to resume, the run there finished (scene.json is written); "
                                    "render it, or choose another --out (or delete the folder) to run again")
        if not (out / CHECKPOINT_DIR / "latest.json").is_file():
            raise FileNotFoundError(f"{out}: nothing to resume (no checkpoints/latest.json); start without --resume")
    elif why := existing_run(out):
        raise FileExistsError(why)


def read_checkpoint(out: Path) -> Optional[dict]:
    """The JSON of ``out``'s latest checkpoint (``step``, ``fit`` and the caller's metadata), or
    None when there is none or it is unreadable."""
    try:
        d = json.loads((Path(out) / CHECKPOINT_DIR / "latest.json").read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def remove_checkpoint(out: Path) -> None:
    for name in LATEST:
        (Path(out) / CHECKPOINT_DIR / name).unlink(missing_ok=True)


def make_optimizers(scene: Scene4D, cfg: FitConfig):
    """Per-parameter Adam for the canonical Gaussians ({name: Adam}) and one Adam over every
    entity's deformation field, its groups declared by the fields (None for a static scene). Each
    group remembers its initial ``base_lr``."""
    lrs = cfg.lrs.canonical(cfg.scene_scale)
    opts = {k: torch.optim.Adam([scene.params[k]], lr=lrs[k], eps=1e-15) for k in scene.param_names}
    for k, o in opts.items():
        o.param_groups[0]["base_lr"] = lrs[k]
    groups = []
    for e, f in zip(scene.entities, scene.fields):
        if f is None:
            continue
        for g in f.param_groups(cfg.lrs, cfg.scene_scale):
            name = g["name"] if scene.n_entities == 1 else f"{e.name}.{g['name']}"
            groups.append({"params": list(g["params"]), "lr": g["lr"], "base_lr": g["lr"], "name": name})
    n_field = sum(1 for f in scene.fields if f is not None for _ in f.parameters())
    if sum(len(g["params"]) for g in groups) != n_field:
        raise RuntimeError("a deformation field's param_groups() leaves out or repeats parameters")
    return opts, (torch.optim.Adam(groups, eps=1e-15) if groups else None)


def _opt_tensors(prefix: str, opt: torch.optim.Optimizer) -> Dict[str, torch.Tensor]:
    out = {}
    i = 0
    for g in opt.param_groups:
        for p in g["params"]:
            st = opt.state.get(p)
            if st:
                out[f"{prefix}.{i}.exp_avg"] = st["exp_avg"]
                out[f"{prefix}.{i}.exp_avg_sq"] = st["exp_avg_sq"]
                out[f"{prefix}.{i}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1)
            i += 1
    return out


def _load_opt(prefix: str, opt: torch.optim.Optimizer, tensors: Dict[str, torch.Tensor]) -> None:
    i = 0
    for g in opt.param_groups:
        for p in g["params"]:
            key = f"{prefix}.{i}.exp_avg"
            if key in tensors:
                opt.state[p] = {
                    "step": tensors[f"{prefix}.{i}.step"].reshape(()).clone(),
                    "exp_avg": tensors[key].clone(),
                    "exp_avg_sq": tensors[f"{prefix}.{i}.exp_avg_sq"].clone(),
                }
            i += 1


@dataclass
class TrainState:
    """Everything the loop carries from one step to the next, besides the objective's state."""

    scene: Scene4D
    optimizers: Dict[str, torch.optim.Optimizer]
    """Canonical parameter name -> its Adam."""
    deform_optimizer: Optional[torch.optim.Optimizer]
    strategy_state: Dict[str, torch.Tensor]
    step: int = 0

    def save(self, out: Path, cfg: FitConfig, objective, meta: Optional[dict] = None) -> Path:
        """Write the checkpoint; the JSON goes last (it names the step the tensors belong to)."""
        ck = Path(out) / CHECKPOINT_DIR
        tensors = dict(scene_tensors(self.scene))
        for k, o in self.optimizers.items():
            tensors.update(_opt_tensors(f"adam.{k}", o))
        if self.deform_optimizer is not None:
            tensors.update(_opt_tensors("adam.deformation", self.deform_optimizer))
        tensors.update({f"densify.{k}": v for k, v in self.strategy_state.items()})
        tensors.update({f"objective.{k}": v for k, v in objective.state_tensors().items()})
        tensors["rng.torch"] = torch.get_rng_state()
        if self.scene.device.type == "cuda":  # split offsets are drawn on the device
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.scene.device)
        atomic_save_tensors(ck / "latest.safetensors", tensors)
        atomic_write_json(ck / "latest.json", {"step": self.step, "fit": fit_config_to_json(cfg), **(meta or {})})
        return ck

    @classmethod
    def load(cls, out: Path, scene: Scene4D, cfg: FitConfig, objective) -> "TrainState":
        """The state of ``out``'s checkpoint, loaded into ``scene`` (built with the run's entities and
        fields; its Gaussians are replaced) and ``objective``; restores the global RNGs."""
        ck = Path(out) / CHECKPOINT_DIR
        meta = json.loads((ck / "latest.json").read_text())
        tensors = load_file(str(ck / "latest.safetensors"))
        rng = {k: tensors.pop(k) for k in [k for k in tensors if k.startswith("rng.")]}
        obj = {k[len("objective."):]: tensors.pop(k) for k in [k for k in tensors if k.startswith("objective.")]}
        if not obj and "rng.sampler" in rng:  # a checkpoint from before the loop was shared (reconstruct's)
            obj = {"sampler": rng["rng.sampler"]}
        device = scene.device
        tensors = {k: v.to(device) for k, v in tensors.items()}
        load_scene_tensors(scene, tensors, where=str(ck / "latest.safetensors"))
        opts, deform_opt = make_optimizers(scene, cfg)
        for k, o in opts.items():
            _load_opt(f"adam.{k}", o, tensors)
        if deform_opt is not None:
            _load_opt("adam.deformation", deform_opt, tensors)
        strat = {k[len("densify."):]: v.clone() for k, v in tensors.items() if k.startswith("densify.")}
        objective.load_state_tensors(obj)
        torch.set_rng_state(rng["rng.torch"])
        if device.type == "cuda" and "rng.cuda" in rng:
            torch.cuda.set_rng_state(rng["rng.cuda"], device)
        return cls(scene, opts, deform_opt, strat, int(meta["step"]))
