"""The camera-path editor's model: keyframes at views and times -> a nerfstudio ``camera_path.json``.

A keyframe is what a browser camera says (viser's convention: ``R_world_camera`` as a wxyz
quaternion with OpenCV camera axes, +z forward and -y up; the centre; the vertical field of view)
plus the scene time shown when it was added. The saved file holds the dense ``camera_path``
(every frame, ``render_time`` per frame) that ``scene4d render --path`` and ``ns-render`` play
as is, and the ``keyframes`` themselves so the editor can load the path again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch

from cameras import Cameras, camera_path_document, interpolate_keyframes, intrinsics_from_fov, read_keyframes, rigid_inverse
from cameras.conventions import quat_wxyz_to_rotmat, rotmat_to_quat_wxyz
from cameras.limits import MAX_FRAMES, MAX_IMAGE_SIDE

_F64 = torch.float64


@dataclass(frozen=True)
class Keyframe:
    wxyz: tuple  # R_world_camera (OpenCV camera axes), normalised
    position: tuple  # camera centre, world
    fov: float  # vertical field of view, radians
    time: float  # scene time in [0, 1]

    def c2w(self) -> np.ndarray:
        R = quat_wxyz_to_rotmat(torch.tensor(self.wxyz, dtype=_F64)).numpy()
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R, self.position
        return T


def keyframe(wxyz, position, fov: float, time: float) -> Keyframe:
    """A checked keyframe from a browser camera's state."""
    q = np.asarray(wxyz, dtype=np.float64).reshape(4)
    p = np.asarray(position, dtype=np.float64).reshape(3)
    if not (np.isfinite(q).all() and np.isfinite(p).all() and np.linalg.norm(q) > 1e-9):
        raise ValueError("the view has no valid pose yet (wait for the page to finish loading)")
    if not 0 < fov < math.pi:
        raise ValueError(f"field of view {math.degrees(fov):.1f} degrees is outside (0, 180)")
    q = q / np.linalg.norm(q)
    return Keyframe(tuple(map(float, q)), tuple(map(float, p)), float(fov), float(min(max(time, 0.0), 1.0)))


def cameras_of(keys: Sequence[Keyframe], width: int, height: int) -> Cameras:
    """The keyframes as Cameras (float64, OpenCV world-to-camera, centred principal point)."""
    if not keys:
        raise ValueError("no keyframes")
    w2c = rigid_inverse(torch.tensor(np.stack([k.c2w() for k in keys]), dtype=_F64))
    K = torch.stack([intrinsics_from_fov(k.fov, width, height, dtype=_F64) for k in keys])
    return Cameras(K=K, world_to_camera=w2c, width=width, height=height,
                   times=torch.tensor([k.time for k in keys], dtype=_F64))


def keyframes_of(cams: Cameras) -> List[Keyframe]:
    """Cameras (e.g. a loaded file's keyframes) -> keyframes; times 0 where the cameras carry none."""
    w2c = cams.world_to_camera.detach().to("cpu", _F64)
    c2w = rigid_inverse(w2c)
    q = rotmat_to_quat_wxyz(c2w[:, :3, :3])
    fy = cams.K[:, 1, 1].detach().to("cpu", _F64)
    fov = 2 * torch.atan(cams.height / (2 * fy))
    times = cams.times.detach().to("cpu", _F64) if cams.times is not None else torch.zeros(len(cams), dtype=_F64)
    return [keyframe(q[i].tolist(), c2w[i, :3, 3].tolist(), float(fov[i]), float(times[i])) for i in range(len(cams))]


def check_path_settings(width: int, height: int, fps: float, seconds: float) -> int:
    """The frame count of a path, or ValueError saying which setting is wrong."""
    if not (16 <= width <= MAX_IMAGE_SIDE and 16 <= height <= MAX_IMAGE_SIDE):
        raise ValueError(f"render size {width}x{height}: each side must lie in 16..{MAX_IMAGE_SIDE}")
    if not (math.isfinite(fps) and 0 < fps <= 1000):
        raise ValueError(f"fps {fps} must lie in (0, 1000]")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"duration {seconds} s must be positive")
    n = max(1, int(round(fps * seconds)))
    if n > MAX_FRAMES:
        raise ValueError(f"{fps:g} fps x {seconds:g} s is more than {MAX_FRAMES} frames")
    return n


def dense_path(keys: Sequence[Keyframe], width: int, height: int, fps: float, seconds: float,
               closed: bool = False) -> Cameras:
    """Every frame of the path through ``keys`` (at least two), times interpolated between the
    keyframes' times; the first frame is the first keyframe exactly."""
    if len(keys) < 2:
        raise ValueError(f"a camera path needs at least 2 keyframes, it has {len(keys)}")
    n = check_path_settings(width, height, fps, seconds)
    return interpolate_keyframes(cameras_of(keys, width, height), n, closed=closed)


def path_document(keys: Sequence[Keyframe], width: int, height: int, fps: float, seconds: float,
                  closed: bool = False) -> dict:
    """The ``camera_path.json`` object for ``keys``."""
    dense = dense_path(keys, width, height, fps, seconds, closed)
    return camera_path_document(dense, fps=fps, keyframes=cameras_of(keys, width, height), is_cycle=closed)


def load_path(data, name: str):
    """(keyframes, width, height, fps, seconds, closed) from a parsed camera_path.json; ValueError
    (one line, naming ``name``) when it is not one."""
    cams = read_keyframes(data, name)
    fps = data.get("fps", 30.0)
    n_frames = len(data["camera_path"]) if isinstance(data.get("camera_path"), list) else len(cams)
    seconds = data.get("seconds", n_frames / fps if isinstance(fps, (int, float)) and fps > 0 else 1.0)
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(f"{name}: fps and seconds must be numbers")
    check_path_settings(cams.width, cams.height, float(fps), float(seconds))
    return keyframes_of(cams), cams.width, cams.height, float(fps), float(seconds), bool(data.get("is_cycle", False))


def resolve_save_path(text: str, base: Optional[Path] = None) -> Path:
    """The file a user typed to save a camera path to: a ``.json`` file whose folder exists or can
    be made; ValueError otherwise."""
    text = (text or "").strip()
    if not text:
        raise ValueError("give a file name to save the camera path to")
    p = Path(text).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    if p.suffix.lower() != ".json":
        raise ValueError(f"{p}: a camera path is a .json file (nerfstudio's camera_path.json)")
    if p.is_dir():
        raise ValueError(f"{p}: is a folder; give a file name")
    return p
