"""Unit: graphdeco 3DGS ``.ply`` (float32, lossless; the layout every splat tool reads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from renderers import ply as plyio
from renderers.splat_io import read_ply, splat_array

from ..formats import Splats

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
    plyio.write_ply(out, {"vertex": _array(s)})
    return {"format_version": "3dgs-ply (binary_little_endian float32)", "sh_degree_written": s.sh_degree,
            "errors": "none: float32 values as in the scene (logit opacity, log scales, wxyz quaternions)"}


def read(path: Path) -> Splats:
    d = read_ply(path)
    return Splats(*(getattr(d, f).numpy() for f in ("means", "quats", "log_scales", "opacity_logits", "sh")))
