"""``scene4d view SCENE``: the command (the viewer itself is :mod:`scene4d.view.server`)."""

from __future__ import annotations

import sys
import time as _time
from pathlib import Path
from typing import Literal, Optional


def _train_images(folder: Path, meta: dict, train_cams, long_side: int = 160):
    """The capture's training images, small, in the scene's train-camera order, for the frustums;
    None when the capture is not on this machine or does not line up with the scene's cameras."""
    def load():
        src = (meta.get("provenance") or {}).get("source")
        if not src or train_cams is None or not Path(src).is_dir():
            return None
        from ..data import load_capture

        down = max(1, max(train_cams.width, train_cams.height) // long_side)
        cap = load_capture(src, downscale=down)
        if len(cap.train) != len(train_cams):
            return None
        from ..media import to_uint8

        return [to_uint8(img) for img in cap.train.images]
    return load


def view(
    scene: Path,
    /,
    port: int = 8080,
    host: str = "127.0.0.1",
    path: Optional[Path] = None,
    background: str = "white",
    device: str = "auto",
    backend: Literal["auto", "torch", "numba", "gsplat"] = "auto",
    threads: Optional[int] = None,
) -> None:
    """Look at a 4D scene in the browser: a time slider with play/pause, the capture's cameras, a render
    panel through our rasterizer (what `render` makes) and a camera-path editor whose files
    `scene4d render --path` plays. Stop it with Ctrl-C.

    Args:
        scene: a scene folder (from reconstruct or generate) or a 3DGS .ply file.
        port: the port to listen on.
        host: the address to listen on: 127.0.0.1 (only this machine) unless you want to share the
            viewer, e.g. 0.0.0.0 for every network interface.
        path: a camera_path.json to open in the editor.
        background: colour of the render panel and snapshots (as `render --background`).
        device: where the deformation is evaluated and the panel rendered: auto, cpu or cuda.
        backend: the render panel's rasterizer (as `render --backend`).
        threads: CPU threads (default: as the other commands choose them).
    """
    from renderers import configure_cpu_threads

    from ..cli import _device, load_scene
    from ..render import UsageError, parse_background
    from .server import Viewer, ViewerError

    import signal

    def stop(signum, frame):  # a closed terminal or `kill` stops it as Ctrl-C does
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    bg = parse_background(background)
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    configure_cpu_threads(threads)
    try:
        import viser  # noqa: F401
    except ImportError:
        raise UsageError("the viewer needs viser: pip install 'viser>=1.0,<2'") from None
    scene = Path(scene)
    if scene.is_file() and scene.suffix.lower() != ".ply":
        raise UsageError(f"{scene}: not a scene; give a scene folder (from reconstruct/generate) or a 3DGS .ply file")
    sc, train_cams, test_cams = load_scene(scene)
    dev = _device(device)
    if hasattr(sc, "to"):
        sc = sc.to(dev)
    meta, up = {}, "+z"
    if scene.is_dir():
        import json

        meta = json.loads((scene / "scene.json").read_text())  # load_scene has checked it
        up = meta.get("up", "+z")
    preload = None
    if path is not None:
        from cameras.limits import read_json

        from .keyframes import load_path

        try:
            preload = read_json(path, "camera path")
            load_path(preload, str(path))
        except ValueError as e:
            raise UsageError(str(e)) from None
    base = scene if scene.is_dir() else scene.parent
    try:
        v = Viewer(sc, train_cameras=train_cams, test_cameras=test_cams, host=host, port=port, up=up, background=bg,
                   base=Path.cwd(), title=f"scene4d {scene.name}",
                   images=_train_images(scene, meta, train_cams) if scene.is_dir() else None,
                   default_path_file=(base / "camera_path.json"), default_snapshot=(base / "snapshot.png"))
    except ViewerError as e:
        raise UsageError(str(e)) from None
    if preload is not None:
        v.load_path_data(preload, str(path))
    s = v._splats
    print(f"scene4d view: {scene} at {v.url} ({s.n} Gaussians, {s.n_dynamic} moving)")
    if host in ("127.0.0.1", "localhost", "::1"):
        print("  only this machine can connect; --host 0.0.0.0 shares it on the network "
              "(or forward the port: ssh -L 8080:localhost:8080 ...)")
    else:
        print(f"  listening on {host}: anyone who can reach this machine on port {v.port} can see the scene",
              file=sys.stderr)
    print("  writes nothing except the files you save from the page; Ctrl-C stops it", flush=True)
    try:
        while True:
            _time.sleep(3600)
    except KeyboardInterrupt:
        print("scene4d view: stopped")
    finally:
        v.close()
