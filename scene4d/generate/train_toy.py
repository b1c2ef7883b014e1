"""Train the embedded toy prior on the toy world: ``scene4d prior train-toy``.

Data are made on the fly from the toy world (:mod:`scene4d.generate.toyworld`) with fixed seeds: chunk
``k`` (``chunk_groups`` groups of G = 4 images) is rendered from seed ``(seed, k)`` only, by worker
processes when there are cores to spare. Each group is one of

* ``views``: 4 cameras 90 degrees apart in azimuth, one elevation, one time (a multi-view group,
  MVDream's training layout);
* ``times``: one camera, 4 times spread over the clip in order (a video group);
* ``grid``: 2 cameras 90 degrees apart x 2 times;

so one model serves as the image, multi-view and video prior. Only prompts of the seen split are
drawn (:func:`toyworld.held_out` lists what is held out).

Which chunks a step may draw from is a function of the step alone (chunk ``k`` joins the buffer at
step ``k * steps_per_chunk`` past the first ones, and the buffer keeps the newest ``buffer_chunks``),
so a run is the same whatever the number of workers, and a resumed run re-renders its buffer and is
bit-for-bit the run that was interrupted (on the CPU).

Checkpoints (safetensors + JSON): weights, EMA weights, Adam moments, the step, RNG states. Each
checkpoint also exports the EMA weights as a prior folder (``OUT/prior``, fp16, diffusers layout, with
``training.json``: the command, steps, time, machine), so an interrupted run always leaves a prior
that ``generate --prior toy:OUT/prior`` loads.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from tqdm import tqdm

from ..io import atomic_save_tensors, atomic_write_json
from ..train.state import _load_opt, _opt_tensors

GROUP = 4
MODES = ("views", "times", "grid")


@dataclass
class ToyTrainConfig:
    """One training run of the toy prior."""

    steps: Optional[int] = 20000
    """Optimizer steps (None when resuming: the run's own total)."""
    batch: int = 32
    """Groups (of 4 images) per step."""
    lr: float = 3e-4
    """AdamW learning rate (after a linear warm-up; cosine decay to a tenth)."""
    warmup: int = 500
    weight_decay: float = 0.0
    ema: float = 0.999
    """Decay of the exponential moving average of the weights (the EMA weights are the ones shipped)."""
    size: int = 32
    channels: Tuple[int, ...] = (32, 64, 128)
    heads: int = 8
    """Attention heads per layer (1: ~3x faster on a CPU)."""
    prediction_type: str = "epsilon"
    """What the U-Net predicts: "epsilon" or "v_prediction" (a time expert's choice: see
    :func:`diffusion_prior.toy.new_toy_prior`)."""
    p_drop_text: float = 0.1
    p_drop_camera: float = 0.1
    p_two_objects: float = 0.35
    """Share of groups showing two objects with a relation."""
    chunk_groups: int = 64
    """Groups rendered per data chunk."""
    initial_chunks: int = 8
    """Chunks in the buffer at step 1."""
    steps_per_chunk: int = 8
    """A new chunk joins the buffer every this many steps."""
    buffer_chunks: int = 32
    """The buffer keeps the newest this many chunks."""
    checkpoint_every: int = 1000
    seed: int = 0
    high_t_share: float = 0.0
    """Share of groups whose timestep is drawn from the top of the schedule ([high_t_from, 1) x T)
    instead of all of it. Where an object is at a time t only matters at high noise (lower down the
    noisy image shows it), yet the epsilon loss there is ~20x smaller than near t = 0, so the
    uniform draw spends almost all of its gradient on denoising fine detail; a fine-tune that
    teaches time leans on the top (0: the uniform draw, as the shipped run)."""
    high_t_from: float = 0.5
    video_camera: Optional[Tuple[float, float]] = None
    """(azimuth, elevation) in degrees: every group is a video group (4 times in order) at this one
    camera -- a *time expert*, trained with ``high_t_share=1`` on the top of the schedule only, where
    the time decides the picture (``bench/toy_time.py``: at one camera the time is learned in ~900
    steps, at any camera not in 1100). It is paired with the multi-view prior, which denoises below
    ``high_t_from`` (eDiff-I's expert denoisers); None: the three group kinds at any camera."""
    ema_warmup: bool = True
    """The EMA decay starts young ((1 + step) / (10 + step), capped at ``ema``) so a fresh run's
    average forgets its random start; off for a warm start (``--init``), whose start is worth keeping."""


# ----------------------------------------------------------------------------- data
def _chunk_seed(seed: int, k: int) -> int:
    return (seed * 1_000_003 + k * 7919 + 12345) % (2**62)


def render_chunk(seed: int, k: int, n_groups: int, size: int, p_two: float,
                 video_camera: Optional[Tuple[float, float]] = None) -> Dict:
    """Chunk ``k``: ``n_groups`` groups rendered from the seen split, from seed ``(seed, k)`` alone.
    Returns uint8 images (n, G, 3, s, s), float32 cameras (n, G, 4, 4), times (n, G), prompts."""
    from . import toyworld as tw

    gen = torch.Generator().manual_seed(_chunk_seed(seed, k))
    images, cams, times, prompts = [], [], [], []
    for _ in range(n_groups):
        two = float(torch.rand(1, generator=gen)) < p_two
        scene = tw.sample_scene(gen, split="seen", objects=(0.0, 1.0) if two else (1.0, 0.0))
        mode = MODES[int(torch.randint(len(MODES), (1,), generator=gen))]
        az0 = float(torch.rand(1, generator=gen)) * 360.0
        el = float(tw.ELEVATION_DEG[0] + torch.rand(1, generator=gen) * (tw.ELEVATION_DEG[1] - tw.ELEVATION_DEG[0]))
        if video_camera is not None:
            mode, az0, el = "times", float(video_camera[0]), float(video_camera[1])
        if mode == "views":
            az = [az0 + 90.0 * i for i in range(GROUP)]
            ts = [float(torch.rand(1, generator=gen))] * GROUP
        elif mode == "times":
            az = [az0] * GROUP
            start = float(torch.rand(1, generator=gen)) * 0.25
            span = 0.5 + float(torch.rand(1, generator=gen)) * (1.0 - 0.5 - start)
            ts = [start + span * i / (GROUP - 1) for i in range(GROUP)]
        else:
            t0 = float(torch.rand(1, generator=gen)) * 0.5
            t1 = t0 + 0.25 + float(torch.rand(1, generator=gen)) * (1.0 - 0.25 - t0)
            az = [az0, az0 + 90.0, az0, az0 + 90.0]
            ts = [t0, t0, t1, t1]
        c = tw.sample_cameras(GROUP, gen, size=size, azimuth=torch.tensor(az), elevation=(el, el),
                              times=torch.tensor(ts))
        img = tw.render_gt(scene, c)  # (G, s, s, 3)
        images.append((img.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 3, 1, 2))
        cams.append(c.world_to_camera.float())
        times.append(torch.tensor(ts, dtype=torch.float32))
        prompts.append(scene.prompt())
    return {"k": k, "images": torch.stack(images), "cameras": torch.stack(cams), "times": torch.stack(times),
            "prompts": prompts}


def _one_thread() -> None:
    """A data worker renders on one thread (the training process keeps its own ``--threads``)."""
    torch.set_num_threads(1)


class ChunkBuffer:
    """The chunks a step may draw from, produced in order by worker processes (or in this process)."""

    def __init__(self, cfg: ToyTrainConfig, workers: int):
        self.cfg = cfg
        self.workers = workers
        self.chunks: Dict[int, Dict] = {}
        self.pending: Dict[int, object] = {}
        self.pool = None
        self.next_k = 0
        if workers > 0:
            import concurrent.futures as cf
            import multiprocessing as mp

            self.pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_one_thread)

    def available(self, step: int) -> Tuple[int, int]:
        """``[lo, hi)``: the chunks step ``step`` (1-based) draws from."""
        c = self.cfg
        hi = c.initial_chunks + (step - 1) // c.steps_per_chunk
        return max(0, hi - c.buffer_chunks), hi

    def _submit(self, upto: int) -> None:
        c = self.cfg
        while self.pool is not None and self.next_k < upto:
            k = self.next_k
            if k not in self.chunks:
                self.pending[k] = self.pool.submit(render_chunk, c.seed, k, c.chunk_groups, c.size, c.p_two_objects,
                                                   c.video_camera)
            self.next_k += 1

    def ensure(self, step: int) -> Tuple[int, int]:
        lo, hi = self.available(step)
        if self.pool is not None:
            self.next_k = max(self.next_k, lo)
            self._submit(hi + 2 * self.workers)  # keep every worker busy ahead of need
        for k in range(lo, hi):
            if k in self.chunks:
                continue
            if k in self.pending:
                self.chunks[k] = self.pending.pop(k).result()
            else:
                c = self.cfg
                self.chunks[k] = render_chunk(c.seed, k, c.chunk_groups, c.size, c.p_two_objects,
                                                   c.video_camera)
        for k in [k for k in self.chunks if k < lo]:
            del self.chunks[k]
        return lo, hi

    def batch(self, step: int, n: int, gen: torch.Generator):
        lo, hi = self.ensure(step)
        per = self.cfg.chunk_groups
        idx = torch.randint((hi - lo) * per, (n,), generator=gen).tolist()
        imgs, cams, times, prompts = [], [], [], []
        for i in idx:
            ch = self.chunks[lo + i // per]
            j = i % per
            imgs.append(ch["images"][j])
            cams.append(ch["cameras"][j])
            times.append(ch["times"][j])
            prompts.append(ch["prompts"][j])
        return (torch.stack(imgs).float() / 255.0, torch.stack(cams), torch.stack(times), prompts)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


# ----------------------------------------------------------------------------- the run
def _lr(cfg: ToyTrainConfig, step: int) -> float:
    if step <= cfg.warmup:
        return cfg.lr * step / max(cfg.warmup, 1)
    f = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(f, 1.0))))



def toy_vocabulary() -> List[str]:
    """Every word of the toy grammar (the tokenizer builds each whole)."""
    from . import toyworld as tw

    words = {"a", "an"}
    for phrase in tw.SHAPES + tw.COLOURS + tw.MOTIONS + tw.RELATIONS:
        words.update(phrase.split())
    return sorted(words)


@dataclass
class ToyTrainResult:
    prior_dir: Path
    steps: int
    seconds: float
    losses: List[float] = field(default_factory=list)


def train_toy_prior(out: Path, cfg: ToyTrainConfig, *, resume: bool = False, device=None, workers: int = 0,
                    progress: bool = True, stop_at: Optional[int] = None, command: str = "",
                    time_budget: Optional[float] = None, init: Optional[Path] = None) -> ToyTrainResult:
    """Train (or continue training) the toy prior into ``out`` (``out/prior`` is the usable folder).

    ``time_budget`` (seconds, for a lent GPU): after 300 steps the run measures its speed (over steps 101-300) and
    shortens ``cfg.steps`` so that it ends inside the budget (the learning-rate schedule then
    follows the new length; the change is recorded in ``training.json``).

    ``init`` (a toy prior folder, e.g. the shipped one): start from its weights instead of random ones
    (a warm start: fresh Adam moments and schedule; its ``training.json`` is kept as ``init`` in the
    new record, so the shipped weights' whole history stays beside them)."""
    from diffusion_prior.toy import new_toy_prior, trainable_parameters, training_loss  # not in data workers

    out = Path(out)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ck = out / "checkpoints"
    if not resume and (ck / "latest.json").is_file():
        raise FileExistsError(f"{out} holds an unfinished training run; pass --resume to continue it, or choose "
                              "another --out")
    if resume and not (ck / "latest.json").is_file():
        raise FileNotFoundError(f"{out}: nothing to resume (no checkpoints/latest.json); start without --resume")
    start, seconds_before, sittings = 0, 0.0, []
    if resume:
        meta = json.loads((ck / "latest.json").read_text())
        saved = {**asdict(ToyTrainConfig()), **meta["config"]}  # a run from before a setting existed: its default
        saved["channels"] = tuple(saved["channels"])
        if saved.get("video_camera") is not None:
            saved["video_camera"] = tuple(saved["video_camera"])
        if asdict(cfg) != saved and any(k != "steps" and saved[k] != v for k, v in asdict(cfg).items()):
            print("resuming with the settings the run started with (only --steps may change)")
        # steps=None: the run's own total (a resume that silently took a new default total would
        # change the learning-rate schedule under the run)
        cfg = ToyTrainConfig(**{**asdict(ToyTrainConfig()), **saved,
                                "steps": saved["steps"] if cfg.steps is None else cfg.steps})
    if cfg.steps is None:
        raise ValueError("steps=None keeps a resumed run's own total; a new run needs a number of steps")
    prior = new_toy_prior(toy_vocabulary(), size=cfg.size, channels=cfg.channels, seed=cfg.seed, heads=cfg.heads,
                          prediction_type=cfg.prediction_type)
    if cfg.video_camera is not None:
        from diffusion_prior.experts import EXPERT_KEY

        prior.config[EXPERT_KEY] = expert_record(cfg)
    init_record = None
    if init is not None and not resume:
        init_record = _warm_start(prior, Path(init))
    elif resume:
        init_record = meta.get("init")
    prior.to(device)
    params = trainable_parameters(prior)
    for p in params:
        p.requires_grad_(True)
    prior.unet.train()
    prior.text_encoder.train()
    ema = [p.detach().clone().float() for p in params]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(cfg.seed)
    if resume:
        from safetensors.torch import load_file

        t = load_file(str(ck / "latest.safetensors"))
        with torch.no_grad():
            for i, p in enumerate(params):
                p.copy_(t[f"param.{i}"].to(device))
                ema[i].copy_(t[f"ema.{i}"].to(device))
        _load_opt("adam", opt, {k: v.to(device) if not k.endswith(".step") else v for k, v in t.items()})
        gen.set_state(t["rng.sampler"])
        start = int(meta["step"])
        seconds_before = float(meta.get("seconds", 0.0))
        sittings = list(meta.get("sittings", []))
    buffer = ChunkBuffer(cfg, workers)
    last = cfg.steps if stop_at is None else min(cfg.steps, stop_at)
    stop = {"flag": False}
    old = None
    if _main_thread():
        old = {s: signal.signal(s, lambda *_: stop.__setitem__("flag", True)) for s in (signal.SIGINT, signal.SIGTERM)}
    use_amp = device.type == "cuda"
    t0 = time.perf_counter()
    losses: List[float] = []
    bar = tqdm(total=cfg.steps, initial=start, desc="train-toy", unit="it", disable=not progress, dynamic_ncols=True)
    ema_loss = None
    step = start
    imgs_seen = 0

    def save(step: int) -> None:
        tensors = {f"param.{i}": p.detach() for i, p in enumerate(params)}
        tensors.update({f"ema.{i}": e for i, e in enumerate(ema)})
        tensors.update(_opt_tensors("adam", opt))
        tensors["rng.sampler"] = gen.get_state()
        atomic_save_tensors(ck / "latest.safetensors", tensors)
        secs = seconds_before + time.perf_counter() - t0
        # every sitting of a resumed run: its command, the steps it took and where it ran
        here = sittings + [{"command": command, "from_step": start, "to_step": step, "machine": _machine(device),
                            "seconds": round(time.perf_counter() - t0, 1)}]
        atomic_write_json(ck / "latest.json", {"step": step, "config": asdict(cfg), "seconds": round(secs, 1),
                                               "init": init_record, "sittings": here})
        export_prior(prior, params, ema, out / "prior", {
            "command": here[0]["command"] if here[0]["from_step"] == 0 else command, "sittings": here,
            "steps": step, "of_steps": cfg.steps, "seconds": round(secs, 1),
            "machine": _machine(device), "config": asdict(cfg),
            "images_seen": step * cfg.batch * GROUP, "final_loss_ema": ema_loss, "budget": budget_note,
            "held_out": held_out_record(), **({"init": init_record} if init_record else {})})

    budget_note = None
    try:
        while step < last:
            step += 1
            if time_budget is not None and step == start + 101:
                t_101 = time.perf_counter()  # after the first chunks and the warm-up of the kernels
            if time_budget is not None and step == start + 301:
                per = (time.perf_counter() - t_101) / 200
                fit_steps = int(step + 0.92 * (time_budget - (time.perf_counter() - t0)) / per)
                if fit_steps < cfg.steps:
                    budget_note = f"steps cut from {cfg.steps} to {fit_steps} to fit {time_budget:.0f} s ({per * 1000:.1f} ms/step)"
                    print("\n" + budget_note)
                    cfg.steps = max(step, fit_steps)
                    last = cfg.steps if stop_at is None else min(cfg.steps, stop_at)
                    bar.total = cfg.steps
            imgs, cams, times, prompts = buffer.batch(step, cfg.batch, gen)
            for g in opt.param_groups:
                g["lr"] = _lr(cfg, step)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = training_loss(prior, imgs.to(device), cams, times, prompts, gen,
                                     p_drop_text=cfg.p_drop_text, p_drop_camera=cfg.p_drop_camera,
                                     high_t_share=cfg.high_t_share, high_t_from=cfg.high_t_from)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            with torch.no_grad():
                d = min(cfg.ema, (1 + step) / (10 + step)) if cfg.ema_warmup else cfg.ema  # young start
                torch._foreach_lerp_(ema, [p.detach().float() for p in params], 1 - d)
            imgs_seen += cfg.batch * GROUP
            if step % 10 == 0 or step == last:
                lv = float(loss.detach())
                losses.append(lv)
                ema_loss = lv if ema_loss is None else 0.9 * ema_loss + 0.1 * lv
                el = time.perf_counter() - t0
                bar.set_postfix(loss=f"{ema_loss:.4f}", img_s=f"{imgs_seen / max(el, 1e-9):.0f}",
                                chunks=f"{buffer.available(step)[1]}")
            bar.update(1)
            if step % cfg.checkpoint_every == 0 or step == last or stop["flag"]:
                save(step)
            if stop["flag"]:
                break
    finally:
        bar.close()
        buffer.close()
        if old:
            for s, h in old.items():
                signal.signal(s, h)
    if stop["flag"] and step < cfg.steps:
        raise KeyboardInterrupt(f"stopped at step {step}/{cfg.steps}; checkpoint and prior saved in {out}. Continue "
                                f"with: scene4d prior train-toy --out {out} --resume")
    return ToyTrainResult(out / "prior", step, seconds_before + time.perf_counter() - t0, losses)


def expert_record(cfg: ToyTrainConfig) -> dict:
    """The ``time_expert`` record of a run with ``video_camera`` (see :mod:`diffusion_prior.experts`):
    its camera as the 16 MVDream numbers, how to render from it, and the bottom of its schedule
    (0 when it was trained on the whole schedule)."""
    from diffusion_prior.multiview import mvdream_camera

    from . import toyworld as tw

    az, el = (float(v) for v in cfg.video_camera)
    cam = tw.camera_from_angles(az, el)
    return {"camera": [round(float(v), 6) for v in mvdream_camera(cam.world_to_camera[0])],
            "azimuth": az, "elevation": el, "radius": tw.CAMERA_DISTANCE, "fov": tw.FOV_DEG,
            "t_from": cfg.high_t_from if cfg.high_t_share >= 1 else 0.0}


def _warm_start(prior, folder: Path) -> dict:
    """Copy a saved toy prior's weights into ``prior`` (same architecture and words, or a one-line error)."""
    from diffusion_prior.multiview import MultiViewPrior

    src = MultiViewPrior.from_pretrained(folder)
    for name in ("unet", "text_encoder"):
        mine, theirs = getattr(prior, name).state_dict(), getattr(src, name).state_dict()
        if mine.keys() != theirs.keys() or any(mine[k].shape != theirs[k].shape for k in mine):
            raise ValueError(f"--init {folder}: its {name} does not match this run's architecture (size, channels "
                             "or vocabulary differ); start from scratch or use a prior trained with these settings")
        getattr(prior, name).load_state_dict({k: v.float() for k, v in theirs.items()})
    rec = folder / "training.json"
    return {"folder": str(folder), "record": json.loads(rec.read_text()) if rec.is_file() else None}


def export_prior(prior, params, ema, folder: Path, record: dict) -> Path:
    """The EMA weights as an fp16 prior folder (written beside, then swapped in whole)."""
    import shutil
    import tempfile

    with torch.no_grad():
        live = [p.detach().clone() for p in params]
        for p, e in zip(params, ema):
            p.copy_(e.to(p.dtype))
        folder = Path(folder)
        tmp = Path(tempfile.mkdtemp(prefix=".prior.", dir=folder.parent if folder.parent.exists() else None))
        try:
            prior.save_pretrained(tmp, dtype=torch.float16)
            (tmp / "training.json").write_text(json.dumps(record, indent=2) + "\n")
            old = folder.with_name(folder.name + ".old")
            if folder.exists():
                os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            for p, v in zip(params, live):
                p.copy_(v)
    return folder


def held_out_record() -> dict:
    """The held-out split, as recorded beside the weights."""
    from . import toyworld as tw

    from dataclasses import asdict

    return {k: [list(x) for x in v] for k, v in asdict(tw.held_out()).items()}


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, {os.cpu_count()} CPU cores"
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads, {os.cpu_count()} cores"


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":  # pragma: no cover - python -m for quick runs
    train_toy_prior(Path(sys.argv[1]), ToyTrainConfig(steps=int(sys.argv[2]) if len(sys.argv) > 2 else 100))
