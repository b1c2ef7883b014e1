"""The toy prior on a lent GPU, without the scene4d CLI (its tyro is not on the machine):

    python bench/gpu_toy.py train OUT SECONDS WORKERS [INIT [HIGH_T_SHARE [HIGH_T_FROM]]]
                                                           # scene4d prior train-toy with a time budget
                                                           # (INIT: continue from a prior folder)
    python bench/gpu_toy.py probe PRIOR_DIR                # does it know motion? (bench/generate.py --probe)
    python bench/gpu_toy.py sample PRIOR_DIR OUT_DIR       # prior samples of a few prompts (PNG grids)
    python bench/gpu_toy.py parity PRIOR_DIR               # SDS gradient CPU vs CUDA; SDS step time on the GPU

``train`` runs exactly what ``scene4d prior train-toy --device cuda --workers W --time-budget S``
runs, with the GPU settings below (batch 128 groups, data chunks of 32 groups, a new chunk every 3
steps), and records the command in ``training.json``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

GPU_SETTINGS = dict(steps=60000, batch=128, lr=4e-4, chunk_groups=32, steps_per_chunk=2, buffer_chunks=400,
                    checkpoint_every=1000)
DEVICE = os.environ.get("GPU_TOY_DEVICE", "cuda")  # cpu: a dry run of this script on a machine without one


def train(out: str, seconds: str, workers: str, init: str = "", high_t_share: str = "0", high_t_from: str = "0.5") -> None:
    from scene4d.generate.train_toy import ToyTrainConfig, train_toy_prior

    w = int(workers)
    settings = dict(GPU_SETTINGS)
    if init:  # a warm start: the shipped weights go on learning (lower rate, short warm-up, no young EMA)
        settings.update(lr=2e-4, warmup=100, ema_warmup=False, high_t_share=float(high_t_share),
                        high_t_from=float(high_t_from))
    if DEVICE == "cpu":  # dry run: the same code path, small
        settings.update(steps=4, batch=4, chunk_groups=4, checkpoint_every=50)
    cfg = ToyTrainConfig(initial_chunks=max(1, 2 * w), **settings)
    extra = f" --init {init} --warmup {cfg.warmup} --high-t-share {cfg.high_t_share} --high-t-from {cfg.high_t_from}" if init else ""
    cmd = (f"scene4d prior train-toy --out {out} --device cuda --workers {w} --steps {cfg.steps} --batch {cfg.batch} "
           f"--lr {cfg.lr} --chunk-groups {cfg.chunk_groups} --initial-chunks {cfg.initial_chunks} --steps-per-chunk "
           f"{cfg.steps_per_chunk} --buffer-chunks {cfg.buffer_chunks} --checkpoint-every {cfg.checkpoint_every} "
           f"--time-budget {seconds}{extra}  (run as: python bench/gpu_toy.py train {out} {seconds} {w}"
           f"{' ' + init + ' ' + high_t_share + ' ' + high_t_from if init else ''})")
    res = train_toy_prior(Path(out), cfg, device=DEVICE, workers=w, command=cmd, time_budget=float(seconds),
                          progress=True, init=Path(init) if init else None)
    print(f"trained {res.steps} steps in {res.seconds:.0f} s; the prior: {res.prior_dir}")
    print("loss every 10 steps (first, middle, last):", res.losses[:3], res.losses[len(res.losses) // 2],
          res.losses[-3:])


def _grid(imgs: torch.Tensor, path: Path) -> None:
    """(rows, cols, 3, s, s) in [0, 1] -> PNG."""
    from PIL import Image

    R, C, _, s, _ = imgs.shape
    g = imgs.permute(0, 3, 1, 4, 2).reshape(R * s, C * s, 3)
    Image.fromarray((g.clamp(0, 1) * 255).round().byte().cpu().numpy()).resize((C * 64, R * 64), Image.NEAREST).save(path)


def sample(prior_dir: str, out_dir: str) -> None:
    from diffusion_prior.multiview import MultiViewPrior
    from scene4d.generate.objective import orbit_camera

    p = MultiViewPrior.from_pretrained(prior_dir, device=DEVICE)
    for prompt in ("a red ball bouncing", "a blue cube spinning", "a green cone sliding next to a yellow torus"):
        cams, ts = [], []
        for j in range(4):
            for i in range(4):
                cams.append(orbit_camera(90.0 * i + 20.0, 15.0, 3.0, 42.0, 32)[0])
                ts.append(j / 3)
        w2c = torch.stack(cams).reshape(4, 4, 4, 4)
        t0 = time.perf_counter()
        imgs = p.sample(prompt, w2c, torch.tensor(ts).reshape(4, 4), steps=50, guidance_scale=3.0,
                        generator=torch.Generator().manual_seed(0))
        name = prompt.replace(" ", "_")[:40]
        _grid(imgs.permute(1, 0, 2, 3, 4), Path(out_dir) / f"sample_{name}.png")  # rows views, columns times
        print(f"sampled {prompt!r}: 16 images, 50 DDIM steps, {time.perf_counter() - t0:.1f} s")


def probe(prior_dir: str) -> None:
    """The motion checks of bench/generate.py --probe and bench/toy_time.py probe, on this device."""
    from diffusion_prior.multiview import MultiViewPrior
    from scene4d.generate import probe as pr

    p = MultiViewPrior.from_pretrained(prior_dir, device=DEVICE)
    prompts = ["a red ball bouncing", "a blue cube spinning", "a yellow cone sliding", "a green cylinder circling",
               "a purple torus swaying", "a white ball growing", "a green cube spinning", "a red cone circling",
               "a purple ball sliding", "an orange cylinder growing"]  # 6 seen, then 4 held out
    rows = []
    for q in prompts:
        r = pr.motion_pull(p, q, guidance=5.0)
        rows.append(r)
        print(f"probe {q!r}: pull {r.pull:+.3f}, margin {r.margin:+.3f}, points to {r.points_to}", flush=True)
    print("seen:", pr.summarize(rows[:6]), "held out:", pr.summarize(rows[6:]))


def parity(prior_dir: str) -> None:
    from cameras import look_at
    from diffusion_prior import TimestepSchedule
    from diffusion_prior.multiview import MultiViewPrior

    cpu = MultiViewPrior.from_pretrained(prior_dir, device="cpu")
    gpu = MultiViewPrior.from_pretrained(prior_dir, device="cuda")
    emb_c, emb_g = cpu.encode_prompt("a red ball bouncing"), gpu.encode_prompt("a red ball bouncing")
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(1, 4, 3, 32, 32, generator=g)
    az = torch.arange(4) * torch.pi / 2
    eye = torch.stack([3 * torch.cos(az), 3 * torch.sin(az), torch.full((4,), 0.8)], -1)
    w2c = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))[None]
    times = torch.tensor([[0.1, 0.4, 0.6, 0.9]])
    sched = TimestepSchedule(0.5, 0.5)
    grads = []
    for p, emb, dev in ((cpu, emb_c, "cpu"), (gpu, emb_g, "cuda")):
        x = imgs.clone().to(dev).requires_grad_(True)
        p.sds(x, emb, cameras=w2c, times=times, guidance_scale=5.0, schedule=sched,
              generator=torch.Generator().manual_seed(1)).loss.backward()
        grads.append(x.grad.detach().cpu().double())
    rel = float((grads[0] - grads[1]).norm() / grads[0].norm())
    print(f"toy SDS gradient, CPU vs CUDA fp32: relative L2 difference {rel:.2e}")
    x = imgs.cuda().requires_grad_(True)
    for _ in range(3):
        gpu.sds(x, emb_g, cameras=w2c, times=times, guidance_scale=5.0).loss.backward()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(20):
        gpu.sds(x, emb_g, cameras=w2c, times=times, guidance_scale=5.0).loss.backward()
    torch.cuda.synchronize()
    print(f"toy SDS step (4 views x CFG, 32x32) on the GPU: {(time.perf_counter() - t0) / 20 * 1000:.1f} ms")


if __name__ == "__main__":
    {"train": train, "sample": sample, "probe": probe, "parity": parity}[sys.argv[1]](*sys.argv[2:])
