"""Camera paths as nerfstudio-compatible ``camera_path.json``.

Format (what ``ns-render camera-path`` reads and the nerfstudio viewer writes)::

    {
      "camera_type": "perspective",
      "render_height": H, "render_width": W,
      "fps": 30.0, "seconds": N / fps,
      "camera_path": [
        {"camera_to_world": [16 floats, row-major OpenGL camera-to-world],
         "fov": vertical fov in degrees, "aspect": W / H,
         "render_time": time in [0, 1]},          # only when the cameras carry times
        ...
      ]
    }

nerfstudio rebuilds intrinsics as ``fx = fy = H / (2 tan(fov / 2))`` with a centred principal
point. Cameras whose intrinsics differ from that (fx != fy, off-centre principal point) get an
extra per-frame ``"intrinsics": [fx, fy, cx, cy]`` (pixels), which nerfstudio ignores and
:func:`read_camera_path` prefers, so our own files round-trip losslessly.

A file with ``"keyframes"`` but no ``"camera_path"`` is interpolated with
:func:`cameras.paths.interpolate_keyframes` into ``round(seconds * fps)`` frames (closed when
``"is_cycle"`` is true). Keyframe ``"matrix"`` holds 16 numbers of an OpenGL camera-to-world:
the legacy three.js viewer stored it column-major (``matrix.elements``), the viser viewer
row-major; the layout is detected from where the translation / the [0, 0, 0, 1] row sits, and a
keyframe with zero translation (ambiguous) is read column-major unless ``keyframe_layout`` says so.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, List, Optional, Union

import torch

from .camera import Cameras
from .conventions import K_to_fov, opencv_w2c_to_opengl_c2w, opengl_c2w_to_opencv_w2c
from .paths import interpolate_keyframes

__all__ = ["camera_path_document", "parse_camera_path", "publish_mode", "read_camera_path", "read_keyframes",
           "write_camera_path"]

PathLike = Union[str, os.PathLike]

_F64 = torch.float64


class _FileError(ValueError):
    pass


def _fail(name: str, msg: str) -> _FileError:
    return _FileError(f"{name}: {msg}")


# --------------------------------------------------------------------------- field readers
def _as_json(v) -> str:
    """A value as the file spells it (null, true, "text"), for messages."""
    try:
        return json.dumps(v)
    except (TypeError, ValueError):
        return repr(v)


def _number(obj: dict, key: str, where: str, name: str, *, required: bool = True, default=None) -> Optional[float]:
    if key not in obj:
        if required:
            raise _fail(name, f"{where}{key} is missing")
        return default
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise _fail(name, f"{where}{key} must be a finite number, got {_as_json(v)}")
    return float(v)


def _numbers(obj: dict, key: str, where: str, name: str, count: int) -> List[float]:
    if key not in obj:
        raise _fail(name, f"{where}{key} is missing")
    v = obj[key]
    if not isinstance(v, list):
        raise _fail(name, f"{where}{key} must be a list of {count} numbers, got {type(v).__name__}")
    if len(v) != count:
        raise _fail(name, f"{where}{key} has {len(v)} numbers, expected {count}")
    for j, x in enumerate(v):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(float(x)):
            raise _fail(name, f"{where}{key}[{j}] must be a finite number, got {_as_json(x)}")
    return [float(x) for x in v]


def _positive_int(obj: dict, key: str, name: str) -> int:
    from .limits import MAX_IMAGE_SIDE

    v = _number(obj, key, "", name)
    if v != int(v) or v <= 0 or v > MAX_IMAGE_SIDE:
        raise _fail(name, f"{key} must be a positive integer up to {MAX_IMAGE_SIDE}, got {obj[key]!r}")
    return int(v)


def _fov(obj: dict, where: str, name: str) -> float:
    fov = _number(obj, "fov", where, name)
    if not 0.0 < fov < 180.0:
        raise _fail(name, f"{where}fov must be a vertical field of view in degrees in (0, 180), got {fov!r}")
    return fov


def _check_rigid(M: torch.Tensor, where: str, name: str) -> None:
    """Reject a camera-to-world that is not a rotation + translation, naming the field."""
    R = M[:3, :3]
    err = float((R.T @ R - torch.eye(3, dtype=M.dtype)).abs().max())
    det = float(torch.linalg.det(R))
    if err > 1e-3 or abs(det - 1) > 1e-3:
        raise _fail(
            name,
            f"{where} is not a rigid camera-to-world (rotation part has |R^T R - I| = {err:.3g}, "
            f"det = {det:.4f}); scaled or mirrored matrices are not supported",
        )
    if (M[3] - torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=M.dtype)).abs().max() > 1e-6:
        raise _fail(name, f"{where} must have last row [0, 0, 0, 1], got {M[3].tolist()}")


def _times(entries: List[dict], list_key: str, name: str) -> Optional[List[float]]:
    """Per-entry ``render_time`` (or ``time``); all entries or none must have one."""
    out = []
    for i, e in enumerate(entries):
        key = "render_time" if "render_time" in e else ("time" if "time" in e else None)
        out.append(None if key is None else _number(e, key, f"{list_key}[{i}].", name))
    have = [t is not None for t in out]
    if any(have) and not all(have):
        missing = have.index(False)
        raise _fail(
            name,
            f"{list_key}[{missing}].render_time is missing but other entries have one "
            "(give every entry a time, or none)",
        )
    return out if all(have) and out else None


def _focal(fov_deg: float, height: int) -> float:
    # nerfstudio's three_js_perspective_camera_focal_length: fov is vertical.
    return 0.5 * height / math.tan(math.radians(fov_deg) / 2)


def _keyframe_matrix(flat: List[float], layout: str, where: str, name: str) -> torch.Tensor:
    m = torch.tensor(flat, dtype=_F64).reshape(4, 4)
    if layout == "auto":
        row_ok = bool((m[3, :3].abs() < 1e-9).all()) and abs(float(m[3, 3]) - 1) < 1e-9
        col_ok = bool((m[:3, 3].abs() < 1e-9).all()) and abs(float(m[3, 3]) - 1) < 1e-9
        # Both true only with zero translation: then the layouts differ by a transposed rotation
        # and nothing in the numbers tells them apart; follow the legacy (column-major) viewer.
        layout = "column" if col_ok else "row" if row_ok else "column"
    return m.T.contiguous() if layout == "column" else m


# --------------------------------------------------------------------------- read
def read_camera_path(
    path: PathLike,
    *,
    dtype: torch.dtype = torch.float32,
    device=None,
    keyframe_layout: str = "auto",
    fps: Optional[float] = None,
) -> Cameras:
    """Read a ``camera_path.json`` into Cameras (N frames, OpenCV world_to_camera).

    Args:
        path: the JSON file.
        dtype, device: of the returned tensors (parsing and conversion run in float64).
        keyframe_layout: ``"auto"``, ``"row"`` or ``"column"``: the layout of keyframe
            ``"matrix"`` entries (only used for keyframes-only files).
        fps: for keyframes-only files, frames per second to sample the keyframes at instead of
            the file's ``fps`` (the duration, ``seconds``, stays).

    Returns:
        Cameras with ``times`` when every entry has ``render_time`` (keyframes-only files always
        get times: interpolated keyframe times, else 0 -> 1 over the frames).

    Raises:
        ValueError: naming the file and the offending field.
    """
    name = str(path)
    if keyframe_layout not in ("auto", "row", "column"):
        raise ValueError(f"keyframe_layout must be 'auto', 'row' or 'column', got {keyframe_layout!r}")
    from .limits import read_json

    data = read_json(path, "camera path")
    try:
        return _parse(data, name, dtype, device, keyframe_layout, fps)
    except _FileError:
        raise
    except ValueError as e:
        # Errors from Cameras / interpolate_keyframes: name the file the data came from.
        raise ValueError(f"{name}: {e}") from None


def parse_camera_path(data: Any, name: str, *, dtype: torch.dtype = torch.float32, device=None) -> Cameras:
    """:func:`read_camera_path` for an already parsed JSON object (an upload); ``name`` names it."""
    try:
        return _parse(data, name, dtype, device, "auto", None)
    except _FileError:
        raise
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


#: keyframes an editor loads at most (each becomes a frustum in the page)
MAX_EDITOR_KEYFRAMES = 1000


def read_keyframes(data: Any, name: str, *, max_keys: int = 64) -> Cameras:
    """The keyframes an editor should start from (float64): the file's ``"keyframes"`` when it has
    at least two, else up to ``max_keys`` frames of its ``"camera_path"`` taken evenly (first and
    last included). ValueError naming the file and field otherwise."""
    if isinstance(data, dict) and isinstance(data.get("keyframes"), list) and len(data["keyframes"]) >= 2:
        if len(data["keyframes"]) > MAX_EDITOR_KEYFRAMES:
            raise _fail(name, f"{len(data['keyframes'])} keyframes; an editor takes at most {MAX_EDITOR_KEYFRAMES}")
        width, height = _positive_int(data, "render_width", name), _positive_int(data, "render_height", name)
        layout = data.get("keyframe_layout") if data.get("keyframe_layout") in ("row", "column") else "auto"
        try:
            return _cameras_from_entries(data["keyframes"], "keyframes", "matrix", layout, name, width, height, _F64, None)
        except _FileError:
            raise
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    cams = parse_camera_path(data, name, dtype=_F64)
    n = len(cams)
    if n > max_keys:
        idx = sorted(set(round(i * (n - 1) / (max_keys - 1)) for i in range(max_keys)))
        cams = cams[torch.tensor(idx)]
    return cams


def _parse(data: Any, name: str, dtype, device, keyframe_layout: str, fps_override: Optional[float] = None) -> Cameras:
    if not isinstance(data, dict):
        raise _fail(name, f"expected a JSON object at the top level, got {type(data).__name__}")
    camera_type = data.get("camera_type", "perspective")
    if camera_type != "perspective":
        raise _fail(name, f"camera_type {camera_type!r} is not supported (only 'perspective')")
    height = _positive_int(data, "render_height", name)
    width = _positive_int(data, "render_width", name)

    if "camera_path" in data:
        entries = data["camera_path"]
        if not isinstance(entries, list) or not entries:
            raise _fail(name, "camera_path must be a non-empty list of cameras")
        return _cameras_from_entries(entries, "camera_path", "camera_to_world", "row", name, width, height, dtype, device)

    if "keyframes" not in data:
        raise _fail(name, "has neither camera_path nor keyframes")
    keys = data["keyframes"]
    if not isinstance(keys, list):
        raise _fail(name, f"keyframes must be a list, got {type(keys).__name__}")
    fps = _number(data, "fps", "", name) if fps_override is None else float(fps_override)
    seconds = _number(data, "seconds", "", name)
    if fps <= 0 or seconds <= 0:
        raise _fail(name, f"fps and seconds must be positive to interpolate keyframes, got {fps} and {seconds}")
    from .limits import MAX_FRAMES

    if fps * seconds > MAX_FRAMES:
        raise _fail(name, f"fps x seconds = {fps:g} x {seconds:g} asks for more than {MAX_FRAMES} frames")
    n_frames = max(1, int(round(fps * seconds)))
    if len(keys) < 2:
        # Checked before parsing the entries so that the message is about the count.
        raise _fail(
            name,
            f"a camera path needs at least 2 keyframes, got {len(keys)} (the file has no camera_path "
            "to fall back on; add a keyframe)",
        )
    if keyframe_layout == "auto" and data.get("keyframe_layout") in ("row", "column"):
        keyframe_layout = data["keyframe_layout"]
    kf = _cameras_from_entries(keys, "keyframes", "matrix", keyframe_layout, name, width, height, _F64, None)
    closed = bool(data.get("is_cycle", False))
    out = interpolate_keyframes(kf, n_frames, closed=closed)
    return out.to(device=device, dtype=dtype)


def _cameras_from_entries(
    entries: List[Any], list_key: str, matrix_key: str, layout: str, name: str,
    width: int, height: int, dtype, device,
) -> Cameras:
    c2ws, Ks = [], []
    for i, e in enumerate(entries):
        where = f"{list_key}[{i}]."
        if not isinstance(e, dict):
            raise _fail(name, f"{list_key}[{i}] must be an object, got {type(e).__name__}")
        flat = _numbers(e, matrix_key, where, name, 16)
        m = _keyframe_matrix(flat, layout, where, name)
        _check_rigid(m, f"{where}{matrix_key}", name)
        c2ws.append(m)
        if "intrinsics" in e:
            fx, fy, cx, cy = _numbers(e, "intrinsics", where, name, 4)
            if fx <= 0 or fy <= 0:
                raise _fail(name, f"{where}intrinsics must have positive focal lengths, got {[fx, fy]}")
        else:
            f = _focal(_fov(e, where, name), height)
            fx, fy, cx, cy = f, f, width / 2.0, height / 2.0
        Ks.append([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    times = _times(entries, list_key, name)
    w2c = opengl_c2w_to_opencv_w2c(torch.stack(c2ws))
    return Cameras(
        K=torch.tensor(Ks, dtype=_F64).to(dtype=dtype, device=device),
        world_to_camera=w2c.to(dtype=dtype, device=device),
        width=width,
        height=height,
        times=None if times is None else torch.tensor(times, dtype=_F64).to(dtype=dtype, device=device),
    )


# --------------------------------------------------------------------------- write
def write_camera_path(path: PathLike, cameras: Cameras, *, fps: float = 30.0,
                      keyframes: Optional[Cameras] = None, is_cycle: bool = False) -> None:
    """Write N cameras as a nerfstudio ``camera_path.json`` (atomically: temp file + rename).

    ``seconds`` is N / fps. ``render_time`` is written when the cameras carry times, and
    ``intrinsics`` only for cameras nerfstudio's fov-only model cannot represent (see module doc).
    ``keyframes`` (the cameras an editor placed) are written beside the frames as nerfstudio's
    ``"keyframes"`` (row-major ``"matrix"``, said by ``"keyframe_layout": "row"``), so an editor
    can load the path again; readers play ``"camera_path"``.
    """
    _atomic_write_json(Path(path), camera_path_document(cameras, fps=fps, keyframes=keyframes, is_cycle=is_cycle))


def camera_path_document(cameras: Cameras, *, fps: float = 30.0, keyframes: Optional[Cameras] = None,
                         is_cycle: bool = False) -> dict:
    """The JSON object :func:`write_camera_path` writes."""
    if not isinstance(cameras, Cameras):
        raise ValueError(f"write_camera_path: expected Cameras, got {type(cameras).__name__}")
    if isinstance(fps, bool) or not math.isfinite(float(fps)) or float(fps) <= 0:
        raise ValueError(f"write_camera_path: fps must be a positive number, got {fps!r}")
    fps = float(fps)
    data = {
        "camera_type": "perspective",
        "render_height": cameras.height,
        "render_width": cameras.width,
        "fps": fps,
        "seconds": len(cameras) / fps,
        "camera_path": _entries(cameras, "camera_to_world"),
    }
    if keyframes is not None:
        data["keyframes"] = _entries(keyframes, "matrix")
        data["keyframe_layout"] = "row"
        data["is_cycle"] = bool(is_cycle)
    return data


def _entries(cameras: Cameras, matrix_key: str) -> List[dict]:
    W, H = cameras.width, cameras.height
    w2c = cameras.world_to_camera.detach().to(device="cpu", dtype=_F64)
    K = cameras.K.detach().to(device="cpu", dtype=_F64)
    c2w = opencv_w2c_to_opengl_c2w(w2c)
    _, fov_y = K_to_fov(K, W, H)
    fov_deg = torch.rad2deg(fov_y)
    times = None if cameras.times is None else cameras.times.detach().to(device="cpu", dtype=_F64)

    frames = []
    for i in range(len(cameras)):
        frame = {
            matrix_key: [float(x) for x in c2w[i].reshape(-1)],
            "fov": float(fov_deg[i]),
            "aspect": W / H,
        }
        fx, fy, cx, cy = (float(K[i, 0, 0]), float(K[i, 1, 1]), float(K[i, 0, 2]), float(K[i, 1, 2]))
        tol = 1e-6 * max(fx, fy)
        if abs(fx - fy) > tol or abs(cx - W / 2) > 1e-6 * W or abs(cy - H / 2) > 1e-6 * H:
            frame["intrinsics"] = [fx, fy, cx, cy]
        if times is not None:
            frame["render_time"] = float(times[i])
        frames.append(frame)

    return frames


def publish_mode(tmp: Union[str, Path], path: Union[str, Path]) -> None:
    """Before a temporary file is renamed onto ``path``: give it ``path``'s mode if that exists,
    else the mode a plain ``open`` would give (0666 less the umask). mkstemp makes files 0600,
    which other users could not read. Every atomic write in scene4d goes through here."""
    path = Path(path)
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o777)
        return
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)


def _atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON to a temp file beside ``path`` and rename it over ``path``: readers never see
    a half-written file, and a crash leaves the previous file intact."""
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        publish_mode(tmp, path)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
