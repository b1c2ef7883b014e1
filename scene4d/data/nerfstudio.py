"""nerfstudio captures: one ``transforms.json`` with a time per frame.

Layout read here (nerfstudio's, plus time)::

    {"camera_model": "OPENCV",                          # or PINHOLE; distortion must be zero
     "fl_x": 500, "fl_y": 500, "cx": 320, "cy": 240, "w": 640, "h": 480,   # may be per frame instead
     "frames": [{"file_path": "images/frame_00001.png",
                 "transform_matrix": [[...4x4 or 3x4...]],   # OpenGL camera-to-world
                 "time": 0.0},                                # in [0, 1]; or "timestamp": seconds
                ...],
     "train_filenames": [...], "test_filenames": [...], "val_filenames": [...]}   # optional

* Intrinsics may be global or per frame (a frame's value wins); ``cx``/``cy`` default to the
  image centre, ``w``/``h`` to the image size (when given and different, ``K`` is scaled to the image).
* ``camera_model`` must be a pinhole model (``PINHOLE``, ``SIMPLE_PINHOLE``, or ``OPENCV`` /
  ``SIMPLE_RADIAL`` / ``RADIAL`` with zero distortion): the rasterizer renders pinhole images, so
  distorted footage must be undistorted first.
* Times: every frame has ``time`` in [0, 1], or every frame has ``timestamp`` (any unit), which is
  normalised to [0, 1] over the clip (all frames equal -> 0).
* Splits: ``train_filenames`` / ``test_filenames`` / ``val_filenames`` (matched against the frames'
  ``file_path``; frames in no list are dropped, as nerfstudio does). Without ``test_filenames``
  every 8th frame (of the train frames, or of all frames) is the test split.
* ``ply_file_path`` (nerfstudio's sparse points, e.g. from COLMAP, in the frames' world
  coordinates) is read into :attr:`Capture.points` and initialises the Gaussians.
* ``applied_transform``, ``orientation_override``, masks and depth are ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

from .capture import (
    BackgroundSpec,
    Capture,
    CaptureError,
    confined,
    CaptureSplit,
    FrameSpec,
    as_number,
    build_split,
    check_options,
    check_time,
    field_name,
    get_frames,
    holdout,
    intrinsics_fields,
    parse_background,
    read_point_cloud,
    parse_c2w,
    read_json,
    resolve_image,
    subsample,
)

DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "k5", "k6", "p1", "p2")
PINHOLE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "SIMPLE_RADIAL", "RADIAL")


def _check_camera_model(obj: dict[str, Any], where: str, inherited: str) -> str:
    """The frame's camera model (inherited from the file if absent), refusing non-pinhole/distorted ones."""
    model = obj.get("camera_model", inherited)
    if not isinstance(model, str) or model.upper() not in PINHOLE_MODELS:
        raise CaptureError(
            f"{field_name(where, 'camera_model')} = {model!r} is not a pinhole camera; scene4d renders pinhole "
            f"images ({', '.join(PINHOLE_MODELS)} without distortion): reproject/undistort the "
            "images to a pinhole camera first"
        )
    for k in DISTORTION_KEYS:
        if k in obj and obj[k] is not None and as_number(obj[k], where, k) != 0.0:
            raise CaptureError(
                f"{field_name(where, k)} = {obj[k]:g}: the images are distorted ({model}); scene4d renders pinhole "
                "images, so undistort first (e.g. COLMAP image_undistorter, or OpenCV cv2.undistort "
                "with the new intrinsics) and write the undistorted intrinsics with k1..p2 = 0"
            )
    return model


def _norm(root: Path, name: str) -> str:
    """A comparable key for a file path written relative to the transforms file."""
    return os.path.normcase(os.path.normpath(str(root / name)))


def load_nerfstudio(
    path: Union[str, Path],
    *,
    background: BackgroundSpec = None,
    downscale: int = 1,
    max_views: Optional[int] = None,
) -> Capture:
    """Load a nerfstudio ``transforms.json`` (or the folder holding it) with times per frame.

    Options as :func:`scene4d.data.load_capture`; the default background is black (real footage
    rarely has alpha, and where it does nerfstudio-style captures usually mean "no scene here").
    """
    json_path = Path(path)
    if json_path.is_dir():
        json_path = json_path / "transforms.json"
    check_options(downscale, max_views)
    bg = parse_background(background, "black")
    data = read_json(json_path)
    frames = get_frames(data, json_path)
    root = json_path.parent
    fname = str(json_path)
    common = intrinsics_fields(data, fname)
    model = _check_camera_model(data, fname, "OPENCV")

    # one time key for the whole clip: mixing normalised times and raw timestamps has no meaning
    first = frames[0]
    key = "time" if "time" in first else "timestamp" if "timestamp" in first else None
    if key is None:
        raise CaptureError(
            f"{fname}: frames[0] has no 'time' or 'timestamp'; a dynamic capture needs a time per "
            "frame ('time' in [0, 1], or 'timestamp' in any unit, normalised over the clip here)"
        )
    raw_times = []
    specs: list[FrameSpec] = []
    for i, fr in enumerate(frames):
        where = f"{fname}: frames[{i}]"
        if key not in fr:
            raise CaptureError(f"{where} has no {key!r} but frames[0] has one; give every frame a {key!r}")
        raw_times.append(as_number(fr[key], where, key))
        _check_camera_model(fr, where, model)
        c2w = parse_c2w(fr.get("transform_matrix"), where)
        file = resolve_image(root, fr.get("file_path"), where, exts=(".png", ".jpg", ".jpeg", ".JPG", ".PNG"))
        spec = {**common, **intrinsics_fields(fr, where)}
        if not any(k in spec for k in ("fl_x", "fl_y", "camera_angle_x", "camera_angle_y")):
            raise CaptureError(f"{where}: no focal length; give 'fl_x'/'fl_y' (pixels) in the file or the frame")
        specs.append(FrameSpec(file=file, c2w=c2w, time=0.0, intrinsics=spec, where=where))

    if key == "time":
        hint = "; if these are frame numbers or seconds, name the key 'timestamp' instead (normalised to [0, 1] here)"
        for i, t in enumerate(raw_times):
            specs[i].time = check_time(t, f"{fname}: frames[{i}]", "time", hint)
    else:
        lo, hi = min(raw_times), max(raw_times)
        for s, t in zip(specs, raw_times):
            s.time = (t - lo) / (hi - lo) if hi > lo else 0.0

    # splits
    keys = {_norm(root, fr["file_path"]): i for i, fr in enumerate(frames)}

    def listed(name: str) -> Optional[list[int]]:
        names = data.get(name)
        if names is None:
            return None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise CaptureError(f"{fname}: {name!r} must be a list of file paths")
        idx = []
        for j, n in enumerate(names):
            k = _norm(root, n)
            if k not in keys:
                raise CaptureError(
                    f"{fname}: {name}[{j}] = {n!r} matches no frame's file_path; list the frames' "
                    "file_path values exactly as written"
                )
            idx.append(keys[k])
        if not idx:
            raise CaptureError(f"{fname}: {name!r} is empty")
        return idx

    notes: list[str] = []
    tr, te, va = listed("train_filenames"), listed("test_filenames"), listed("val_filenames")
    if tr is None:
        taken = set(te or []) | set(va or [])
        tr = [i for i in range(len(specs)) if i not in taken]
    if te is None:
        keep, held = holdout(len(tr))
        te = [tr[i] for i in held]
        tr = [tr[i] for i in keep]
        notes.append(f"{json_path.name} has no test_filenames: every 8th frame ({len(te)} views) is the test split")
    if not tr:
        raise CaptureError(f"{fname}: no frames left for training (every frame is listed as test/val)")

    def split(idx: list[int], ref) -> tuple[CaptureSplit, Any]:
        keep = subsample(len(idx), max_views)
        return build_split([specs[idx[i]] for i in keep], background=bg, downscale=downscale,
                           reference=ref, notes=notes)

    train_split, ref = split(tr, None)
    test_split, _ = split(te, ref)
    val_split = split(va, ref)[0] if va else None
    points = colors = None
    if data.get("ply_file_path"):
        if not isinstance(data["ply_file_path"], str):
            raise CaptureError(f"{fname}: 'ply_file_path' must be a file path relative to the transforms file")
        points, colors = read_point_cloud(confined(root, data["ply_file_path"], f"{fname}: ply_file_path"),
                                          f"{fname}: ply_file_path")
    return Capture(train=train_split, test=test_split, val=val_split, background=bg, source=root,
                   format="nerfstudio", notes=notes, points=points, point_colors=colors)
