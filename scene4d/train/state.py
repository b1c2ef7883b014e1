"""The loop's state (scene, optimisers, densification statistics) and its checkpoints.

A checkpoint is one unit written manifest-last: ``checkpoints/step-NNNNNNN.safetensors`` (the
tensors, fsynced), then ``checkpoints/latest.json`` (the step, the fit config, the caller's
metadata, and the tensors file's name, size and SHA-256), then older tensor files are removed. A
kill at any moment leaves a JSON naming a complete tensors file of its own step; a file that does
not match its manifest is refused, never half-loaded. (Checkpoints from before this layout,
``latest.safetensors`` without a name in the JSON, still load.) It holds everything the
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
LOCK = ".scene4d.lock"


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted: says which file and what to do."""


def tensors_path(out: Path) -> Path:
    """The tensors file ``out``'s latest checkpoint names (``latest.safetensors`` for old ones)."""
    ck = Path(out) / CHECKPOINT_DIR
    meta = read_checkpoint(out) or {}
    name = (meta.get("tensors") or {}).get("file") if isinstance(meta.get("tensors"), dict) else None
    return ck / (name or "latest.safetensors")


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- the output folder's lock
def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """An exclusive lock on an output folder: ``OUT/.scene4d.lock`` created with O_EXCL, naming the
    holder (pid, host, command, start time). A second run into the folder stops at once with a
    line naming the holder; a lock whose process is gone (same host) is taken over, with a note."""

    def __init__(self, out: Path, command: str = ""):
        import os
        import socket
        import sys

        self.path = Path(out) / LOCK
        self.held = False
        self.command = command or " ".join(["scene4d"] + sys.argv[1:])
        self.host = socket.gethostname()
        self.pid = os.getpid()

    def acquire(self) -> "OutputLock":
        import os
        import time as _time

        self.path.parent.mkdir(parents=True, exist_ok=True)
        info = {"pid": self.pid, "host": self.host, "command": self.command,
                "started": _time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    held = json.loads(self.path.read_text())
                except (OSError, ValueError):
                    held = {}
                pid, host = held.get("pid"), held.get("host")
                if isinstance(pid, int) and host == self.host and pid != self.pid and not _alive(pid):
                    print(f"note: {self.path.parent} was locked by process {pid}, which is gone; taking over")
                    self.path.unlink(missing_ok=True)
                    continue
                if isinstance(pid, int) and host == self.host and pid == self.pid:
                    raise FileExistsError(f"{self.path.parent} is already in use by this process")
                who = f"process {pid} on {host}" if pid else "another run (unreadable lock file)"
                raise FileExistsError(
                    f"{self.path.parent} is in use by {who} ({held.get('command', '?')}, since "
                    f"{held.get('started', '?')}); wait for it to finish or choose another --out "
                    f"(if no such run exists, delete {self.path})")
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(info) + "\n")
            self.held = True
            return self
        raise FileExistsError(f"{self.path}: could not take the lock")

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                self.path.unlink(missing_ok=True)
            except OSError:  # the disk failed under the run: its lock stays, and the next run on this
                pass         # host takes over a lock whose process is gone (acquire), so nothing is lost

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def clean_temporaries(out: Path) -> int:
    """Remove temporaries that killed writes left in ``out`` and its checkpoints (``.NAME.*.tmp``)
    and tensor files no manifest names; only call while holding the lock. Returns the count."""
    out = Path(out)
    n = 0
    for d in (out, out / CHECKPOINT_DIR):
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if p.is_file() and p.name.startswith(".") and p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)
                n += 1
    ck = out / CHECKPOINT_DIR
    if ck.is_dir():
        keep = tensors_path(out).name
        for p in ck.glob("step-*.safetensors"):
            if p.name != keep:
                p.unlink(missing_ok=True)
                n += 1
    return n


def check_free_space(out: Path, need_bytes: int, what: str) -> None:
    """OSError-free one-line refusal when ``out``'s disk has less than ``need_bytes`` free."""
    import shutil

    d = Path(out)
    while not d.exists() and d != d.parent:
        d = d.parent
    free = shutil.disk_usage(d).free
    if free < need_bytes:
        raise CheckpointError(f"{out}: {free / 1e6:.0f} MB free on its disk, {what} needs about "
                              f"{need_bytes / 1e6:.0f} MB; free some space or choose another --out")


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
    ck = Path(out) / CHECKPOINT_DIR
    for name in LATEST:
        (ck / name).unlink(missing_ok=True)
    if ck.is_dir():
        for p in ck.glob("step-*.safetensors"):
            p.unlink(missing_ok=True)
        try:
            ck.rmdir()  # only when empty: nothing else is ever removed
        except OSError:
            pass


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


class Divergence(RuntimeError):
    """The fit went non-finite at ``step``; the last good checkpoint is kept."""

    def __init__(self, step: int, what: str):
        super().__init__(what)
        self.step, self.what = step, what


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
        bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:  # never replace a good checkpoint with a broken state
            raise Divergence(self.step, f"non-finite values in {', '.join(bad[:3])}")
        name = f"step-{self.step:07d}.safetensors"
        atomic_save_tensors(ck / name, tensors, metadata={"step": str(self.step)})
        before = tensors_path(out)
        atomic_write_json(ck / "latest.json", {
            "step": self.step, "fit": fit_config_to_json(cfg), **(meta or {}),
            "tensors": {"file": name, "bytes": (ck / name).stat().st_size, "sha256": _sha256(ck / name)}})
        if before.name != name:  # the manifest names the new file: the old one can go
            before.unlink(missing_ok=True)
        return ck

    @classmethod
    def load(cls, out: Path, scene: Scene4D, cfg: FitConfig, objective) -> "TrainState":
        """The state of ``out``'s checkpoint, loaded into ``scene`` (built with the run's entities and
        fields; its Gaussians are replaced) and ``objective``; restores the global RNGs."""
        ck = Path(out) / CHECKPOINT_DIR
        try:
            meta = json.loads((ck / "latest.json").read_text())
            int(meta["step"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{ck / 'latest.json'} is unreadable ({type(e).__name__}); the checkpoint cannot be "
                                  "resumed: start again without --resume into another --out") from None
        path = tensors_path(out)
        rec = meta.get("tensors") if isinstance(meta.get("tensors"), dict) else None
        if not path.is_file():
            raise CheckpointError(f"{ck / 'latest.json'} names {path.name}, which is missing; the checkpoint cannot be "
                                  "resumed: start again without --resume into another --out")
        if rec is not None and (path.stat().st_size != rec.get("bytes") or _sha256(path) != rec.get("sha256")):
            raise CheckpointError(f"{path} does not match {ck / 'latest.json'} (size or SHA-256 differ: damaged or "
                                  "written by another run); refusing to resume from it. Start again without --resume "
                                  "into another --out")
        try:
            tensors = load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for damaged files
            raise CheckpointError(f"{path} cannot be read ({e}); the checkpoint cannot be resumed") from None
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
