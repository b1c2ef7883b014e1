"""Novel-view paths of reconstructed handheld clips: coverage, sharpness and (with known geometry) PSNR.

    python bench/paths.py --threads 1 --scene /tmp/apple --scene /tmp/teddy --generated /tmp/gen
    python bench/paths.py --scene /tmp/teddy --strip assets/handheld_default_path.png

For each scene folder (made by `scene4d reconstruct clip.mp4`), in one run:

* renders at the input cameras (the capture's train + test views, up to --inputs of them, evenly
  over time, each at its own time): the reference;
* renders along the default path and the paths built from the input cameras (spiral, track, arc,
  smooth; --frames each) and, for contrast, the orbit around the scene's bounds that `render`
  used to default to;
* coverage = fraction of pixels with alpha >= 0.5; sharpness = variance of the Laplacian of the
  grey image (x 255); both averaged over frames and given as ratios to the input renders.

--generated DIR: a generated handheld clip with known geometry (scene4d.data.handheld, the clip of
`bench/reconstruct.py --handheld`: 60 frames, 320x240, seed 1). Made and reconstructed with
`scene4d reconstruct` into DIR/scene on the first run (minutes), reused after. Its scene is
aligned to the true world by the similarity that best maps the input camera centres onto the
true ones (Umeyama) and the mean rotation offset; then PSNR against the true image is measured at
every path camera that lies in the region the input cameras saw (cameras.seen_region), beside
the same PSNR at the held-out test cameras, the scene's own held-out PSNR (metrics.json, against
the video frames), the test frames' own PSNR against the truth (the ceiling), the test cameras
showing the scene 0.3 of the clip later, and two variants of the spiral (--extrapolate 0.5,
--time freeze:0.5).

--strip PNG writes a frame strip: input frames (top) above the default path's frames (bottom), for
the README.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cameras import Cameras  # noqa: E402
from renderers import rasterize  # noqa: E402

GEN = dict(size=(320, 240), n_frames=60, dynamic_fraction=0.1, seed=1)
"""The generated clip: as bench/reconstruct.py --handheld."""
PATHS = ("default", "spiral", "track", "arc", "smooth", "orbit")
COVER_ALPHA = 0.5


def laplacian_variance(rgb: torch.Tensor) -> float:
    """Variance of the 3x3 Laplacian of the grey image (H, W, 3) in [0, 1], in 8-bit units."""
    g = (rgb.clamp(0, 1) @ torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype)) * 255.0
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=rgb.dtype)
    lap = torch.nn.functional.conv2d(g[None, None], k[None, None])[0, 0]
    return float(lap.var())


@torch.no_grad()
def render_all(scene, cams: Cameras, background):
    """[(rgb (H, W, 3), alpha (H, W))] of every camera at its own time."""
    out = []
    bg = torch.as_tensor(background, dtype=torch.float32)
    for i in range(len(cams)):
        cam = cams[i].to(dtype=torch.float32)
        o = rasterize(scene.at(float(cam.times[0])), cam, background=bg, check=False)
        out.append((o.rgb[0].clamp(0, 1).cpu(), o.alpha[0, ..., 0].cpu()))
    return out


def stats(renders):
    cov = [float((a >= COVER_ALPHA).float().mean()) for _, a in renders]
    sharp = [laplacian_variance(rgb) for rgb, _ in renders]
    return float(np.mean(cov)), float(np.min(cov)), float(np.mean(sharp))


def evenly(cams: Cameras, n: int) -> Cameras:
    if len(cams) <= n:
        return cams
    idx = torch.linspace(0, len(cams) - 1, n).round().long()
    return cams[idx]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))


# ------------------------------------------------------------------------ known geometry
def alignment(scene_w2c: np.ndarray, truth_w2c: np.ndarray):
    """(s, G, t): x_true = s G x_scene + t, G also the rotation offset (w2c_true = w2c_scene G^T);
    G is the chordal mean of the per-camera rotation offsets, s and t fit the centres."""
    from scene4d.data.handheld import pose_errors

    Re, Rt = scene_w2c[:, :3, :3], truth_w2c[:, :3, :3]
    ce = -np.einsum("nji,nj->ni", Re, scene_w2c[:, :3, 3])
    ct = -np.einsum("nji,nj->ni", Rt, truth_w2c[:, :3, 3])
    U, _, Vt = np.linalg.svd(np.einsum("nji,njk->ik", Rt, Re))
    G = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt)) or 1.0]) @ Vt
    x = ce @ G.T
    xm, cm = x.mean(0), ct.mean(0)
    s = float(((x - xm) * (ct - cm)).sum() / max(((x - xm) ** 2).sum(), 1e-300))
    t = cm - s * xm
    return s, G, t, pose_errors(scene_w2c, truth_w2c)


def to_truth(w2c: np.ndarray, s: float, G: np.ndarray, t: np.ndarray) -> np.ndarray:
    R = w2c[:3, :3]
    c = -R.T @ w2c[:3, 3]
    R2 = R @ G.T
    c2 = s * G @ c + t
    out = np.eye(4)
    out[:3, :3] = R2
    out[:3, 3] = -R2 @ c2
    return out


def make_generated(folder: Path, threads: int) -> Path:
    """The generated clip reconstructed into folder/scene (skipped when it exists)."""
    scene = folder / "scene"
    if (scene / "scene.json").is_file():
        return scene
    from scene4d.cli import main as cli
    from scene4d.data.handheld import make_handheld_clip

    folder.mkdir(parents=True, exist_ok=True)
    clip = folder / "clip.mp4"
    t0 = time.perf_counter()
    make_handheld_clip(clip, **GEN)
    (folder / "clip.json").write_text(json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in GEN.items()}))
    rc = cli(["reconstruct", str(clip), "--out", str(scene), "--threads", str(threads),
              "--max-frames", str(GEN["n_frames"]), "--size", str(GEN["size"][0])])
    if rc != 0:
        raise SystemExit(f"reconstruct of the generated clip failed ({rc})")
    print(f"generated clip made and reconstructed in {time.perf_counter() - t0:.0f} s")
    return scene


# ------------------------------------------------------------------------ one scene
def bench_scene(folder: Path, args, truth_render=None, truth_w2c=None):
    from scene4d.cli import load_scene
    from scene4d.paths import input_cameras, plan_path

    t0 = time.perf_counter()
    scene, train, test = load_scene(folder)
    meta = json.loads((folder / "scene.json").read_text())
    bg = meta.get("background", [0.0, 0.0, 0.0])
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    inputs = input_cameras(train, test)
    ref_cams = evenly(inputs.to(dtype=torch.float32), args.inputs)
    ref = render_all(scene, ref_cams, bg)
    ref_cov, ref_min, ref_sharp = stats(ref)
    print(f"\n== {folder}  ({len(inputs)} input cameras, {inputs.width}x{inputs.height}, "
          f"held-out PSNR {metrics.get('psnr')} dB)")
    plans = {}
    for name in PATHS:
        plans[name] = plan_path(None if name == "default" else name, scene, train_cameras=train, test_cameras=test,
                                frames=args.frames if name != "smooth" else None)
    rig = plans["default"].rig
    print(f"   {rig.describe()}")
    print(f"   default: {plans['default'].note.splitlines()[0]}")
    print(f"   {'path':<18} {'frames':>6} {'coverage':>9} {'(min)':>6} {'cov/in':>7} {'sharp':>8} {'sharp/in':>8} "
          f"{'outside':>8}")
    print(f"   {'input cameras':<18} {len(ref_cams):>6} {ref_cov:>9.4f} {ref_min:>6.3f} {1:>7.3f} {ref_sharp:>8.1f} "
          f"{1:>8.3f} {'':>8}")
    rows, renders = {}, {}
    for name, plan in plans.items():
        if name != "default" and plans["default"].name == name:
            rows[name] = rows["default"]  # the same cameras
            renders[name] = renders["default"]
            label = f"{name} (= default)"
        else:
            cams = plan.cameras
            if name == "smooth":
                cams = evenly(cams, args.frames)
            renders[name] = (cams, render_all(scene, cams, bg))
            from cameras import seen_region

            out = seen_region(rig, cams).n_outside
            cov, cmin, sharp = stats(renders[name][1])
            rows[name] = dict(frames=len(cams), coverage=cov, coverage_min=cmin, coverage_ratio=cov / ref_cov,
                              sharpness=sharp, sharpness_ratio=sharp / ref_sharp, outside=out)
            label = f"{name} ({plan.name})" if name == "default" else name
        r = rows[name]
        print(f"   {label:<18} {r['frames']:>6} {r['coverage']:>9.4f} {r['coverage_min']:>6.3f} "
              f"{r['coverage_ratio']:>7.3f} {r['sharpness']:>8.1f} {r['sharpness_ratio']:>8.3f} {r['outside']:>8}")
    result = dict(scene=str(folder), inputs=len(inputs), reference=dict(frames=len(ref_cams), coverage=ref_cov,
                  sharpness=ref_sharp), paths=rows, held_out_psnr=metrics.get("psnr"))
    if truth_render is not None:
        result["truth"] = truth_psnr(folder, scene, inputs, test, renders, plans, rig, truth_render, truth_w2c, bg,
                                     metrics)
    result["seconds"] = time.perf_counter() - t0
    print(f"   ({result['seconds']:.0f} s)")
    return result, renders, ref_cams, ref


def truth_psnr(folder, scene, inputs, test, renders, plans, rig, truth_render, truth_w2c, bg, metrics):
    from cameras import seen_region

    times_true = np.linspace(0.0, 1.0, len(truth_w2c))
    idx = np.array([int(np.argmin(np.abs(times_true - float(t)))) for t in inputs.times])
    s, G, t, err = alignment(inputs.world_to_camera.numpy(), truth_w2c[idx])
    print(f"   alignment to the true world: scale {s:.4f}, pose error {err['rms']:.2%} of the path (rms), "
          f"rotation {err['rot_mean']:.2f} deg mean")

    def measure(cams, rends):
        vals = []
        for i in range(len(cams)):
            w2c = to_truth(cams.world_to_camera[i].double().numpy(), s, G, t)
            true = truth_render(w2c, cams.K[i].double().numpy(), cams.width, cams.height, float(cams.times[i]))
            vals.append(psnr(rends[i][0].numpy(), true))
        return vals

    test_cams = test.to(dtype=torch.float32)
    test_psnr = float(np.mean(measure(test_cams, render_all(scene, test_cams, bg))))
    held = metrics.get("psnr")
    out = dict(alignment_rms=err["rms"], test_cameras_psnr=test_psnr, held_out_psnr=held, paths={})
    # the same cameras showing another moment: what a path that is not where the input was at that
    # moment costs (a monocular clip shows each moment from one place)
    shifted = Cameras(test_cams.K, test_cams.world_to_camera, test_cams.width, test_cams.height,
                      (test_cams.times + 0.3) % 1.0)
    shifted_psnr = float(np.mean(measure(shifted, render_all(scene, shifted, bg))))
    out["test_cameras_time_shifted_psnr"] = shifted_psnr
    # the ceiling of any PSNR against the truth: the video frames a scene is fitted to (H.264, then
    # undistorted by the camera step) against the truth at the same cameras
    ceiling = float(np.mean(measure(test_cams, [(img, None) for img in capture_of(folder).test.images])))
    out["frames_vs_truth_psnr"] = ceiling
    print(f"   the test frames themselves against the truth: {ceiling:.2f} dB")
    print(f"   PSNR vs ground truth: test cameras {test_psnr:.2f} dB (held-out PSNR vs the frames {held} dB); "
          f"the same cameras 0.3 of the clip later {shifted_psnr:.2f} dB; paths, frames inside the region the "
          "inputs saw:")
    variants = {
        "spiral --extrapolate 0.5": dict(path="spiral", extrapolate=0.5),
        "spiral --time freeze:0.5": dict(path="spiral", time="freeze:0.5"),
    }
    from scene4d.paths import plan_path

    for label, kw in variants.items():
        cams = plan_path(kw.pop("path"), scene, train_cameras=inputs, frames=len(renders["default"][0]), **kw).cameras
        renders[label] = (cams, render_all(scene, cams, bg))
    for name in ("default", "spiral", "track", "arc", "smooth", *variants):
        if name != "default" and plans["default"].name == name:
            out["paths"][name] = out["paths"]["default"]
            continue
        cams, rends = renders[name]
        inside = seen_region(rig, cams).inside
        keep = [i for i in range(len(cams)) if bool(inside[i])]
        if not keep:
            out["paths"][name] = None
            print(f"   {name:<26} no camera within the input region")
            continue
        vals = measure(cams[torch.tensor(keep)], [rends[i] for i in keep])
        p = float(np.mean(vals))
        out["paths"][name] = dict(psnr=p, n=len(keep), of=len(cams), gap_held_out=(held - p) if held else None,
                                  gap_test_cameras=test_psnr - p)
        print(f"   {name:<26} {p:6.2f} dB at {len(keep):>2}/{len(cams)} cameras inside the input region; gap to the "
              f"held-out PSNR {held - p if held else float('nan'):+.2f} dB, to the test cameras vs truth "
              f"{test_psnr - p:+.2f} dB")
    return out


def capture_of(folder: Path):
    """The capture a reconstructed scene was fitted to (its scene.json names it)."""
    from scene4d.data import load_capture

    return load_capture(json.loads((folder / "scene.json").read_text())["provenance"]["source"])


def input_frames(folder: Path, n: int):
    """n input frames of the capture the scene was fitted to, evenly over time, as (H, W, 3) in [0, 1]."""
    cap = capture_of(folder)
    images = torch.cat([cap.train.images, cap.test.images])
    order = torch.argsort(torch.cat([cap.train.cameras.times, cap.test.cameras.times]), stable=True)
    idx = order[torch.linspace(0, len(order) - 1, n).round().long()]
    return [images[i] for i in idx]


def write_strip(path: Path, folder: Path, renders, n: int = 5, scale: float = 0.5):
    """Input frames (top row) above frames of the default path (bottom row), evenly spaced."""
    from PIL import Image

    top = input_frames(folder, n)
    _, rends = renders["default"]
    bottom = [rends[i][0] for i in np.linspace(0, len(rends) - 1, n).round().astype(int)]
    rows = [torch.cat(r, dim=1) for r in (top, bottom)]
    gap = torch.ones(4, rows[0].shape[1], 3)
    img = (torch.cat([rows[0], gap, rows[1]], 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    im = Image.fromarray(img)
    im = im.resize((int(im.width * scale), int(im.height * scale)), Image.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB): input frames (top), default path (bottom)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", type=Path, action="append", default=[], help="a reconstructed handheld scene folder")
    ap.add_argument("--generated", type=Path, default=None, help="folder for the generated clip with known geometry")
    ap.add_argument("--frames", type=int, default=24, help="frames rendered per path")
    ap.add_argument("--inputs", type=int, default=16, help="input cameras rendered as the reference")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--strip", type=Path, default=None, help="write a frame strip of the first --scene")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"cpu={platform.processor() or platform.machine()} threads={torch.get_num_threads()} torch={torch.__version__}")
    t0 = time.perf_counter()
    results = []
    for i, folder in enumerate(args.scene):
        res, renders, ref_cams, ref = bench_scene(folder, args)
        results.append(res)
        if i == 0 and args.strip:
            write_strip(args.strip, folder, renders)
    if args.generated:
        from scene4d.data.handheld import handheld_truth_renderer

        folder = make_generated(args.generated, args.threads or torch.get_num_threads())
        truth, w2c_true = handheld_truth_renderer(**GEN)
        res, *_ = bench_scene(folder, args, truth_render=truth, truth_w2c=w2c_true)
        results.append(res)
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
