"""Text-to-4D measured against known answers.

    python bench/generate.py --analytic [--threads 1]        # the exact prior: static and dynamic targets
    python bench/generate.py --toy [--seeds 3] [--threads 1]  # the embedded toy prior, seen vs held-out prompts

``--analytic``: ``generate --prior analytic:SCENE`` on the shipped static splat scene (64x64) and on
a 4D scene with exact motion (two spheres, motion nodes; :func:`scene4d.procedural.moving_spheres_scene`):
novel-view (and novel-time) PSNR against the target's own renders, the same with the deformation
turned off, and the wall time.

``--toy``: for prompts seen in training and prompts held out (single and two-object), several seeds:
generated scenes (PSNR / SSIM against the toy world's ground truth at 64 novel (view, time) pairs,
colour / shape / motion accuracy read by the model-free classifier, deformation-off PSNR, wall
time). Seen and held-out figures are printed apart, never pooled. Not measured here yet: the
accuracy of the prior's own samples and the analytic-prior ceiling on toy prompts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scene4d.generate.config import load_generate_preset  # noqa: E402
from scene4d.generate.job import generate  # noqa: E402


def analytic(args) -> dict:
    from scene4d.io import save_scene
    from scene4d.procedural import moving_spheres_scene

    rows = {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        target = d / "spheres"
        save_scene(target, moving_spheres_scene())
        runs = [("static: assets/demo_splat.ply", "assets/demo_splat.ply", {"static_share": 1.0}),
                ("dynamic: two spheres with exact motion", str(target), {})]
        if args.only:
            runs = [r for r in runs if r[0].startswith(args.only)]
        for name, path, over in runs:
            cfg = load_generate_preset("analytic")
            cfg.size = args.size
            cfg.preview_every = 0
            for k, v in over.items():
                setattr(cfg, k, v)
            if args.iters:
                cfg.iters = args.iters
            t0 = time.perf_counter()
            res = generate(name, d / f"run{len(rows)}", cfg, prior=f"analytic:{path}", progress=args.progress,
                           video=False)
            m = res.metrics
            rows[name] = {"psnr": m["psnr"], "ssim": m["ssim"], "psnr_deformation_off": m["psnr_deformation_off"],
                          "seconds": round(time.perf_counter() - t0, 1), "steps": res.steps,
                          "gaussians": m.get("n_gaussians"), "size": cfg.size}
            print(f"{name:42s} PSNR {m['psnr']:6.2f} dB  SSIM {m['ssim']:.3f}  deformation off {m['psnr_deformation_off']:6.2f}"
                  f" dB  {rows[name]['seconds']:6.1f} s  {res.steps} steps  {m.get('n_gaussians')} Gaussians  {cfg.size}^2")
    return rows


def toy(args) -> dict:
    from scene4d.generate import toyworld as tw

    prompts = {"seen": args.seen or ["a red ball bouncing", "a blue cube spinning", "a yellow cone sliding",
                                     "a green cylinder circling"],
               "held_out": args.held_out or []}
    if not prompts["held_out"]:
        g = torch.Generator().manual_seed(7)
        while len(prompts["held_out"]) < 3:
            s = tw.sample_scene(g, split="held_out", objects=1)
            if s.prompt() not in prompts["held_out"]:
                prompts["held_out"].append(s.prompt())
    prompts["two_objects"] = args.pairs or ["a red ball bouncing next to a blue cube"]
    out = {}
    for split, plist in prompts.items():
        rows = []
        for p in plist:
            tw.parse_prompt(p)  # a typo in --seen / --held-out fails before any run
            for seed in range(args.seeds):
                cfg = load_generate_preset("toy")
                cfg.seed, cfg.preview_every = seed, 0
                if args.iters:
                    cfg.iters = args.iters
                with tempfile.TemporaryDirectory() as d:
                    t0 = time.perf_counter()
                    res = generate(p, Path(d) / "g", cfg, prior=f"toy:{args.prior}" if args.prior else "toy",
                                   progress=args.progress, video=False)
                    m = dict(res.metrics, seconds=round(time.perf_counter() - t0, 1), prompt=p, seed=seed)
                rows.append(m)
                print(f"[{split}] {p!r} seed {seed}: PSNR {m['psnr']:.2f} dB (deformation off "
                      f"{m['psnr_deformation_off']:.2f}), " + ", ".join(f"{k[4:]} {v:.2f}" for k, v in m.items()
                                                                      if k.startswith("acc_")) + f", {m['seconds']:.0f} s")
        out[split] = {"runs": rows, "mean_psnr": round(statistics.mean(r["psnr"] for r in rows), 2)}
        for k in sorted({k for r in rows for k in r if k.startswith("acc_")}):
            out[split][k] = round(statistics.mean(r.get(k, 0.0) for r in rows), 3)
        print(f"== {split}: mean PSNR {out[split]['mean_psnr']} dB; "
              + ", ".join(f"{k[4:]} {v:.2f}" for k, v in out[split].items() if k.startswith("acc_")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--analytic", action="store_true")
    ap.add_argument("--toy", action="store_true")
    ap.add_argument("--only", default=None, help="--analytic: only the run whose name starts so (static, dynamic)")
    ap.add_argument("--prior", default=None, help="toy prior folder (default: the shipped one)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seen", nargs="*")
    ap.add_argument("--held-out", nargs="*")
    ap.add_argument("--pairs", nargs="*")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    res = {}
    if args.analytic:
        res["analytic"] = analytic(args)
    if args.toy:
        res["toy"] = toy(args)
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
