"""D-NeRF / Blender-synthetic captures: ``transforms_{train,test,val}.json`` beside the images.

Each file holds::

    {"camera_angle_x": 0.691,                  # horizontal field of view, radians
     "frames": [{"file_path": "./train/r_000", # relative to the file; ".png" appended if needed
                 "transform_matrix": [[...4x4...]],  # OpenGL camera-to-world (+y up, looks along -z)
                 "time": 0.0}, ...]}           # scene time in [0, 1]

Optional, in the file or in a frame (a frame's value wins): ``fl_x, fl_y, cx, cy`` (pixels),
``w, h`` (the image size those refer to; scaled when the images differ), ``camera_angle_y``.
Only ``transforms_train.json`` is required: without ``transforms_test.json`` every 8th train
view is held out as test; ``transforms_val.json`` is read when present. Keys the reader does not
use (D-NeRF's ``rotation``) are ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

from .capture import (
    BackgroundSpec,
    Capture,
    CaptureError,
    CaptureSplit,
    FrameSpec,
    as_number,
    build_split,
    check_options,
    check_time,
    get_frames,
    holdout,
    intrinsics_fields,
    parse_background,
    parse_c2w,
    read_json,
    resolve_image,
    subsample,
)



def read_dnerf_frames(json_path: Path) -> list[FrameSpec]:
    """Every frame of one D-NeRF transforms file, validated (images exist, poses rigid, times in [0, 1])."""
    data = read_json(json_path)
    frames = get_frames(data, json_path)
    common = intrinsics_fields(data, str(json_path))
    root = json_path.parent
    out = []
    for i, fr in enumerate(frames):
        where = f"{json_path}: frames[{i}]"
        if "time" not in fr:
            raise CaptureError(
                f"{where} has no 'time'; a dynamic capture needs a time per frame (D-NeRF 'time' in "
                "[0, 1]). This looks like a static NeRF-synthetic capture: add \"time\" to every frame "
                "(for a monocular clip, frame index / (frames - 1))"
            )
        t = check_time(as_number(fr["time"], where, "time"), where)
        c2w = parse_c2w(fr.get("transform_matrix"), where)
        file = resolve_image(root, fr.get("file_path"), where)
        spec = {**common, **intrinsics_fields(fr, where)}
        if not any(k in spec for k in ("fl_x", "fl_y", "camera_angle_x", "camera_angle_y")):
            raise CaptureError(
                f"{json_path}: no 'camera_angle_x' (horizontal field of view in radians) and "
                f"frames[{i}] has no 'fl_x'; add one so the cameras have a focal length"
            )
        out.append(FrameSpec(file=file, c2w=c2w, time=t, intrinsics=spec, where=where))
    return out


def load_dnerf(
    root: Union[str, Path],
    *,
    background: BackgroundSpec = None,
    downscale: int = 1,
    max_views: Optional[int] = None,
) -> Capture:
    """Load a D-NeRF capture folder (see the module docstring; options as :func:`load_capture`).

    The default background is white, the D-NeRF convention.
    """
    root = Path(root)
    check_options(downscale, max_views)
    bg = parse_background(background, "white")
    train_json = root / "transforms_train.json"
    if not train_json.is_file():
        raise CaptureError(f"{root}: found no transforms_train.json (D-NeRF); this folder is not a D-NeRF capture")
    notes: list[str] = []
    train = read_dnerf_frames(train_json)
    test_json = root / "transforms_test.json"
    if test_json.is_file():
        test = read_dnerf_frames(test_json)
    else:
        tr, te = holdout(len(train))
        train, test = [train[i] for i in tr], [train[i] for i in te]
        notes.append(f"{root.name} has no transforms_test.json: held out every 8th train view "
                     f"({len(test)} views) as test")
    val_json = root / "transforms_val.json"
    val = read_dnerf_frames(val_json) if val_json.is_file() else None

    def split(frames: list[FrameSpec], ref) -> tuple[CaptureSplit, Any]:
        keep = subsample(len(frames), max_views)
        return build_split([frames[i] for i in keep], background=bg, downscale=downscale,
                           reference=ref, notes=notes)

    train_split, ref = split(train, None)
    test_split, _ = split(test, ref)
    val_split = split(val, ref)[0] if val else None
    return Capture(train=train_split, test=test_split, val=val_split, background=bg, source=root,
                   format="dnerf", notes=notes)
