"""Unit: graphdeco 3DGS ``.ply`` (float32, lossless; the layout every splat tool reads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from renderers import ply as plyio
from renderers.splat_io import read_ply, splat_array

from ..formats import Splats
from ..formats.frames import frame_tag, parse_frame_tag

NAME, SUFFIX, LOSSY = "ply", ".ply", False
FILE_FRAME = "generic"  # what a .ply without an export record is assumed to be written in


def disk_frame(F: np.ndarray) -> np.ndarray:
    return F


def _array(s: Splats) -> np.ndarray:
    from renderers.splat_io import SplatData
    import torch

    t = torch.from_numpy
    return splat_array(SplatData(t(s.means), t(s.quats), t(s.log_scales), t(s.opacity_logits), t(s.sh)))


def write(s: Splats, out: Path, opts) -> dict:
    target = getattr(opts, "target", None) or FILE_FRAME
    comments = [] if target == FILE_FRAME else [frame_tag(target, getattr(opts, "scene_up", "+z"))]
    plyio.write_ply(out, {"vertex": _array(s)}, comments=comments)
    return {"format_version": "3dgs-ply (binary_little_endian float32)", "sh_degree_written": s.sh_degree,
            "errors": "none: float32 values as in the scene (logit opacity, log scales, wxyz quaternions)"}


def embedded_frame(path: Path):
    """(target, scene up) from a ``scene4d-frame`` header comment, or None (header only is read)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    end = head.find(b"end_header")
    for line in head[:end if end >= 0 else len(head)].decode("latin-1").splitlines():
        if line.startswith("comment "):
            tag = parse_frame_tag(line[len("comment "):])
            if tag:
                return tag
    return None


def read(path: Path) -> Splats:
    d = read_ply(path)
    return Splats(*(getattr(d, f).numpy() for f in ("means", "quats", "log_scales", "opacity_logits", "sh")))
