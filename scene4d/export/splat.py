"""Unit: antimatter15 ``.splat`` (32 bytes per Gaussian, no SH; records sorted as the reference writer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from renderers.ply import write_atomic

from ..formats import FormatError, Splats
from ..formats import splat as codec
from .errors import attribute_errors

NAME, SUFFIX, LOSSY = "splat", ".splat", True
FILE_FRAME = "generic"


def disk_frame(F: np.ndarray) -> np.ndarray:
    return F


def write(s: Splats, out: Path, opts) -> dict:
    data = codec.encode(s, sort=True)
    write_atomic(out, [data])
    o = codec.splat_order(s)
    src = Splats(s.means[o], s.quats[o], s.log_scales[o], s.opacity_logits[o], s.sh[o][:, :1])
    return {"format_version": "antimatter15 .splat (32 B/Gaussian)", "sh_degree_written": 0,
            "order": "sorted by exp(sum log-scale) * opacity, largest first",
            "errors": attribute_errors(src, codec.decode(data, str(out)))}


def read(path: Path) -> Splats:
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    return codec.decode(path.read_bytes(), str(path))
