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

from .render import UsageError

USER_ERRORS = (UsageError, SplatFileError, CameraError, GaussianError, RenderError, FileNotFoundError)


def _device(name: str):
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but no CUDA device is available; use --device cpu")
    return name


def load_scene(path: Path):
    """A static .ply (more scene kinds arrive with the scene folder)."""
    from renderers.splat_io import load_gaussians

    from .render import StaticScene

    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix.lower() == ".ply":
        return StaticScene(load_gaussians(path)), None, None
    raise UsageError(f"{path}: not a scene; expected a 3DGS .ply file")


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
        scene: a 3DGS .ply file.
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
        out = Path(scene).parent / f"{Path(scene).stem}_{stem}.mp4"
    res = render_video(sc, cams, Path(out), fps=fps, background=bg, backend=backend, device=_device(device),
                       depth=depth, alpha=alpha, png=png)
    print(f"wrote {res.video} ({res.n_frames} frames, {w}x{h}, {res.seconds:.1f} s)")
    for extra in (res.depth_video, res.alpha_video, res.frames_dir):
        if extra is not None:
            print(f"wrote {extra}")


COMMANDS = {"render": render}


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
