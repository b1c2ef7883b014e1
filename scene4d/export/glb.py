"""Unit: glTF binary with ``KHR_gaussian_splatting`` (float attributes; SH bands rotated into the data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from renderers.ply import write_atomic

from ..formats import FormatError, Splats
from ..formats import gltf as codec
from ..formats.frames import frame_tag, parse_frame_tag
from .errors import attribute_errors

NAME, SUFFIX, LOSSY = "glb", ".glb", False
FILE_FRAME = "gltf"


def disk_frame(F: np.ndarray) -> np.ndarray:
    return F


def write(s: Splats, out: Path, opts) -> dict:
    target = getattr(opts, "target", None) or FILE_FRAME
    data = codec.encode(s, extras=None if target == FILE_FRAME else
                        {"scene4d_frame": frame_tag(target, getattr(opts, "scene_up", "+z"))})
    write_atomic(out, [data])
    return {"format_version": "glTF 2.0 + KHR_gaussian_splatting (release candidate: linear SCALE, xyzw ROTATION)",
            "sh_degree_written": s.sh_degree,
            "errors": attribute_errors(s, codec.decode(data, str(out)))}


def embedded_frame(path: Path):
    """(target, scene up) from ``asset.extras.scene4d_frame``, or None."""
    try:
        doc, _ = codec.read_glb(path.read_bytes(), str(path))
    except FormatError:
        return None
    extras = (doc.get("asset") or {}).get("extras")
    return parse_frame_tag(extras.get("scene4d_frame", "")) if isinstance(extras, dict) else None


def read(path: Path) -> Splats:
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    return codec.decode(path.read_bytes(), str(path))
