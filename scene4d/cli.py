"""The ``scene4d`` command.

    scene4d render SCENE --path orbit --frames 120 --size 640x480 --out orbit.mp4

SCENE is a 3DGS ``.ply`` file (static splats from scene4d, graphdeco's trainer, nerfstudio or
SuperSplat). Errors a user can fix are printed as one line naming the problem, exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, Optional

import tyro

from cameras import CameraError
from renderers import GaussianError, RenderError
from renderers.splat_io import SplatFileError

from .data import CaptureError
from .io import SceneFolderError
from .render import UsageError

USER_ERRORS = (UsageError, SplatFileError, CameraError, GaussianError, RenderError, FileNotFoundError,
               FileExistsError, CaptureError, SceneFolderError)


def _device(name: str):
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but no CUDA device is available; use --device cpu")
    return name


def load_scene(path: Path):
    """A scene folder (from reconstruct) or a static 3DGS .ply -> (scene, train cams, test cams)."""
    from renderers.splat_io import load_gaussians

    from .io import load_scene as load_folder
    from .render import StaticScene

    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix.lower() == ".ply":
        return StaticScene(load_gaussians(path)), None, None
    if path.is_dir():
        scene, _, cams = load_folder(path)
        scene.eval()
        return scene, cams.get("train"), cams.get("test")
    raise UsageError(f"{path}: not a scene; expected a scene folder or a 3DGS .ply file")


def render(
    scene: Path,
    /,
    path: str = "orbit",
    time: str = "play",
    frames: int = 120,
    fps: float = 30.0,
    size: str = "640x480",
    out: Optional[Path] = None,
    fov: float = 45.0,
    elevation: float = 20.0,
    radius: Optional[float] = None,
    up: str = "+z",
    background: str = "white",
    depth: bool = False,
    alpha: bool = False,
    png: bool = False,
    backend: Literal["auto", "torch", "gsplat"] = "auto",
    device: str = "auto",
) -> None:
    """Render novel views of a scene along a camera path into an mp4.

    Args:
        scene: a scene folder (from scene4d reconstruct) or a 3DGS .ply file.
        path: orbit, spiral, dolly (dolly-zoom), train, test, or a nerfstudio camera_path.json.
        time: play (0 -> 1 over the video), freeze:T, or bullet:T (play, freeze at T, play on).
        frames: number of frames for generated paths.
        fps: frames per second of the video.
        size: output size WIDTHxHEIGHT.
        out: output video (default: SCENE_STEM_PATH.mp4 next to the scene).
        fov: vertical field of view in degrees for generated paths.
        elevation: camera elevation above the horizon in degrees for generated paths.
        radius: camera distance from the scene centre (default: frames the whole scene).
        up: world up axis of the scene: +z, -z, +y, -y, +x, -x.
        background: white, black, grey or R,G,B in [0,1].
        depth: also write a colourised depth video (*_depth.mp4).
        alpha: also write an opacity video (*_alpha.mp4).
        png: also write every frame as PNG into a folder named after the video.
        backend: rasterizer: auto (gsplat on CUDA, else torch), torch or gsplat.
        device: auto, cpu or cuda.
    """
    from .render import make_path, parse_background, parse_size, render_video

    w, h = parse_size(size)
    bg = parse_background(background)
    if frames < 1:
        raise UsageError(f"--frames must be at least 1, got {frames}")
    if fps <= 0:
        raise UsageError(f"--fps must be positive, got {fps}")
    sc, train_cams, test_cams = load_scene(scene)
    try:
        cams = make_path(path, sc, frames=frames, size=(w, h), time=time, fov_deg=fov, elevation_deg=elevation,
                         radius=radius, up=up, train_cameras=train_cams, test_cameras=test_cams)
    except ValueError as e:  # path/schedule validators speak to the user already
        raise UsageError(str(e)) from None
    if out is None:
        stem = Path(path).stem if path.lower().endswith(".json") else path
        if Path(scene).is_dir():
            out = Path(scene) / "renders" / f"{stem}.mp4"
        else:
            out = Path(scene).parent / f"{Path(scene).stem}_{stem}.mp4"
    res = render_video(sc, cams, Path(out), fps=fps, background=bg, backend=backend, device=_device(device),
                       depth=depth, alpha=alpha, png=png)
    print(f"wrote {res.video} ({res.n_frames} frames, {w}x{h}, {res.seconds:.1f} s)")
    for extra in (res.depth_video, res.alpha_video, res.frames_dir):
        if extra is not None:
            print(f"wrote {extra}")


def reconstruct(
    data: Path,
    /,
    out: Path = Path("scene"),
    preset: Literal["fast", "dnerf", "quality"] = "fast",
    iters: Optional[int] = None,
    resume: bool = False,
    downscale: int = 1,
    background: Optional[str] = None,
    static: bool = False,
    deformation: Literal["hexplane", "mlp"] = "hexplane",
    seed: int = 0,
) -> None:
    """Fit a 4D scene to a calibrated dynamic capture (D-NeRF/Blender or nerfstudio transforms.json).

    Args:
        data: the capture folder (transforms_train.json + images, or transforms.json + images).
        out: the scene folder to write.
        preset: fast (CPU minutes), dnerf (the D-NeRF benchmark setting) or quality.
        iters: override the preset's number of steps.
        resume: continue the interrupted run in --out from its last checkpoint.
        downscale: load images downscaled by this integer factor.
        background: white, black or R,G,B (default: the format's, white for D-NeRF).
        static: disable the deformation (a static scene; a baseline).
        deformation: hexplane (space-time planes, default) or mlp (positional-encoding MLP).
        seed: random seed (view order, initial points).
    """
    from .data import load_capture
    from .deformation import MLPConfig
    from .reconstruct import preset as make_preset
    from .reconstruct import train
    from .render import parse_background

    cfg = make_preset(preset)
    if iters is not None:
        if iters < 1:
            raise UsageError(f"--iters must be at least 1, got {iters}")
        cfg.iters = iters
        cfg.warmup_iters = min(cfg.warmup_iters, iters // 5)
        cfg.densify.refine_stop = min(cfg.densify.refine_stop, int(iters * 0.75))
    if static:
        cfg.deformation = None
    elif deformation == "mlp":
        cfg.deformation = MLPConfig()
    cfg.seed = seed
    bg = parse_background(background) if background else None
    capture = load_capture(data, background=bg, downscale=downscale)
    print(f"capture {capture.source}: {len(capture.train.cameras)} train / {len(capture.test.cameras)} test views, "
          f"{capture.width}x{capture.height}, format {capture.format}")
    try:
        res = train(capture, out, cfg, resume=resume, provenance={"command": "scene4d reconstruct " + " ".join(sys.argv[2:])})
    except KeyboardInterrupt as e:
        print(f"scene4d reconstruct: {e}", file=sys.stderr)
        raise SystemExit(130)
    m = res.metrics
    print(f"scene written to {out} ({m.get('n_gaussians')} Gaussians, {res.seconds:.0f} s)")
    print(f"test PSNR {m.get('psnr')} dB, SSIM {m.get('ssim')}, flicker {m.get('flicker_static_camera')}"
          + (f", LPIPS {m['lpips']}" if m.get("lpips") is not None else f" ({m.get('lpips_note')})"))
    print(f"metrics: {out / 'metrics.json'}; test views beside ground truth: {out / 'renders' / 'test'}")


def demo(out: Path = Path("scene4d_demo"), iters: int = 2000, frames: int = 90) -> None:
    """Run the whole pipeline on the embedded procedural capture: make it, reconstruct, render an orbit.

    Args:
        out: folder for the capture, the scene and the video.
        iters: reconstruction steps.
        frames: frames of the orbit video (time plays while the camera orbits).
    """
    import shutil

    from .data import load_capture
    from .data.synthetic import make_dnerf_capture, scene_at
    from .reconstruct import preset as make_preset
    from .reconstruct import train
    from .render import make_path, render_video

    out = Path(out)
    data = out / "capture"
    if data.exists():
        shutil.rmtree(data)
    make_dnerf_capture(data, size=128)
    capture = load_capture(data)
    scene_dir = out / "scene"
    if scene_dir.exists():
        shutil.rmtree(scene_dir)
    cfg = make_preset("fast")
    cfg.iters = iters
    def truth(t, cam):
        from renderers import rasterize

        return rasterize(scene_at(t), cam, background=capture.background).rgb[0].clamp(0, 1)

    res = train(capture, scene_dir, cfg, reference_at=truth)
    cams = make_path("orbit", res.scene, frames=frames, size=(256, 256), time="play", elevation_deg=25.0)
    video = render_video(res.scene, cams, out / "orbit.mp4", background=capture.background).video
    m = res.metrics
    print(f"\ndemo: test PSNR {m['psnr']} dB, SSIM {m['ssim']}, static-camera flicker {m['flicker_static_camera']} "
          f"(truth {m['flicker_truth']}, render vs truth {m['flicker_vs_truth']}); {res.seconds:.0f} s of training")
    print(f"  scene:  {scene_dir}")
    print(f"  video:  {video}")
    print(f"  test views vs ground truth: {scene_dir / 'renders' / 'test'}")


COMMANDS = {"render": render, "reconstruct": reconstruct, "demo": demo}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        tyro.extras.subcommand_cli_from_dict(COMMANDS, args=argv, prog="scene4d",
                                             description="scene4d: build 4D Gaussian scenes and render video from them.")
    except USER_ERRORS as e:
        cmd = argv[0] if argv else ""
        print(f"scene4d {cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scene4d: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
