"""Time scrubbing in ``scene4d view``: how many time changes per second the server evaluates and
sends, on a scene of --gaussians Gaussians every one of which moves (motion nodes, 48 nodes, the
reconstruct presets' field), with a browser connected so that every update really leaves over the
websocket.

    python bench/view.py [--gaussians 30000] [--updates 60] [--threads 1] [--no-browser]

Per update: ``evaluate`` (the deformation at the new time, here), ``pack`` (to viser's splat
layout: covariances, colours), ``send`` (``set_gaussians``: buffer assembly and queueing), and
the total; updates/s is 1 / total (the playback loop runs updates back to back). With Chromium
present (Debian's, as the browser test uses) a page is connected over software WebGL; its own
frame rate is not measured here (it depends on the user's GPU).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_scene(n: int, nodes: int = 48):
    import math

    import torch

    from scene4d.deformation import MotionNodesConfig
    from scene4d.field import Scene4D, init_params

    g = torch.Generator().manual_seed(0)
    pts = torch.randn(n, 3, generator=g) * 0.4
    s = Scene4D(init_params(pts, torch.rand(n, 3, generator=g), 0, opacity=0.5),
                MotionNodesConfig(nodes=nodes, time_resolution=8), sh_degree=0)
    s.initialize_fields()
    with torch.no_grad():
        k = torch.linspace(0, 2 * math.pi, 8)
        s.deformation.translations[:, :, 0] = 0.2 * torch.sin(k)
        s.deformation.rotvecs[:, :, 2] = 0.5 * torch.sin(k)
    return s.eval()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gaussians", type=int, nargs="+", default=[30_000])
    ap.add_argument("--updates", type=int, default=60)
    ap.add_argument("--threads", type=int, default=None, help="as --threads of the commands (default: theirs)")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args(argv)

    import numpy as np
    from renderers import configure_cpu_threads
    from scene4d.view import Viewer, free_port

    how = configure_cpu_threads(args.threads)
    exe = None if args.no_browser else (shutil.which("chromium") or shutil.which("chromium-browser"))
    print(f"threads: {how}; browser: {exe or 'none'}")
    print(f"{'Gaussians':>10}{'moving':>8}{'evaluate ms':>13}{'pack ms':>9}{'send ms':>9}{'total ms':>10}"
          f"{'updates/s':>11}{'MB/update':>11}")
    for n in args.gaussians:
        scene = make_scene(n)
        v = Viewer(scene, port=free_port("127.0.0.1", 18900))
        pw = browser = page = None
        try:
            if exe:
                from playwright.sync_api import sync_playwright

                pw = sync_playwright().start()
                browser = pw.chromium.launch(executable_path=exe, args=["--use-angle=swiftshader",
                                                                        "--enable-unsafe-swiftshader", "--no-sandbox"])
                page = browser.new_page(viewport={"width": 640, "height": 480})
                page.goto(v.url)
                t0 = time.time()
                while not v.server.get_clients() and time.time() - t0 < 30:
                    time.sleep(0.1)
            s = v._splats
            parts, tot = [], []
            for i in range(args.updates):
                tot.append(v.set_time((i + 0.5) / args.updates))  # what the slider and the player call
                parts.append(v.timings)
            e, p, snd = (1e3 * float(np.median([x[k] for x in parts])) for k in range(3))
            T = 1e3 * float(np.median(tot))
            print(f"{n:>10}{s.n_dynamic:>8}{e:>13.1f}{p:>9.1f}{snd:>9.1f}{T:>10.1f}{1e3 / T:>11.1f}"
                  f"{s.bytes_per_update / 1e6:>11.2f}")
        finally:
            if browser is not None:
                browser.close()
            if pw is not None:
                pw.stop()
            v.close()


if __name__ == "__main__":
    main()
