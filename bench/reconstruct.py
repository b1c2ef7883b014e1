"""Reconstruction budget benchmark: wall time, it/s, peak memory, Gaussian count, test PSNR.

    python bench/reconstruct.py                              # procedural capture, 128^2, fast preset
    python bench/reconstruct.py --data ../shared/data/dnerf_400/bouncingballs --downscale 4
    python bench/reconstruct.py --compare-static             # same budget with the deformation off
    python bench/reconstruct.py --compare-field hexplane     # same budget with another deformation field
    python bench/reconstruct.py --orbiter-turns 1.5          # the orbiting ball also spins 1.5 turns: a
                                                             #   motion only its texture shows
    python bench/reconstruct.py --handheld                   # generated 320x240 phone-style clip:
                                                             #   poses (pycolmap) + handheld preset
    python bench/reconstruct.py --compare-backend torch      # the same run with the torch rasterizer:
                                                             #   time ratio and PSNR difference
    python bench/reconstruct.py --suite captures/ --threads 1  # every capture in a folder, one line
                                                             #   each and the mean (see --make-suite)
    python bench/reconstruct.py --make-suite captures/ --seeds 0 1 2 --orbiter-turns 0.5
                                                             # procedural captures to run it on
    python bench/reconstruct.py --make-suite spin/ --spinning [fine] --seeds 0 1 2
                                                             # spheres spinning about their own axes (a
                                                             #   spin only their texture shows): the suite
                                                             #   adds each fit's rotation error

The reference in the same run is the static baseline (--compare-static): the dynamic field's gain
over it, in dB, is what the deformation buys for the same number of steps.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scene4d.data import load_capture  # noqa: E402
from scene4d.data.synthetic import make_dnerf_capture, make_spinning_capture, motion_errors  # noqa: E402
from scene4d.reconstruct import FIELDS, preset, train, with_iters, without_motion  # noqa: E402


def run(capture, cfg, label, procedural=False, device="cpu", keep=None, progress=False, backend="auto",
        orbiter_turns=0.0):
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as d:
        res = train(capture, Path(keep) / label if keep else Path(d) / "scene", cfg, progress=progress, device=device,
                    backend=backend)
    m = res.metrics
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mem = f"peakRSS={peak:.0f}MB"
    if device == "cuda":
        mem += f" peakGPU={torch.cuda.max_memory_allocated() / 2**20:.0f}MB"
    print(f"{label:9s} steps={res.steps} wall={res.seconds:.1f}s it/s={res.steps / res.seconds:.2f} "
          f"{mem} gaussians={m['n_gaussians']} psnr={m['psnr']:.2f} ssim={m['ssim']:.4f} "
          f"flicker={m['flicker_static_camera']:.3f}", flush=True)
    if procedural:  # the truth is known: how well each object's motion was followed
        for name, e in motion_errors(res.scene, orbiter_turns=orbiter_turns).items():
            print(f"{'':9s} {name}: rotation error {e['rotation_deg']} deg, centre error {e['centre_error']} "
                  f"({e['gaussians']} Gaussians)", flush=True)
            if e["rotation_deg"] is not None:
                by_t = " ".join(f"{t:g}:{v:.0f}" for t, v in e["rotation_deg_by_time"].items())
                print(f"{'':9s} {'':{len(name)}s}  rotation error by time (deg) {by_t}", flush=True)
    return m


VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm")


def _suite_entries(folder: Path):
    out = []
    for p in sorted(folder.iterdir()):
        if p.is_dir() and any((p / n).is_file() for n in ("transforms_train.json", "transforms.json")):
            out.append(p)
        elif p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
            out.append(p)
    return out


def suite(args) -> None:
    """Each capture of ``args.suite`` in a fresh process (so peak memory is its own), one line each."""
    import json
    import subprocess

    entries = _suite_entries(args.suite)
    if not entries:
        raise SystemExit(f"{args.suite}: no capture folders (transforms_train.json / transforms.json) or videos")
    print(f"suite {args.suite}: {len(entries)} captures, preset {args.preset}"
          f"{f', {args.iters} steps' if args.iters else ''}, threads {args.threads or 'default'}", flush=True)
    print(f"{'capture':32s}{'PSNR':>8}{'SSIM':>8}{'time s':>9}{'Gaussians':>11}{'peak MB':>9}{'spin err':>10}",
          flush=True)
    rows = []
    for e in entries:
        cmd = [sys.executable, __file__, "--one", "--data", str(e), "--preset", args.preset,
               "--downscale", str(args.downscale), "--device", args.device, "--backend", args.backend]
        for flag, v in (("--iters", args.iters), ("--threads", args.threads), ("--field", args.field)):
            if v is not None:
                cmd += [flag, str(v)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in res.stdout.splitlines() if ln.startswith("SUITE ")]
        if res.returncode != 0 or not line:
            why = (res.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"{e.name[:31]:32s} failed: {why}", flush=True)
            continue
        r = json.loads(line[-1][6:])
        rows.append(r)
        tag = "" if r["held_out"] else "  (training view: nothing held out)"
        rot = "" if r.get("rotation_deg") is None else f"{r['rotation_deg']:>9.1f}\u00b0"
        print(f"{e.name[:31]:32s}{r['psnr']:>8.2f}{r['ssim']:>8.4f}{r['seconds']:>9.0f}{r['gaussians']:>11}"
              f"{r['peak_mb']:>9.0f}{rot:>10}{tag}", flush=True)
    if rows:
        mean = lambda k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
        spins = [r["rotation_deg"] for r in rows if r.get("rotation_deg") is not None]
        spin = f"{sum(spins) / len(spins):>9.1f}\u00b0" if spins else ""
        print(f"{'mean of ' + str(len(rows)):32s}{mean('psnr'):>8.2f}{mean('ssim'):>8.4f}{mean('seconds'):>9.0f}"
              f"{mean('gaussians'):>11.0f}{max(r['peak_mb'] for r in rows):>9.0f}{spin:>10}  (peak MB: the largest)",
              flush=True)


def one(args) -> None:
    """A suite's child: poses first for a video, then the run; prints ``SUITE {json}``."""
    import json
    import time

    data = args.data
    with tempfile.TemporaryDirectory() as d:
        if data.is_file():
            from scene4d.sfm import poses_command

            poses_command(data, Path(d) / "poses", max_frames=80, size=320,
                          quiet=True, num_threads=args.threads or -1)
            data = Path(d) / "poses"
            if args.preset == "fast":
                args.preset = "handheld"
        capture = load_capture(data, downscale=args.downscale)
        cfg = preset(args.preset, args.field)
        cfg.threads = args.threads
        if args.iters:
            with_iters(cfg, args.iters)
        t0 = time.perf_counter()
        from renderers import default_device

        device = default_device().type if args.device == "auto" else args.device
        res = train(capture, Path(d) / "scene", cfg, progress=False, device=device, backend=args.backend)
        m = res.metrics
        seconds = time.perf_counter() - t0
        rot = _spin_error(data, res.scene)
    print("SUITE " + json.dumps({
        "psnr": m["psnr"], "ssim": m["ssim"], "seconds": seconds, "gaussians": m["n_gaussians"],
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "held_out": m.get("held_out", True),
        "rotation_deg": rot}), flush=True)


def _spin_error(data: Path, scene):
    """For a capture written by ``--make-suite --spinning`` (its scene.txt names the generator): the
    objects' mean rotation error in degrees (how well the fit followed each spin), else None."""
    from scene4d.data.synthetic import spinning_scene_of

    truth = spinning_scene_of(data)
    if truth is None:
        return None
    errs = [e["rotation_deg"] for e in motion_errors(scene, truth=truth).values() if e["rotation_deg"] is not None]
    return sum(errs) / len(errs) if errs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="capture folder (default: the procedural one)")
    ap.add_argument("--size", type=int, default=128, help="procedural capture size")
    ap.add_argument("--orbiter-turns", type=float, default=0.0,
                    help="procedural capture: the orbiting ball's spin over the clip, in turns (the demo's: 0)")
    ap.add_argument("--downscale", type=int, default=1)
    ap.add_argument("--preset", default="fast", help="a preset in configs/ or a preset file (.json)")
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--field", choices=FIELDS, default=None, help="deformation field (default: the preset's)")
    ap.add_argument("--compare-static", action="store_true")
    ap.add_argument("--compare-field", choices=FIELDS, default=None, help="also run with this field, same budget")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="auto: CUDA (gsplat's rasterizer when installed) if there is a GPU")
    ap.add_argument("--backend", choices=["auto", "torch", "numba", "gsplat"], default="auto", help="rasterizer")
    ap.add_argument("--compare-backend", choices=["torch", "numba", "gsplat"], default=None,
                    help="also run with this rasterizer, same budget (on the CPU: torch beside the compiled one)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the fitted scene folders under this folder")
    ap.add_argument("--progress", action="store_true", help="show the training progress bar")
    ap.add_argument("--handheld", action="store_true", help="a generated handheld clip through poses + reconstruct")
    ap.add_argument("--frames", type=int, default=60, help="frames of the --handheld clip")
    ap.add_argument("--suite", type=Path, default=None,
                    help="run every capture in this folder (D-NeRF/nerfstudio folders, videos) in its own process: "
                         "one line each (test PSNR, SSIM, time, Gaussians, peak memory) and the mean")
    ap.add_argument("--make-suite", type=Path, default=None,
                    help="write procedural captures (one per --seeds value; --orbiter-turns, --size) into this folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--spinning", nargs="?", const="standard", choices=["standard", "fine"], default=None,
                    help="--make-suite: captures of textured spheres that drift and spin about their own axes (up "
                         "to half a turn) and a turning box, objects and cameras drawn from each seed; fine: bigger "
                         "spheres (radius 0.3-0.4 against 0.2-0.3) with finer checkers (6-10 cells against 4-7)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a suite's child: one JSON line
    args = ap.parse_args()
    if args.make_suite is not None:
        for seed in args.seeds:
            if args.spinning:
                # fine: bigger spheres (more of their texture on screen) with finer checkers
                kw = {"radius": (0.3, 0.4), "cells": (6, 10)} if args.spinning == "fine" else {}
                p = make_spinning_capture(args.make_suite / f"spinning_{args.spinning}_seed{seed}", seed=seed,
                                          size=args.size, **kw)
                print(f"wrote {p}: " + "; ".join((p / "scene.txt").read_text().splitlines()[1:]))
            else:
                p = make_dnerf_capture(args.make_suite / f"spin{args.orbiter_turns:g}_seed{seed}", size=args.size,
                                       seed=seed, orbiter_turns=args.orbiter_turns)
                print(f"wrote {p}")
        return
    if args.suite is not None:
        return suite(args)
    if args.one:
        from renderers import configure_cpu_threads

        configure_cpu_threads(args.threads)
        return one(args)
    from renderers import configure_cpu_threads, default_device, resolve_backend

    # what the training jobs do themselves on the CPU (scene4d.reconstruct.train): --threads N gives
    # N threads to both torch and the rasterizer; the default, torch 1 and the rasterizer every core
    threads_note = configure_cpu_threads(args.threads)

    device = default_device().type if args.device == "auto" else args.device
    raster = resolve_backend(args.backend, device)
    print(f"device={device}{' (' + torch.cuda.get_device_name() + ')' if device == 'cuda' else ''} rasterizer={raster} "
          f"torch={torch.__version__} threads={threads_note}")
    with tempfile.TemporaryDirectory() as d:
        if args.handheld:
            import time

            from scene4d.data.handheld import make_handheld_clip
            from scene4d.sfm import poses_command

            truth = make_handheld_clip(Path(d) / "clip.mp4", size=(320, 240), n_frames=args.frames,
                                       dynamic_fraction=0.1, seed=1)
            t0 = time.perf_counter()
            res = poses_command(truth.path, Path(d) / "poses", max_frames=args.frames, size=320, quiet=True)
            print(f"poses: {res.n_registered}/{res.n_frames} frames registered in {time.perf_counter() - t0:.1f}s "
                  f"({', '.join(f'{k} {v:.1f}s' for k, v in res.timings.items())})")
            data = Path(d) / "poses"
            if args.preset == "fast":
                args.preset = "handheld"
        else:
            data = args.data or make_dnerf_capture(Path(d) / "capture", size=args.size,
                                                   orbiter_turns=args.orbiter_turns)
        capture = load_capture(data, downscale=args.downscale)
        print(f"capture: {data} {len(capture.train.cameras)} train / {len(capture.test.cameras)} test at "
              f"{capture.width}x{capture.height}")

        def config(field):
            cfg = preset(args.preset, field)
            cfg.threads = args.threads  # None: the jobs' default (see above)
            if args.iters:
                with_iters(cfg, args.iters)
            return cfg

        cfg = config(args.field)
        kind = cfg.deformation.kind
        procedural = args.data is None and not args.handheld
        kw = dict(device=device, keep=args.keep, progress=args.progress, backend=args.backend,
                  orbiter_turns=args.orbiter_turns)
        label = f"{kind}/{raster}" if args.compare_backend else kind
        dyn = run(capture, cfg, label, procedural, **kw)
        if args.compare_backend:
            other_be = resolve_backend(args.compare_backend, device)
            other = run(capture, config(args.field), f"{kind}/{other_be}", procedural,
                        **{**kw, "backend": args.compare_backend})
            print(f"{other_be} / {raster}: step time ratio {other['train_seconds'] / dyn['train_seconds']:.2f}x "
                  f"(train seconds {other['train_seconds']:.1f} / {dyn['train_seconds']:.1f}); "
                  f"PSNR {raster} - {other_be} = {dyn['psnr'] - other['psnr']:+.2f} dB", flush=True)
        if args.compare_field:
            other = run(capture, config(args.compare_field), args.compare_field, procedural, **kw)
            print(f"{kind} - {args.compare_field} = {dyn['psnr'] - other['psnr']:+.2f} dB; "
                  f"time ratio {dyn['train_seconds'] / other['train_seconds']:.2f}")
        if args.compare_static:
            st = run(capture, without_motion(config(args.field)), "static", **kw)
            print(f"{kind} - static = {dyn['psnr'] - st['psnr']:+.2f} dB")


if __name__ == "__main__":
    main()
