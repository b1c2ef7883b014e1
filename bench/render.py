"""Rasterizer speed and memory: forward and forward+backward, per backend.

    python bench/render.py                      # the standard grid (10k/100k x 256^2/800^2 x 1/8 cams)
    python bench/render.py --n 20000 --size 256 # one configuration
    python bench/render.py --n 20000 100000 --size 256 800 --cams 1 --isolate --threads 1 2
                                                # the compiled CPU rasterizer's acceptance grid: each
                                                # (backend, config, threads) in its own process, its
                                                # peak RSS reported

On the CPU the backends are the torch rasterizer (the reference) and the compiled one ("numba"),
measured in the same run; the ratio line is torch time / numba time.

Scene: N Gaussians in a cube seen from a ring of cameras, sizes log-uniform so footprints span
~1-20 px at 256^2 (a trained scene's mix), opacities uniform in [0.1, 0.9], SH degree 3.
Times are medians of --repeat runs after one warm-up. Peak memory: CUDA allocator peak on a GPU;
on the CPU the growth of the process's peak RSS during the run (a lower bound: ru_maxrss only
grows, so later configurations report 0 when they fit in memory an earlier one touched).
For gsplat on a GPU, the ratio `rasterize(gsplat) / bare gsplat.rasterization` is printed too.

    python bench/render.py --scene SCENE_DIR --size 800 --frames 120   # playback of a fitted scene
    python bench/render.py --scene random:30000:dnerf:hexplane          # ... of a random one that size

Playback: an orbit with time playing, so the deformation field is evaluated for every frame
(`scene.at(t)` then rasterize), timed end to end per frame on the device; the same orbit with
time frozen (deformation once, rasterize only) is the reference measured in the same run.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cameras import Cameras, intrinsics_from_fov, look_at  # noqa: E402
from renderers import Gaussians, cpu_backend_available, default_device, gsplat_available, rasterize  # noqa: E402


def make_scene(n: int, size: int, n_cams: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) * 2 - 1) * 1.0
    quats = torch.randn(n, 4, generator=g)
    # log-uniform scales in world units: 0.004..0.04 of a 2-unit cube seen from 4 units away
    scales = torch.exp(math.log(0.004) + torch.rand(n, 3, generator=g) * math.log(10.0))
    opac = 0.1 + 0.8 * torch.rand(n, generator=g)
    sh = torch.randn(n, 16, 3, generator=g) * 0.3
    gs = Gaussians(means, quats, scales, opac, sh).to(device)
    ang = torch.arange(n_cams) * (2 * math.pi / n_cams)
    eye = torch.stack([4 * torch.cos(ang), 4 * torch.sin(ang), torch.full_like(ang, 1.0)], -1)
    w2c = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    K = intrinsics_from_fov(math.radians(40), size, size).expand(n_cams, 3, 3).clone()
    return gs, Cameras(K, w2c, size, size).to(device)


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _peak_mb(device):
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_it(fn, device, repeat):
    fn()
    _sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base = _peak_mb(device) if device != "cuda" else 0.0
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), max(0.0, _peak_mb(device) - base)


def bench_one(backend, n, size, n_cams, device, repeat, bare=False):
    gs, cams = make_scene(n, size, n_cams, device)
    params = [t.clone().requires_grad_(True) for t in (gs.means, gs.quats, gs.scales, gs.opacities, gs.sh)]

    def fwd():
        with torch.no_grad():
            if bare:
                from gsplat import rasterization

                rasterization(gs.means, gs.quats, gs.scales, gs.opacities, gs.sh, cams.world_to_camera, cams.K,
                              size, size, sh_degree=3, packed=False, render_mode="RGB+ED")
            else:
                rasterize(gs, cams, backend=backend)

    def fwd_bwd():
        g = Gaussians(*params)
        if bare:
            from gsplat import rasterization

            r, a, _ = rasterization(*params, cams.world_to_camera, cams.K, size, size, sh_degree=3,
                                    packed=False, render_mode="RGB+ED")
            loss = r.sum() + a.sum()
        else:
            out = rasterize(g, cams, backend=backend, check=False)
            loss = out.rgb.sum() + out.alpha.sum() + out.depth.sum()
        loss.backward()

    tf, mf = time_it(fwd, device, repeat)
    tb, mb = time_it(fwd_bwd, device, repeat)
    return tf, tb, mf, mb


def random_scene(n: int, preset_name: str, field: str):
    """A dynamic scene of n Gaussians (a ball of radius 1) with the preset's deformation field, its
    parameters randomised: the per-frame cost of a fitted scene of that size, without fitting one."""
    from scene4d.field import Scene4D, init_params
    from scene4d.reconstruct import preset

    g = torch.Generator().manual_seed(0)
    pts = torch.randn(n, 3, generator=g)
    pts = pts / pts.norm(dim=-1, keepdim=True) * torch.rand(n, 1, generator=g) ** (1 / 3)
    cfg = preset(preset_name, field)
    cfg.deformation.bounds_radius = 1.0
    params = init_params(pts, torch.rand(n, 3, generator=g), cfg.sh_degree, opacity=0.5)
    scene = Scene4D(params, cfg.deformation, sh_degree=cfg.sh_degree)
    with torch.no_grad():
        if hasattr(scene.deformation, "place_nodes"):
            scene.deformation.place_nodes(pts)
        for p in scene.deformation.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    return scene


def bench_playback(folder, size: int, frames: int, device: str, backend: str):
    from scene4d.io import load_scene
    from scene4d.render import make_path

    if isinstance(folder, str) and folder.startswith("random:"):  # random:N:PRESET:FIELD
        _, n, preset_name, field = folder.split(":")
        scene = random_scene(int(n), preset_name, field)
    else:
        scene, _, _ = load_scene(folder)
    scene.eval()
    scene.to(device)
    play = make_path("orbit", scene, frames=frames, size=(size, size), time="play").to(device=device)
    times = play.times.reshape(-1).tolist()
    bg = torch.ones(3, device=device)

    @torch.no_grad()
    def run(frozen: bool):
        per = []
        g = scene.at(0.5) if frozen else None
        for i in range(frames):
            t0 = time.perf_counter()
            gi = g if frozen else scene.at(times[i])
            rasterize(gi, play[i], background=bg, backend=backend, check=False)
            _sync(device)
            per.append(time.perf_counter() - t0)
        return statistics.median(per)

    run(False)  # warm-up: kernels, allocator
    t_play = run(False)
    t_frozen = run(True)
    field = type(scene.deformation).__name__ if scene.deformation is not None else "none"
    print(f"playback {folder} ({len(scene)} Gaussians, {field}) {size}x{size} {device} {backend}: "
          f"{1 / t_play:.1f} FPS with the deformation every frame ({1000 * t_play:.2f} ms/frame); "
          f"time frozen {1 / t_frozen:.1f} FPS ({1000 * t_frozen:.2f} ms); deformation share "
          f"{max(0.0, t_play - t_frozen) / t_play:.0%}", flush=True)


def bench_isolated(be, n, size, c, repeat, threads):
    """bench_one in a fresh process: its absolute peak RSS is this configuration's alone."""
    code = (f"import sys, resource, torch; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
            f"torch.set_num_threads({threads})\n"
            "from render import bench_one\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
            f"r = bench_one({be!r}, {n}, {size}, {c}, 'cpu', {repeat})\n"
            "print('RESULT', r[0], r[1], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, base)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT")]
    if p.returncode != 0 or not lines:
        raise SystemExit(p.stderr[-2000:])
    _, tf, tb, rss, base = lines[-1].split()
    return float(tf), float(tb), float(rss), float(base)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--size", type=int, nargs="*", default=[256, 800])
    ap.add_argument("--cams", type=int, nargs="*", default=[1, 8])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--backends", nargs="*", default=None)
    ap.add_argument("--isolate", action="store_true",
                    help="CPU: each measurement in its own process, reporting that process's peak RSS")
    ap.add_argument("--threads", type=int, nargs="*", default=None,
                    help="CPU thread counts to measure (default: torch's); with --isolate")
    ap.add_argument("--scene", default=None, help="a fitted scene folder: time its playback (or random:N:PRESET:FIELD, "
                    "a random scene of N Gaussians with that preset's field)")
    ap.add_argument("--frames", type=int, default=120, help="playback frames")
    args = ap.parse_args()
    device = default_device().type
    if args.backends:
        backends = args.backends
    elif device == "cuda":
        backends = ["torch", "gsplat"] if gsplat_available() else ["torch"]
    else:
        backends = ["torch", "numba"] if cpu_backend_available() else ["torch"]
    if args.scene is not None:
        for be in backends:
            for size in args.size:
                bench_playback(args.scene, size, args.frames, device, be)
        return
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} backends={backends} "
          f"cores={os.cpu_count()} load1={load:.2f} (other processes running: ~{load:.1f} cores' worth)")
    if args.isolate:
        if device != "cpu":
            raise SystemExit("--isolate measures CPU processes")
        print(f"{'backend':8s} {'N':>7s} {'size':>5s} {'C':>2s} {'thr':>3s} {'fwd_s':>8s} {'fwd+bwd_s':>10s} "
              f"{'peakRSS_MB':>10s} {'after_imports_MB':>16s}")
        for n in args.n:
            for size in args.size:
                for c in args.cams:
                    for th in args.threads or [torch.get_num_threads()]:
                        row = {}
                        for be in backends:
                            tf, tb, rss, base = bench_isolated(be, n, size, c, args.repeat, th)
                            row[be] = (tf, tb)
                            print(f"{be:8s} {n:7d} {size:5d} {c:2d} {th:3d} {tf:8.3f} {tb:10.3f} {rss:10.0f} {base:16.0f}",
                                  flush=True)
                        if "torch" in row and "numba" in row:
                            print(f"{'':8s} torch/numba ({th} thread{'s' if th > 1 else ''}): fwd "
                                  f"{row['torch'][0] / row['numba'][0]:.1f}x  fwd+bwd "
                                  f"{row['torch'][1] / row['numba'][1]:.1f}x", flush=True)
        return
    print(f"{'backend':8s} {'N':>7s} {'size':>5s} {'C':>2s} {'fwd_s':>8s} {'fwd+bwd_s':>10s} {'fwd_MB':>8s} {'f+b_MB':>8s}")
    for n in args.n:
        for size in args.size:
            for c in args.cams:
                row = {}
                for be in backends:
                    tf, tb, mf, mb = bench_one(be, n, size, c, device, args.repeat)
                    row[be] = (tf, tb)
                    print(f"{be:8s} {n:7d} {size:5d} {c:2d} {tf:8.3f} {tb:10.3f} {mf:8.0f} {mb:8.0f}", flush=True)
                if "gsplat" in row:
                    tf, tb, mf, mb = bench_one("gsplat", n, size, c, device, args.repeat, bare=True)
                    print(f"{'bare':8s} {n:7d} {size:5d} {c:2d} {tf:8.3f} {tb:10.3f} {mf:8.0f} {mb:8.0f}"
                          f"   rasterize/bare: fwd {row['gsplat'][0] / tf:.3f}x  fwd+bwd {row['gsplat'][1] / tb:.3f}x")
                if "torch" in row and "gsplat" in row:
                    print(f"{'':8s} torch/gsplat: fwd {row['torch'][0] / row['gsplat'][0]:.1f}x  "
                          f"fwd+bwd {row['torch'][1] / row['gsplat'][1]:.1f}x")
                if "torch" in row and "numba" in row:
                    print(f"{'':8s} torch/numba: fwd {row['torch'][0] / row['numba'][0]:.1f}x  "
                          f"fwd+bwd {row['torch'][1] / row['numba'][1]:.1f}x", flush=True)


if __name__ == "__main__":
    main()
