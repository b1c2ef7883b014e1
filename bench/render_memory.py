"""Peak memory of ``scene4d render`` against the number of frames (issue 20: render used to keep
every frame in memory, ~26 MB per 1080p frame).

    python bench/render_memory.py [--gaussians 30000] [--size 1920x1080] [--frames 10 100]

Each count runs as its own process (the render job on a procedural scene folder, one thread, one
viewpoint for every frame while time plays);
the peak resident memory of that process (``ru_maxrss``) is printed beside the wall time, and
the ratio to the first count. Frames stream to the encoder, so the peak should not grow with the
count."""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_scene(folder: Path, n: int) -> Path:
    import torch

    from scene4d.deformation import MotionNodesConfig
    from scene4d.field import Scene4D, init_params
    from scene4d.io import save_scene

    g = torch.Generator().manual_seed(0)
    pts = torch.randn(n, 3, generator=g) * 0.4
    s = Scene4D(init_params(pts, torch.rand(n, 3, generator=g), 0, opacity=0.5),
                MotionNodesConfig(nodes=8, time_resolution=4), sh_degree=0)
    s.initialize_fields()
    with torch.no_grad():
        s.deformation.translations[:, :, 0] = 0.2 * torch.sin(torch.linspace(0, math.pi, 4))
    return save_scene(folder, s)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gaussians", type=int, default=30_000)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--frames", type=int, nargs="+", default=[10, 100])
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        scene = make_scene(Path(tmp) / "scene", args.gaussians)
        print(f"scene: {args.gaussians} Gaussians; render {args.size}, one thread, one process per count")
        print(f"{'frames':>8}{'peak RSS MB':>14}{'x first':>9}{'wall s':>9}{'s/frame':>9}")
        first = None
        for n in args.frames:
            # one viewpoint for every frame (time plays): the rasterizer's per-frame peak depends on the
            # view, so counts are compared on the same view and only the number of frames differs
            code = ("import resource, sys, torch; torch.set_num_threads(1)\n"
                    "from pathlib import Path\n"
                    "from scene4d.cli import load_scene\n"
                    "from scene4d.render import make_path, parse_size, render_video\n"
                    f"sc, _, _ = load_scene(Path({str(scene)!r}))\n"
                    f"one = make_path('orbit', sc, frames=1, size=parse_size({args.size!r}))\n"
                    f"cams = one[[0] * {n}].with_times(torch.linspace(0, 1, {n}))\n"
                    f"render_video(sc, cams, Path({str(Path(tmp) / f'v{n}.mp4')!r}), progress=False)\n"
                    "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if r.returncode != 0:
                raise SystemExit(r.stderr[-2000:])
            rss = int([ln for ln in r.stdout.splitlines() if ln.startswith("MAXRSS")][-1].split()[1]) / 1024
            first = first or rss
            print(f"{n:>8}{rss:>14.0f}{rss / first:>9.2f}{wall:>9.1f}{wall / n:>9.2f}")


if __name__ == "__main__":
    main()
