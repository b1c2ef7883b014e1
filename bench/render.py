"""Rasterizer speed and memory: forward and forward+backward, per backend.

    python bench/render.py                      # the standard grid (10k/100k x 256^2/800^2 x 1/8 cams)
    python bench/render.py --n 20000 --size 256 # one configuration

Scene: N Gaussians in a cube seen from a ring of cameras, sizes log-uniform so footprints span
~1-20 px at 256^2 (a trained scene's mix), opacities uniform in [0.1, 0.9], SH degree 3.
Times are medians of --repeat runs after one warm-up. Peak memory: CUDA allocator peak on a GPU;
on the CPU the growth of the process's peak RSS during the run (a lower bound: ru_maxrss only
grows, so later configurations report 0 when they fit in memory an earlier one touched).
For gsplat on a GPU, the ratio `rasterize(gsplat) / bare gsplat.rasterization` is printed too.
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cameras import Cameras, intrinsics_from_fov, look_at  # noqa: E402
from renderers import Gaussians, gsplat_available, rasterize  # noqa: E402


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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--size", type=int, nargs="*", default=[256, 800])
    ap.add_argument("--cams", type=int, nargs="*", default=[1, 8])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--backends", nargs="*", default=None)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    backends = args.backends or (["torch", "gsplat"] if gsplat_available() else ["torch"])
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} backends={backends}")
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


if __name__ == "__main__":
    main()
