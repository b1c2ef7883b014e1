"""The ``scene4d`` command.

    scene4d demo
    scene4d reconstruct DATA --out scene/        # D-NeRF / nerfstudio capture, a video, images, COLMAP
    scene4d poses clip.mp4 --out poses/          # only the camera step of a handheld clip
    scene4d render SCENE --path orbit --frames 120 --size 640x480 --out orbit.mp4
    scene4d presets [NAME]                       # reconstruction presets (configs/), one in full

SCENE is a scene folder or a 3DGS ``.ply`` file (static splats from scene4d, graphdeco's trainer,
nerfstudio or SuperSplat). Errors a user can fix are printed as one line naming the problem, exit
code 2.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Literal, Optional

import tyro

from cameras import CameraError
from renderers import GaussianError, RenderError
from renderers.splat_io import SplatFileError

from .data import CaptureError
from .export.cli import export_scene, import_file
from .formats import FormatError
from .io import SceneFolderError
from .presets import PresetError
from .render import UsageError

OUT_VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".mov")  # what write_video encodes (H.264)

from diffusion_prior.base import PriorError

from .generate.errors import GenerateError, PriorSpecError
from .train import CheckpointError, FitDiverged

USER_ERRORS = (GenerateError, PriorSpecError, PriorError, UsageError, SplatFileError, CameraError, GaussianError, RenderError, FileNotFoundError,
               FileExistsError, CaptureError, SceneFolderError, PresetError, FormatError, CheckpointError, FitDiverged)


def _at_least(flag: str, value, least: int, what: str = "") -> None:
    """A count flag below its minimum is a usage error naming the flag (``None``: not given)."""
    if value is not None and value < least:
        raise UsageError(f"{flag} must be at least {least}{what}, got {value}")


def _device(name: str):
    import torch

    from renderers import default_device

    if name == "auto":
        return default_device().type
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
    path: Optional[str] = None,
    time: Optional[str] = None,
    frames: Optional[int] = None,
    fps: Optional[float] = None,
    size: Optional[str] = None,
    out: Optional[Path] = None,
    fov: Optional[float] = None,
    elevation: float = 20.0,
    radius: Optional[float] = None,
    up: Optional[str] = None,
    extrapolate: Optional[float] = None,
    write_path: Optional[Path] = None,
    background: str = "white",
    depth: bool = False,
    alpha: bool = False,
    png: bool = False,
    backend: Literal["auto", "torch", "numba", "gsplat"] = "auto",
    device: str = "auto",
    threads: Optional[int] = None,
) -> None:
    """Render novel views of a scene along a camera path into an mp4.

    Args:
        scene: a scene folder (from scene4d reconstruct) or a 3DGS .ply file.
        path: the camera path (default: an orbit for a 360 capture or a scene without input
            cameras, track for a forward-facing capture such as a phone clip; the choice is
            printed). Built from the input cameras: spiral (a forward-facing capture's: around the
            mean input camera within their spread, looking at the focus point), track (a spiral
            around the stabilised input trajectory at each frame's time: each moment seen from near
            where the camera saw it), smooth (the input trajectory stabilised, same timing), arc (bullet time: a sweep around the focus point
            over the captured angles, a bit beyond; time frozen at 0.5 unless --time says). Around
            the scene's bounds: orbit, dolly (dolly-zoom; a forward-facing capture's runs back from
            the mean input camera), spiral (of a .ply or a 360 capture). Or train, test (the input
            cameras), or a nerfstudio camera_path.json.
        time: play (0 -> 1 over the video), freeze:T, or bullet:T (play, freeze at T, play on);
            default play (arc: freeze:0.5; smooth, train, test and camera path files keep their
            own times).
        frames: number of frames for generated paths (default 120; smooth: one per input frame);
            a camera path file sets its own: its cameras, or its keyframes' seconds x fps.
        fps: frames per second of the video (default: a camera path file's fps, else 30); a
            keyframed camera path is sampled at this rate, keeping its duration.
        size: output size WIDTHxHEIGHT (default: a camera path file's render size, the input
            cameras' size for paths built from them and for train/test, else 640x480). Another
            aspect ratio keeps the vertical field of view.
        out: output video, .mp4 (default: SCENE/renders/PATH.mp4 for a scene folder,
            SCENE_PATH.mp4 beside a .ply file).
        fov: vertical field of view in degrees for generated paths (default: the input cameras'
            for paths built from them, else 45).
        elevation: camera elevation above the horizon in degrees for orbit, and for dolly and
            spiral around the scene's bounds.
        radius: camera distance from the scene centre for those (default: frames the whole scene).
        up: world up axis of the scene: +z, -z, +y, -y, +x, -x (default: the input cameras' mean
            up, snapped to an axis within 15 degrees; else scene.json's; else +z).
        extrapolate: how far spiral, track, arc and dolly go beyond the input cameras, as a
            multiple of their spread (default 1: as far as they went; 2 twice as far; track stays
            inside the region the inputs saw up to 1). A warning says when any path leaves the
            region the input cameras saw.
        write_path: also save the path as a nerfstudio camera_path.json (to edit, then render with
            --path FILE); with it, the video is rendered only when --out is given.
        background: white, black, grey or R,G,B in [0,1].
        depth: also write a colourised depth video (*_depth.mp4).
        alpha: also write an opacity video (*_alpha.mp4).
        png: also write every frame as PNG into a folder named after the video.
        backend: rasterizer: auto (gsplat on CUDA, the compiled numba kernels on the CPU, else torch), torch, numba or gsplat.
        device: auto, cpu or cuda.
        threads: CPU threads (default: torch's, all cores); 1 when other jobs share a small machine.
    """
    from .render import parse_background, parse_size, render_video

    wh = parse_size(size) if size is not None else None
    bg = parse_background(background)
    _at_least("--frames", frames, 1)
    _at_least("--threads", threads, 1)
    from cameras.limits import LimitError, MAX_FRAMES, check_fps

    try:
        if fps is not None:
            check_fps(fps)
    except LimitError as e:
        raise UsageError(str(e)) from None
    if frames is not None and frames > MAX_FRAMES:
        raise UsageError(f"--frames must be at most {MAX_FRAMES}, got {frames}")
    if fov is not None and not 0 < fov < 180:
        raise UsageError(f"--fov must be a vertical field of view in degrees in (0, 180), got {fov}")
    if out is not None and Path(out).suffix.lower() not in OUT_VIDEO_SUFFIXES:
        raise UsageError(f"--out {out}: scene4d writes H.264 video; give a file ending in .mp4 "
                         f"(or {', '.join(OUT_VIDEO_SUFFIXES[1:])}); --png also writes every frame as PNG")
    if write_path is not None and Path(write_path).suffix.lower() != ".json":
        raise UsageError(f"--write-path {write_path}: a camera path is a .json file (nerfstudio's camera_path.json)")
    from renderers import configure_cpu_threads

    configure_cpu_threads(threads)
    sc, train_cams, test_cams = load_scene(scene)
    from .paths import plan_path

    try:
        plan = plan_path(path, sc, frames=frames, size=wh, time=time, fov_deg=fov, elevation_deg=elevation,
                         radius=radius, up=up, scene_up=_scene_up(scene), train_cameras=train_cams,
                         test_cameras=test_cams, fps=fps, extrapolate=extrapolate)
    except ValueError as e:  # path/schedule validators speak to the user already
        raise UsageError(str(e)) from None
    cams = plan.cameras
    if plan.note:
        print(plan.note)
    if plan.warning:
        print(f"scene4d render: warning: {plan.warning}", file=sys.stderr)
    is_file = path is not None and path.lower().endswith(".json")
    if fps is None:
        fps = 30.0
        if is_file:
            import json

            file_fps = json.loads(Path(path).read_text()).get("fps")  # read_camera_path has checked the file
            if isinstance(file_fps, (int, float)) and file_fps > 0:
                fps = float(file_fps)
    if write_path is not None:
        from cameras import write_camera_path

        try:
            write_camera_path(write_path, cams, fps=fps)
        except OSError as e:
            raise UsageError(f"--write-path {write_path}: cannot write it ({e.strerror or e})") from None
        print(f"wrote {write_path} ({len(cams)} cameras, {cams.width}x{cams.height}, {len(cams) / fps:.1f} s at "
              f"{fps:g} fps); edit it, then: scene4d render {scene} --path {write_path}")
        if out is None:
            return
    w, h = cams.width, cams.height
    if out is None:
        stem = Path(path).stem if is_file else plan.name
        if Path(scene).is_dir():
            out = Path(scene) / "renders" / f"{stem}.mp4"
        else:
            out = Path(scene).parent / f"{Path(scene).stem}_{stem}.mp4"
    res = render_video(sc, cams, Path(out), fps=fps, background=bg, backend=backend, device=_device(device),
                       depth=depth, alpha=alpha, png=png)
    size_note = f"{w}x{h}" if w % 2 == 0 and h % 2 == 0 else \
        f"{w + w % 2}x{h + h % 2}: {w}x{h} padded to even for H.264"
    print(f"wrote {res.video} ({res.n_frames} frames, {size_note}, {res.n_frames / fps:.1f} s at {fps:g} fps; "
          f"rendered in {res.seconds:.1f} s)")
    for extra in (res.depth_video, res.alpha_video, res.frames_dir):
        if extra is not None:
            print(f"wrote {extra}")


def _scene_up(scene: Path) -> Optional[str]:
    """The ``up`` a scene folder's scene.json records (load_scene has checked the file), else None."""
    p = Path(scene) / "scene.json"
    if not p.is_file():
        return None
    from cameras.limits import read_json

    try:
        up = read_json(p, "scene.json", max_bytes=8 << 20).get("up")
    except (ValueError, AttributeError):
        return None
    return up if isinstance(up, str) else None


VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".gif")


def _needs_poses(data: Path) -> bool:
    """True for a video, an image folder or a COLMAP model: inputs without calibrated transforms."""
    if data.is_file():
        return data.suffix.lower() in VIDEO_SUFFIXES
    if data.is_dir():
        if (data / "transforms.json").is_file() or (data / "transforms_train.json").is_file():
            return False
        from .frames import list_images
        from .sfm import is_colmap_folder

        return is_colmap_folder(data) or bool(list_images(data))
    return False


def poses(
    video: Path,
    /,
    out: Path = Path("poses"),
    max_frames: int = 80,
    fps: Optional[float] = None,
    size: int = 640,
    masks: Optional[Path] = None,
    overlap: int = 10,
    camera_model: Literal["SIMPLE_RADIAL", "PINHOLE", "SIMPLE_PINHOLE", "RADIAL", "OPENCV"] = "SIMPLE_RADIAL",
    dynamic_pass: bool = True,
    min_registered: float = 1.0,
    vocab_tree: Optional[Path] = None,
    threads: Optional[int] = None,
    seed: int = 0,
    verbose: bool = False,
) -> None:
    """Camera poses of a handheld clip (pycolmap): writes a nerfstudio transforms.json with times.

    Args:
        video: a video file, a folder of images, or a COLMAP folder (sparse/0 + images/).
        out: output folder: transforms.json, images/ (undistorted), sparse_points.ply, poses.json.
        max_frames: frames to keep, evenly spaced over the clip (sharpest near each target).
        fps: keep this many frames per second instead (thinned to max_frames).
        size: working size: long side in pixels (frames are never enlarged).
        masks: folder of per-frame masks, nonzero = static (use), zero = moving (ignore).
        overlap: each frame is matched with this many following frames.
        camera_model: SIMPLE_RADIAL for phone footage (undistorted after), PINHOLE if already undistorted.
        dynamic_pass: find moving objects after a first mapping and re-map without their matches.
        min_registered: fraction of kept frames that must end up in one model (else an error says why).
        vocab_tree: a local COLMAP vocabulary tree file to enable loop detection (nothing is downloaded).
        threads: CPU threads for pycolmap (default: all). With 1 the result repeats exactly
            (pycolmap's multi-threaded matching and mapping vary with thread timing).
        seed: random seed of RANSAC and mapping.
        verbose: show pycolmap's own log.
    """
    from .sfm import poses_command

    if not Path(video).exists():
        raise UsageError(f"{video}: no such video, image folder or COLMAP folder")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    poses_command(video, out, max_frames=max_frames, fps=fps, size=size, masks=masks, overlap=overlap,
                  camera_model=camera_model, dynamic_pass=dynamic_pass, min_registered=min_registered,
                  loop_detection=vocab_tree is not None, vocab_tree=vocab_tree, verbose=verbose,
                  num_threads=threads or -1, seed=seed)


def reconstruct(
    data: Path,
    /,
    out: Path = Path("scene"),
    preset: Optional[str] = None,
    iters: Optional[int] = None,
    resume: bool = False,
    downscale: int = 1,
    background: Optional[str] = None,
    static: bool = False,
    deformation: Optional[Literal["hexplane", "mlp", "nodes"]] = None,
    seed: Optional[int] = None,
    max_frames: int = 80,
    size: int = 320,
    masks: Optional[Path] = None,
    threads: Optional[int] = None,
    device: str = "auto",
    allow_outside: bool = False,
    view: bool = False,
    view_every: int = 100,
    port: int = 8080,
    host: str = "127.0.0.1",
) -> None:
    """Fit a 4D scene to a dynamic capture: calibrated (D-NeRF/Blender, nerfstudio) or a handheld clip.

    Args:
        data: a capture folder (transforms_train.json or transforms.json + images), a video file, a
            folder of images, or a COLMAP folder; the last three get camera poses first (as scene4d
            poses, written to OUT/poses).
        out: the scene folder to write.
        preset: a preset in configs/ — fast (CPU minutes; the default for captures), dnerf-cpu
            (D-NeRF-class captures at ~100x100 on a CPU, a few minutes), dnerf (the D-NeRF
            benchmark setting, GPU), quality, handheld (the default for videos, image folders
            and COLMAP folders) — or a preset file (my.json; `scene4d presets NAME` prints one
            to start from).
        iters: override the preset's number of steps.
        resume: continue the interrupted run in --out from its last checkpoint.
        downscale: load images downscaled by this integer factor.
        background: white, black or R,G,B (default: the format's, white for D-NeRF).
        static: disable the deformation (a static scene; a baseline).
        deformation: the deformation field (default: the preset's): nodes (rigid motion nodes,
            fast's: things that move rigidly stay sharp), hexplane (space-time planes, the other
            presets': free-form motion) or mlp (positional-encoding MLP).
        seed: random seed (view order, initial points, the camera step; default: the preset's, 0).
        max_frames: for a video / image folder: frames to keep.
        size: for a video / image folder: working size (long side, pixels).
        masks: for a video / image folder: per-frame masks of moving things (zero = ignore in poses).
        threads: CPU threads for training and for the camera step. Default: torch's ops on one
            thread and the compiled rasterizer on every core, which stays fast beside a busy
            process (torch's own default spin-waits and slowed 2-14x there); N: N threads for
            both. With 1 the camera step is also repeatable (pycolmap's multi-threaded matching
            and mapping are not, even with a seed).
        device: auto (CUDA when available, with gsplat's rasterizer if installed), cpu or cuda.
        allow_outside: read images a capture's file_path places outside its folder ('../', absolute
            paths, links); refused by default, since a capture from elsewhere could name any file.
        view: serve the scene being fitted in the browser (as scene4d view), refreshed every
            --view-every steps.
        view_every: steps between the viewer's refreshes.
        port: the viewer's port (with --view).
        host: the viewer's address (with --view): 127.0.0.1, only this machine, unless you say.
    """
    from .data import load_capture
    from .reconstruct import preset as make_preset
    from .reconstruct import existing_run, resume_conflict, train, with_iters, without_motion
    from .render import parse_background

    data = given = Path(data)
    if not data.exists():
        raise UsageError(f"{data}: no such capture folder, video or image folder")
    # flags first: a typo should not cost the minutes of the camera step before it is reported
    _at_least("--iters", iters, 1)
    _at_least("--threads", threads, 1)
    _at_least("--view-every", view_every, 1)
    if view:  # before the camera step and the training: a taken port is said at once
        from .view import ViewerError, check_port

        try:
            check_port(host, port)
        except ViewerError as e:
            raise UsageError(str(e)) from None
    from cameras.limits import MAX_FRAMES, MAX_IMAGE_SIDE

    if not 16 <= size <= MAX_IMAGE_SIDE:
        raise UsageError(f"--size must be 16..{MAX_IMAGE_SIDE} pixels (the long side), got {size}")
    if not 2 <= max_frames <= MAX_FRAMES:
        raise UsageError(f"--max-frames must be 2..{MAX_FRAMES}, got {max_frames}")
    if iters is not None and iters > 10_000_000:
        raise UsageError(f"--iters {iters} is more steps than any preset needs (at most 10000000)")
    dev = _device(device)
    out = Path(out)
    video_input = _needs_poses(data)
    if preset is None:
        preset = "handheld" if video_input else "fast"
    cfg = make_preset(preset, deformation)  # a bad preset file is reported before the camera step
    if video_input:
        if not resume and (why := existing_run(out)):
            raise FileExistsError(why)
        pose_dir = out / "poses"
        if resume and (conflict := resume_conflict(out, pose_dir, shown=f"the video {data}")):
            raise UsageError(conflict)  # before the camera step's minutes
        if resume and (pose_dir / "transforms.json").is_file():
            print(f"reusing camera poses in {pose_dir}")
        else:
            from .sfm import poses_command
            from .train import OutputLock

            try:
                # the camera step writes OUT/poses: a second run into OUT stops here, not after it
                with OutputLock(out):
                    poses_command(data, pose_dir, max_frames=max_frames, size=size, masks=masks,
                                  num_threads=threads or -1, seed=cfg.seed if seed is None else seed)
            except KeyboardInterrupt:
                print(f"scene4d reconstruct: stopped during the camera step (no camera poses yet, so nothing to "
                      f"keep); run the same command again to start over: scene4d reconstruct {given} --out {out}"
                      + (" --resume" if resume else ""), file=sys.stderr)
                raise SystemExit(130)
        data = pose_dir
        # the camera step may be all an interrupted run finished: then training starts afresh
        resume = resume and (out / "checkpoints" / "latest.json").is_file()
    if iters is not None:
        with_iters(cfg, iters)
    if static:
        without_motion(cfg)
    if seed is not None:
        cfg.seed = seed
    if threads is not None:
        cfg.threads = threads
    bg = parse_background(background) if background else None
    capture = load_capture(data, background=bg, downscale=downscale, allow_outside=allow_outside)
    print(f"capture {capture.source}: {len(capture.train.cameras)} train / {len(capture.test.cameras)} test views, "
          f"{capture.width}x{capture.height}, format {capture.format}"
          + (f", {capture.points.shape[0]} sparse points" if capture.points is not None else ""))
    for line in capture.warnings():
        print(f"scene4d reconstruct: warning: {line}", file=sys.stderr)
    watch = None
    if view:
        from .view import LiveView, ViewerError

        try:
            watch = LiveView(view_every, host=host, port=port, train_cameras=capture.train.cameras,
                             test_cameras=capture.test.cameras, background=capture.background, total=cfg.iters)
        except (ViewerError, ValueError) as e:
            raise UsageError(str(e)) from None
    try:
        res = train(capture, out, cfg, resume=resume, device=dev, watch=watch,
                    provenance={"command": "scene4d reconstruct " + " ".join(sys.argv[2:])})
    except KeyboardInterrupt as e:
        print(f"scene4d reconstruct: {str(e).replace('reconstruct DATA --out', f'reconstruct {given} --out')}",
              file=sys.stderr)
        raise SystemExit(130)
    except CheckpointError as e:  # the resume hint names the input as given, not the placeholder
        raise CheckpointError(str(e).replace("reconstruct DATA --out", f"reconstruct {given} --out")) from None
    finally:
        if watch is not None:
            watch.close()
    m = res.metrics
    print(f"scene written to {out} ({m.get('n_gaussians')} Gaussians, {res.seconds:.0f} s)")
    which = "test" if m.get("held_out", True) else \
        "training-view (the capture has a single view, so nothing is held out: this measures fit, not novel views)"
    print(f"{which} PSNR {m.get('psnr')} dB, SSIM {m.get('ssim')}, flicker {m.get('flicker_static_camera')}"
          + (f", LPIPS {m['lpips']}" if m.get("lpips") is not None else f" ({m.get('lpips_note')})"))
    print(f"metrics: {out / 'metrics.json'}; test views beside ground truth: {out / 'renders' / 'test'}")


def demo(out: Path = Path("scene4d_demo"), iters: Optional[int] = None, frames: int = 90) -> None:
    """Run the whole pipeline on the embedded procedural capture: make it, reconstruct, render an orbit.

    Args:
        out: folder for the capture, the scene and the video.
        iters: reconstruction steps (default: the fast preset's).
        frames: frames of the orbit video (time plays while the camera orbits).
    """
    import shutil

    from cameras import intrinsics_from_fov
    from cameras.paths import orbit

    from .data import load_capture
    from .data.synthetic import CAMERA_RADIUS, FOV_DEG, make_dnerf_capture, scene_at
    from .reconstruct import preset as make_preset
    from .reconstruct import train, with_iters
    from .render import render_video

    _at_least("--iters", iters, 1)
    _at_least("--frames", frames, 2, " (a video)")
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
    if iters is not None:
        with_iters(cfg, iters)  # the warm-up and densification stay inside a shortened run

    def truth(t, cam):
        from renderers import rasterize

        return rasterize(scene_at(t), cam, background=capture.background).rgb[0].clamp(0, 1)

    res = train(capture, scene_dir, cfg, reference_at=truth)
    # the capture's own camera distance and field of view; the camera turns against the orbiting
    # ball (a co-rotating camera would keep it in the same place in every frame)
    cams = orbit((0.0, 0.0, 0.0), CAMERA_RADIUS, 30.0, frames, K=intrinsics_from_fov(math.radians(FOV_DEG), 256, 256),
                 width=256, height=256, degrees=-360.0, time="play")
    video = render_video(res.scene, cams, out / "orbit.mp4", background=capture.background,
                         device=res.scene.device).video
    m = res.metrics
    print(f"\ndemo: test PSNR {m['psnr']} dB, SSIM {m['ssim']}, static-camera flicker {m['flicker_static_camera']} "
          f"(truth {m['flicker_truth']}, render vs truth {m['flicker_vs_truth']}); {res.seconds:.0f} s of training")
    print(f"  scene:  {scene_dir}")
    print(f"  video:  {video}")
    print(f"  test views vs ground truth: {scene_dir / 'renders' / 'test'}")


def presets(name: Optional[str] = None, /) -> None:
    """List the reconstruction presets, or print one in full: copy it, edit it, and pass the file as
    `scene4d reconstruct DATA --preset my.json` (a file may also say {"base": "fast", "train": {...}}
    and hold only what it changes).

    Args:
        name: a preset name or file to print in full (every value, each field kind's sizes).
    """
    import json
    import textwrap

    from .presets import FIELD_CLASSES, PRESET_DIR, load_preset, preset_names, preset_to_json, read_preset

    if name is None:
        print(f"presets in {PRESET_DIR} (scene4d presets NAME prints one in full):")
        for n in preset_names():
            d = read_preset(n)
            first = d.get("description", "").split(": ")[0].split(". ")[0]
            print(f"  {n:<10} {d.get('field', 'hexplane'):<9}"
                  + textwrap.shorten(first, 90, placeholder="..."))
        return
    d = read_preset(name)
    full = preset_to_json(load_preset(name), d.get("description", ""))
    full["fields"] = {k: preset_to_json(load_preset(name, k))["fields"][k] for k in FIELD_CLASSES}
    print(json.dumps(full, indent=2))


from .generate.cli import generate  # noqa: E402  (the job's command lives with the job)
from .view.cli import view  # noqa: E402


def prior() -> None:
    """The diffusion priors of generate: `scene4d prior sample "PROMPT"` (a views x times grid of
    what the prior believes), `scene4d prior train-toy --out DIR` (train the embedded toy prior),
    `scene4d prior info [PATH]` (what a prior folder holds, the toy world's words)."""
    print(prior.__doc__)

COMMANDS = {"generate": generate, "prior": prior, "demo": demo, "reconstruct": reconstruct, "poses": poses, "render": render, "presets": presets,
            "export": export_scene, "import": import_file, "view": view}


def _flow_args(doc: str) -> str:
    """A docstring whose ``Args:`` descriptions are each one line: tyro keeps the source's line
    breaks and then wraps again, which broke sentences in ``--help`` mid-line."""
    out, in_args, indent = [], False, None
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped == "Args:":
            in_args, indent = True, None
            out.append(line)
            continue
        if in_args and stripped:
            lead = len(line) - len(line.lstrip())
            if indent is None:
                indent = lead
            if lead > indent and out:
                out[-1] = out[-1].rstrip() + " " + stripped
                continue
            if lead < indent:
                in_args = False
        out.append(line)
    return "\n".join(out)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    for fn in COMMANDS.values():
        if fn.__doc__ and "Args:" in fn.__doc__:
            fn.__doc__ = _flow_args(fn.__doc__)
    try:
        if argv[:1] == ["prior"]:  # scene4d prior sample|train-toy|info
            from .generate.cli import PRIOR_COMMANDS

            for fn in PRIOR_COMMANDS.values():
                if fn.__doc__ and "Args:" in fn.__doc__:
                    fn.__doc__ = _flow_args(fn.__doc__)
            tyro.extras.subcommand_cli_from_dict(PRIOR_COMMANDS, args=argv[1:], prog="scene4d prior",
                                                 description="The diffusion priors of scene4d generate.")
            return 0
        tyro.extras.subcommand_cli_from_dict(COMMANDS, args=argv, prog="scene4d",
                                             description="scene4d: build 4D Gaussian scenes and render video from them.")
    except USER_ERRORS as e:
        cmd = argv[0] if argv else ""
        print(f"scene4d {cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scene4d: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `scene4d presets fast | head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
